import Foundation
import PrimaCheckpoint
import PrimaIO
import PrimaImage
import PrimaTestSupport
import PrimaTrain
import Testing

/// The training curves chart: histories of no, one and many epochs render; the curves land where the layout
/// says; gaps stay gaps; the written PNG decodes to the rendered pixels and is the same file every time.
@Suite struct TrainingPlotTests {
    static let blue = ChartStyle.palette[0], orange = ChartStyle.palette[1], green = ChartStyle.palette[2]

    /// `epochs` epochs of `stepsPerEpoch` steps of a decaying, seeded-noisy loss, validated every epoch except
    /// those in `unvalidated`.
    static func history(epochs: Int, stepsPerEpoch: Int, unvalidated: Set<Int> = [], seed: UInt64 = 11) -> TrainingRecord.History {
        var random = SplitMix64(seed: seed), history = TrainingRecord.History()
        for step in 0..<epochs * stepsPerEpoch {
            let t = Double(step + 1) / Double(stepsPerEpoch)
            history.loss.append(Float(0.4 + 1.5 * exp(-t / 3)) + 0.1 * random.uniform())
            history.lr.append(1e-4)
            history.gradNorm.append(1)
        }
        for epoch in 0..<epochs {
            let losses = history.loss[epoch * stepsPerEpoch..<(epoch + 1) * stepsPerEpoch]
            history.trainLoss.append(losses.reduce(0, +) / Float(stepsPerEpoch))
            let validated = !unvalidated.contains(epoch)
            history.valLoss.append(validated ? Float(0.6 + 1.2 * exp(-Double(epoch + 1) / 3)) : .nan)
            history.valMacroF1.append(validated ? Float(0.8 - 0.5 * exp(-Double(epoch + 1) / 3)) : .nan)
            history.valAccuracy.append(validated ? 0.7 : .nan)
            history.valBalancedAccuracy.append(validated ? 0.6 : .nan)
        }
        return history
    }

    static func pixel(_ point: CanvasPoint) -> (x: Int, y: Int) { (Int(point.x.rounded(.down)), Int(point.y.rounded(.down))) }

    /// The colour the rendered chart has at data point (x, y) of panel `panel`.
    static func color(_ image: RGBImage, _ layout: LineChart.Layout, x: Double, y: Float, panel: Int) -> RGBColor {
        let (px, py) = pixel(layout.point(x: x, y: Double(y), panel: panel))
        return RGBColor(UInt8(image.sample(y: py, x: px, channel: 0)), UInt8(image.sample(y: py, x: px, channel: 1)),
                        UInt8(image.sample(y: py, x: px, channel: 2)))
    }

    @Test func anEmptyHistoryRendersTwoEmptyPanels() {
        let chart = TrainingPlot.chart(history: TrainingRecord.History(), title: "stage1", stepsPerEpoch: 10)
        let layout = chart.layout()
        #expect(layout.xScale.lower == 0 && layout.xScale.upper == 1)
        #expect(layout.plots.count == 2 && layout.yScales[1].lower == 0 && layout.yScales[1].upper == 1)
        let image = TrainingPlot.render(history: TrainingRecord.History(), title: "stage1", stepsPerEpoch: 10)
        #expect(image.width == TrainingPlot.defaultWidth && image.height == TrainingPlot.defaultHeight)
        // Each panel carries the "no data" note.
        let note = ChartStyle().note
        for plot in layout.plots {
            let found = (plot.y..<plot.maxY).contains { y in
                (plot.x..<plot.maxX).contains { x in (0..<3).allSatisfy { UInt8(image.sample(y: y, x: x, channel: $0)) == [note.red, note.green, note.blue][$0] } }
            }
            #expect(found)
        }
    }

    /// One epoch: its points (x = 1) are lone markers at the right end of the axis, the steps lead up to them.
    @Test func oneEpoch() {
        let history = Self.history(epochs: 1, stepsPerEpoch: 8)
        let chart = TrainingPlot.chart(history: history, title: "stage2b", stepsPerEpoch: 8)
        let layout = chart.layout(), image = chart.render().image
        #expect(layout.xScale.lower == 0 && layout.xScale.upper == 1)
        #expect(Self.color(image, layout, x: 1, y: history.valLoss[0], panel: 0) == Self.orange)
        #expect(Self.color(image, layout, x: 1, y: history.valMacroF1[0], panel: 1) == Self.green)
        // The step curve (1 px wide, pale blue) starts at epoch 1/8: the pixel of its first point is inked in it
        // (partly covered, as the point need not be the pixel's centre).
        let first = Self.color(image, layout, x: 0.125, y: history.loss[0], panel: 0)
        #expect(first != .white && first.blue > first.red && first.red >= Self.blue.mixed(with: .white, amount: 0.55).red, "\(first)")
    }

    /// Many epochs, one without validation: every validated epoch's marker is drawn, the unvalidated one is a gap
    /// in the validation curves.
    @Test func manyEpochsWithAGap() {
        let history = Self.history(epochs: 30, stepsPerEpoch: 50, unvalidated: [9])
        let chart = TrainingPlot.chart(history: history, title: "stage3", stepsPerEpoch: 50)
        let layout = chart.layout(), image = chart.render().image
        #expect(layout.xScale.upper == 30 && layout.xScale.ticks.count >= 4)
        for epoch in 0..<30 where epoch != 9 {
            #expect(Self.color(image, layout, x: Double(epoch + 1), y: history.valMacroF1[epoch], panel: 1) == Self.green, "epoch \(epoch + 1)")
        }
        // Between epochs 9 and 11 the F1 curve is interrupted: no green on the straight line across the gap.
        let across = (history.valMacroF1[8] + history.valMacroF1[10]) / 2
        #expect(Self.color(image, layout, x: 10, y: across, panel: 1) != Self.green)
        // The loss axis covers every step's loss.
        let losses = history.loss + history.valLoss.filter(\.isFinite)
        #expect(layout.yScales[0].lower <= Double(losses.min()!) && Double(losses.max()!) <= layout.yScales[0].upper)
    }

    /// Only steps so far (the first epoch not finished): the x axis ends at the last step, in epochs.
    @Test func stepsBeforeTheFirstEpochEnds() {
        var history = TrainingRecord.History()
        history.loss = [2, 1.8, .nan, 1.5]
        let layout = TrainingPlot.chart(history: history, title: "", stepsPerEpoch: 10).layout()
        #expect(layout.xScale.upper == 0.4 && layout.xScale.label(layout.xScale.ticks.last!) == "0.4")
    }

    /// A history read from someone else's checkpoint may hold anything a float can: extremes, infinities, an F1
    /// outside 0…1. The chart still renders, on finite axes, with the F1 outside its axis clipped.
    @Test func extremeValuesRender() {
        var history = TrainingRecord.History()
        history.loss = [.greatestFiniteMagnitude, -.greatestFiniteMagnitude, .leastNonzeroMagnitude, 0, .infinity, .nan, -.infinity]
        history.trainLoss = [.greatestFiniteMagnitude, .nan]
        history.valLoss = [.nan, -1e-30]
        history.valMacroF1 = [1.2, -.infinity]
        let chart = TrainingPlot.chart(history: history, title: "hostile", stepsPerEpoch: 3)
        let layout = chart.layout()
        #expect(layout.yScales.allSatisfy { $0.lower.isFinite && $0.upper.isFinite && !$0.ticks.isEmpty })
        #expect(layout.yScales[0].lower <= -Double(Float.greatestFiniteMagnitude) && layout.yScales[0].upper >= Double(Float.greatestFiniteMagnitude))
        let image = chart.render().image
        #expect(image.width == TrainingPlot.defaultWidth)
        // The F1 of 1.2 lies above its panel (about 30 px): nothing green above the clip margin but the legend.
        let plot = layout.plots[1], green = Self.green, legend = layout.legendEntries[1][0]!
        let above = (0..<plot.y - 6).contains { y in
            (plot.x..<plot.maxX).contains { x in
                !(legend.y..<legend.maxY).contains(y)
                    && (0..<3).allSatisfy { UInt8(image.sample(y: y, x: x, channel: $0)) == [green.red, green.green, green.blue][$0] }
            }
        }
        #expect(!above)
    }

    @Test func writesADeterministicPNG() throws {
        let directory = TestProcess.temporaryDirectory("prima-training-plot")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let history = Self.history(epochs: 12, stepsPerEpoch: 20, unvalidated: [3])
        let first = directory + "/curves.png", second = directory + "/again.png"
        try TrainingPlot.write(history: history, title: "stage2", stepsPerEpoch: 20, to: first, overwrite: false)
        try TrainingPlot.write(history: history, title: "stage2", stepsPerEpoch: 20, to: second, overwrite: false)
        let bytes = try Data(contentsOf: URL(fileURLWithPath: first))
        #expect(bytes == (try Data(contentsOf: URL(fileURLWithPath: second))))
        // (Decoding registers the file as an input of this process, which may then not be written: the second.)
        #expect(try PNGDecoder.decode(contentsOf: second) == TrainingPlot.render(history: history, title: "stage2", stepsPerEpoch: 20))
        // An existing file is kept unless overwriting was asked for.
        #expect(throws: ToolError.input("\(first): already exists (use --force to overwrite)")) {
            try TrainingPlot.write(history: TrainingRecord.History(), title: "", stepsPerEpoch: 1, to: first, overwrite: false)
        }
        try TrainingPlot.write(history: TrainingRecord.History(), title: "", stepsPerEpoch: 1, to: first, overwrite: true)
        #expect(try Data(contentsOf: URL(fileURLWithPath: first)) != bytes)
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory).sorted() == ["again.png", "curves.png"])
    }
}
