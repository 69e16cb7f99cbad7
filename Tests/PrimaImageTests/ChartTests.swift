import Foundation
import PrimaImage
import Testing

/// The chart font: every printable ASCII character has a glyph of the right size, text lands where the glyph
/// table says, at 1× and 2×, in both directions.
@Suite struct BitmapFontTests {
    @Test func everyPrintableASCIICharacterHasAGlyph() {
        for value in UInt32(0x20)...0x7E {
            let character = Unicode.Scalar(value)!
            #expect(BitmapFont.contains(character), "no glyph for \(character)")
            let rows = BitmapFont.glyph(character)
            #expect(rows.count == BitmapFont.cellHeight && rows.allSatisfy { $0 < 1 << BitmapFont.glyphWidth })
            // Only the characters with descenders reach below the cap height.
            let descends = rows[BitmapFont.capHeight...].contains { $0 != 0 }
            #expect(descends == "gjpqy,;".unicodeScalars.contains(character), "\(character)")
        }
        #expect(BitmapFont.glyph(" ").allSatisfy { $0 == 0 })
        #expect(BitmapFont.contains("\u{B1}"))
        // Characters outside the font draw as "?".
        #expect(!BitmapFont.contains("é") && BitmapFont.glyph("é") == BitmapFont.glyph("?"))
    }

    /// No two characters share a glyph (a typo in the table would show as a duplicate), space aside.
    @Test func glyphsAreDistinct() {
        let glyphs = (UInt32(0x21)...0x7E).map { BitmapFont.glyph(Unicode.Scalar($0)!) }
        #expect(Set(glyphs).count == glyphs.count)
    }

    /// The set pixels of `text` drawn on a blank canvas, as (x, y) pairs.
    static func inked(_ text: String, x: Int, y: Int, scale: Int, direction: RasterCanvas.TextDirection) -> Set<[Int]> {
        var canvas = RasterCanvas(width: 60, height: 60)
        canvas.drawText(text, x: x, y: y, scale: scale, .black, direction: direction)
        var set: Set<[Int]> = []
        for py in 0..<60 { for px in 0..<60 where canvas.color(x: px, y: py) != .white { set.insert([px, py]) } }
        #expect(set.allSatisfy { canvas.color(x: $0[0], y: $0[1]) == .black }, "text is drawn without antialiasing")
        return set
    }

    /// The pixels the glyph table says `text` covers: font pixel (column, row) of character i at
    /// (x + (6i + column)·s + dx, y + row·s + dy).
    static func expected(_ text: String, x: Int, y: Int, scale: Int) -> Set<[Int]> {
        var set: Set<[Int]> = []
        for (index, character) in text.unicodeScalars.enumerated() {
            for (row, bits) in BitmapFont.glyph(character).enumerated() {
                for column in 0..<5 where bits >> (4 - column) & 1 == 1 {
                    for dy in 0..<scale { for dx in 0..<scale { set.insert([x + (6 * index + column) * scale + dx, y + row * scale + dy]) } }
                }
            }
        }
        return set
    }

    @Test(arguments: [1, 2])
    func textInksTheGlyphPixels(scale: Int) {
        let inked = Self.inked("Ag1", x: 3, y: 4, scale: scale, direction: .horizontal)
        #expect(inked == Self.expected("Ag1", x: 3, y: 4, scale: scale))
        // "A"'s apex: row 0 is .###. → columns 1-3.
        #expect(inked.contains([3 + scale, 4]) && !inked.contains([3, 4]))
        #expect(RasterCanvas.textSize("Ag1", scale: scale) == (width: 17 * scale, height: 9 * scale))
    }

    /// Upward text is the horizontal text turned 90° anticlockwise about its bottom-left corner.
    @Test(arguments: [1, 2])
    func upwardTextIsTurnedAnticlockwise(scale: Int) {
        let upward = Self.inked("F1", x: 10, y: 50, scale: scale, direction: .upward)
        // Horizontal pixel (u, v) from the text's top-left corner lands at (10 + v, 50 - u).
        let turned = Set(Self.expected("F1", x: 0, y: 0, scale: scale).map { [10 + $0[1], 50 - $0[0]] })
        #expect(upward == turned)
        let size = RasterCanvas.textSize("F1", scale: scale)
        #expect(upward.allSatisfy { $0[0] >= 10 && $0[0] < 10 + size.height && $0[1] <= 50 && $0[1] > 50 - size.width })
    }

    @Test func textOffTheCanvasIsClipped() {
        var canvas = RasterCanvas(width: 8, height: 8)
        canvas.drawText("WWW", x: -7, y: -3, scale: 2, .black)
        canvas.drawText("W", x: 30, y: 30, .black, direction: .upward)
        #expect(canvas.pixels.contains(0))
    }
}

/// Axis scales: nice steps, ranges that cover the data, labels.
@Suite struct ChartScaleTests {
    /// d3's rule: the rough step span/5 rounded in ratio to 1, 2, 5 × 10^k.
    @Test(arguments: [(0.0, 1.0, 0.2), (0, 12, 2), (0, 10, 2), (0, 7, 1), (0, 3, 0.5), (0, 0.35, 0.05), (0, 100, 20),
                      (0, 40, 10), (-3, 3, 1), (2.1, 2.6, 0.1), (0, 1e6, 2e5)])
    func stepsAreNice(lower: Double, upper: Double, step: Double) {
        let scale = ChartScale(lower: lower, upper: upper)
        #expect(scale.step == step, "\(lower)...\(upper): step \(scale.step)")
        #expect(scale.lower == lower && scale.upper == upper)
        #expect(scale.ticks.first! >= lower - 1e-12 && scale.ticks.last! <= upper + 1e-12)
        #expect(scale.ticks.count >= 4 && scale.ticks.count <= 8, "\(scale.ticks)")
    }

    @Test func ticksIncludeTheEndsAndPrintExactly() {
        let scale = ChartScale(lower: 0, upper: 1)
        #expect(scale.ticks.map(scale.label) == ["0.0", "0.2", "0.4", "0.6", "0.8", "1.0"])
        // 0.3 / 0.1 rounds below 3: the tick at 0.3 must not be lost.
        let tenths = ChartScale(lower: 0.1, upper: 0.3, tickTarget: 2)
        #expect(tenths.ticks.map(tenths.label) == ["0.1", "0.2", "0.3"])
        let big = ChartScale(lower: -20, upper: 100)
        #expect(big.ticks.map(big.label) == ["-20", "0", "20", "40", "60", "80", "100"])
        let small = ChartScale(lower: 0.001, upper: 0.0035)
        #expect(small.ticks.map(small.label) == ["0.0010", "0.0015", "0.0020", "0.0025", "0.0030", "0.0035"])
        #expect(ChartScale(lower: 0, upper: 1e20).label(6e19) == "6e+19")
        #expect(ChartScale(lower: -1, upper: 1).label(-0.0) == "0.0")
    }

    @Test func coveringWidensToTicks() {
        let scale = ChartScale.covering([0.37, 2.04, 1.2, .nan, .infinity])
        #expect(scale.lower == 0 && scale.upper == 2.5 && scale.step == 0.5)
        let f1 = ChartScale.covering([0.31, 0.78])
        #expect(f1.lower == 0.3 && f1.upper == 0.8 && f1.step == 0.1, "\(f1)")
    }

    /// Equal values get an axis around them with ticks on both sides; nothing gives 0…1.
    @Test(arguments: [0.7, 0, -3, 1e-9, 12345.0])
    func equalValuesGetASensibleAxis(value: Double) {
        let scale = ChartScale.covering([value, value, .nan])
        #expect(scale.lower < value && value < scale.upper, "\(value): \(scale)")
        #expect(scale.ticks.count >= 2)
        #expect(abs(scale.fraction(value) - 0.5) < 0.3)
        #expect(Set(scale.ticks.map(scale.label)).count == scale.ticks.count, "distinct labels \(scale.ticks.map(scale.label))")
    }

    @Test func degenerateInputsStayFinite() {
        #expect(ChartScale.covering([]) == ChartScale(lower: 0, upper: 1))
        #expect(ChartScale.covering([.nan, -.infinity]) == ChartScale(lower: 0, upper: 1))
        let extreme = ChartScale.covering([-.greatestFiniteMagnitude, .greatestFiniteMagnitude])
        #expect(extreme.lower.isFinite && extreme.upper.isFinite && !extreme.ticks.isEmpty)
        #expect(extreme.fraction(0).isFinite && extreme.fraction(.greatestFiniteMagnitude) <= 1)
        let tiny = ChartScale.covering([0, 1e-320])
        #expect(tiny.lower < 0 && tiny.upper > 0)
    }
}

/// Canvas primitives: antialiased lines and markers land where the geometry says.
@Suite struct RasterCanvasTests {
    static let red = RGBColor(200, 0, 0)

    @Test func aHorizontalLineCoversItsRows() {
        var canvas = RasterCanvas(width: 40, height: 20)
        let half = RGBColor.white.mixed(with: Self.red, amount: 0.5)
        // Width 2 along the row boundary y = 10: the centres of rows 9 and 10 lie 0.5 from it (coverage 1), those
        // of rows 8 and 11 lie 1.5 from it (coverage 0).
        canvas.drawPolyline([CanvasPoint(x: 5, y: 10), CanvasPoint(x: 35, y: 10)], lineWidth: 2, Self.red)
        #expect(canvas.color(x: 20, y: 9) == Self.red && canvas.color(x: 20, y: 10) == Self.red)
        #expect(canvas.color(x: 20, y: 8) == .white && canvas.color(x: 20, y: 11) == .white)
        // Width 2 through the centres of row 15: that row full, its neighbours (distance 1) half covered.
        canvas.drawPolyline([CanvasPoint(x: 5, y: 15.5), CanvasPoint(x: 35, y: 15.5)], lineWidth: 2, Self.red)
        #expect(canvas.color(x: 20, y: 15) == Self.red && canvas.color(x: 20, y: 14) == half && canvas.color(x: 20, y: 16) == half)
        // Round ends: covered 0.5 px past each end, nothing from 1.5 px on.
        #expect(canvas.color(x: 4, y: 15) == Self.red && canvas.color(x: 35, y: 15) == Self.red)
        #expect(canvas.color(x: 3, y: 15) == .white && canvas.color(x: 36, y: 15) == .white)
    }

    /// A polyline's joint is blended once, with the larger coverage of its two segments, not twice.
    @Test func jointsAreNotDrawnTwice() {
        var canvas = RasterCanvas(width: 30, height: 30)
        canvas.drawPolyline([CanvasPoint(x: 10, y: 10), CanvasPoint(x: 20, y: 10), CanvasPoint(x: 20, y: 20)], lineWidth: 1, .black)
        // Pixel (19, 10)'s centre (19.5, 10.5) is 0.5 from both segments: coverage 0.5 → 128 (127.5 rounded).
        #expect(canvas.color(x: 19, y: 10) == RGBColor(128, 128, 128))
    }

    @Test func markersAndClipping() {
        var canvas = RasterCanvas(width: 40, height: 40)
        let half = RGBColor.white.mixed(with: Self.red, amount: 0.5)
        // Radius 3: full coverage up to 2.5 px from the centre, half at 3, none from 3.5.
        canvas.drawMarker(.circle, at: CanvasPoint(x: 10.5, y: 10.5), radius: 3, Self.red)
        #expect(canvas.color(x: 10, y: 10) == Self.red && canvas.color(x: 12, y: 10) == Self.red && canvas.color(x: 13, y: 10) == half)
        #expect(canvas.color(x: 14, y: 10) == .white && canvas.color(x: 13, y: 13) == .white)
        canvas.drawMarker(.square, at: CanvasPoint(x: 30.5, y: 10.5), radius: 3, Self.red)
        #expect(canvas.color(x: 32, y: 12) == Self.red && canvas.color(x: 33, y: 13) == half && canvas.color(x: 34, y: 10) == .white)
        // A line clipped to the left half leaves the right half untouched.
        let clip = PixelRect(x: 0, y: 20, width: 20, height: 20)
        canvas.drawPolyline([CanvasPoint(x: 2, y: 30.5), CanvasPoint(x: 38, y: 30.5)], lineWidth: 3, Self.red, clip: clip)
        #expect(canvas.color(x: 19, y: 30) == Self.red && canvas.color(x: 20, y: 30) == .white)
        // Far-off coordinates stay harmless.
        canvas.drawPolyline([CanvasPoint(x: -1e12, y: 5.5), CanvasPoint(x: 1e12, y: 5.5)], lineWidth: 1, Self.red)
        #expect(canvas.color(x: 25, y: 5) == Self.red)
    }

    @Test func rectanglesAndOutlines() {
        var canvas = RasterCanvas(width: 10, height: 10, background: .black)
        canvas.fill(PixelRect(x: -5, y: 8, width: 100, height: 100), .white)
        #expect(canvas.color(x: 0, y: 8) == .white && canvas.color(x: 9, y: 9) == .white && canvas.color(x: 0, y: 7) == .black)
        canvas.stroke(PixelRect(x: 2, y: 2, width: 4, height: 3), Self.red)
        #expect(canvas.color(x: 2, y: 2) == Self.red && canvas.color(x: 5, y: 4) == Self.red && canvas.color(x: 3, y: 3) == .black)
    }
}

/// Line charts: data lands at the pixels the layout computes, gaps stay gaps, degenerate data never crashes.
@Suite struct LineChartTests {
    static let red = RGBColor(214, 39, 40)

    static func chart(_ series: [ChartSeries], yRange: ClosedRange<Double>? = 0...1, xRange: ClosedRange<Double>? = 0...10) -> LineChart {
        LineChart(title: "Test chart", xLabel: "epoch", xRange: xRange,
                  panels: [ChartPanel(yLabel: "value", yRange: yRange, series: series)], width: 400, height: 300)
    }

    static func pixel(_ point: CanvasPoint) -> (x: Int, y: Int) { (Int(point.x.rounded(.down)), Int(point.y.rounded(.down))) }

    @Test func pointsLandWhereTheLayoutSays() throws {
        let series = ChartSeries(name: "s", color: Self.red, points: [ChartPoint(x: 2, y: 0.25), ChartPoint(x: 8, y: 0.75)])
        let chart = Self.chart([series])
        let layout = chart.layout(), canvas = chart.render()
        let plot = layout.plots[0]
        // The axis ends map to the centres of the data area's first and last pixels.
        #expect(layout.point(x: 0, y: 0, panel: 0) == CanvasPoint(x: Double(plot.x) + 0.5, y: Double(plot.maxY) - 0.5))
        #expect(layout.point(x: 10, y: 1, panel: 0) == CanvasPoint(x: Double(plot.maxX) - 0.5, y: Double(plot.y) + 0.5))
        for point in series.points + [ChartPoint(x: 5, y: 0.5)] {
            let (x, y) = Self.pixel(layout.point(x: point.x, y: point.y, panel: 0))
            #expect(canvas.color(x: x, y: y) == Self.red, "(\(point.x), \(point.y)) at pixel (\(x), \(y))")
        }
        // Well away from the line, the background or grid.
        let (x, y) = Self.pixel(layout.point(x: 2, y: 0.75, panel: 0))
        #expect(canvas.color(x: x, y: y) != Self.red)
        // The frame lies one pixel outside the data area; the title is above it, the legend between them.
        #expect(canvas.color(x: plot.x - 1, y: plot.y + 10) == ChartStyle().frame)
        let legend = try #require(layout.legendEntries[0][0])
        #expect(legend.maxY < plot.y && legend.x == plot.x)
    }

    /// A NaN point breaks the line: no ink between its neighbours, which (each alone now) become markers.
    @Test func gapsAreSkipped() {
        let series = ChartSeries(name: "s", color: Self.red, points: [ChartPoint(x: 2, y: 0.2), ChartPoint(x: 5, y: .nan), ChartPoint(x: 8, y: 0.6),
                                                                       ChartPoint(x: .infinity, y: 0.5)])
        let chart = Self.chart([series])
        let layout = chart.layout(), canvas = chart.render()
        let (x, y) = Self.pixel(layout.point(x: 5, y: 0.4, panel: 0))
        #expect(canvas.color(x: x, y: y) != Self.red)
        for point in [ChartPoint(x: 2, y: 0.2), ChartPoint(x: 8, y: 0.6)] {
            let (px, py) = Self.pixel(layout.point(x: point.x, y: point.y, panel: 0))
            // A marker, not just a dot: ink two pixels to the side too.
            #expect(canvas.color(x: px, y: py) == Self.red && canvas.color(x: px + 2, y: py) == Self.red)
        }
    }

    @Test func emptyAndSinglePointSeriesRender() {
        let empty = ChartSeries(name: "empty", color: .black, points: [])
        let single = ChartSeries(name: "one", color: Self.red, points: [ChartPoint(x: 3, y: 4)])
        // Data-covering axes: around the single point.
        let chart = Self.chart([empty, single], yRange: nil, xRange: nil)
        let layout = chart.layout(), canvas = chart.render()
        #expect(layout.xScale.lower < 3 && 3 < layout.xScale.upper && layout.yScales[0].lower < 4 && 4 < layout.yScales[0].upper)
        let (x, y) = Self.pixel(layout.point(x: 3, y: 4, panel: 0))
        #expect(canvas.color(x: x, y: y) == Self.red && canvas.color(x: x - 2, y: y) == Self.red)
        // Only empty series: the panel says so.
        let blank = Self.chart([empty], yRange: nil, xRange: nil)
        let plot = blank.layout().plots[0], image = blank.render()
        let note = (plot.y..<plot.maxY).contains { py in (plot.x..<plot.maxX).contains { image.color(x: $0, y: py) == ChartStyle().note } }
        #expect(note)
    }

    /// A constant series sits in the middle of its axis, drawn as a line.
    @Test func constantSeriesAreCentred() {
        let series = ChartSeries(name: "flat", color: Self.red, points: (0...10).map { ChartPoint(x: Double($0), y: 0.42) })
        let chart = Self.chart([series], yRange: nil)
        let layout = chart.layout(), canvas = chart.render()
        let scale = layout.yScales[0]
        #expect(abs(scale.fraction(0.42) - 0.5) < 0.3 && scale.ticks.count >= 2)
        let (x, y) = Self.pixel(layout.point(x: 5, y: 0.42, panel: 0))
        #expect(canvas.color(x: x, y: y) == Self.red)
    }

    /// Stacked panels share the x axis: the same x maps to the same column in both.
    @Test func panelsShareTheXAxis() {
        let top = ChartPanel(yLabel: "a", series: [ChartSeries(name: "a", color: Self.red, points: [ChartPoint(x: 0, y: 5), ChartPoint(x: 4, y: 1)])], weight: 3)
        let bottom = ChartPanel(yLabel: "b", yRange: 0...1, series: [ChartSeries(name: "b", color: .black, points: [ChartPoint(x: 1, y: 0.5)])], weight: 2)
        let chart = LineChart(title: "", xLabel: "x", panels: [top, bottom], width: 500, height: 400)
        let layout = chart.layout()
        #expect(layout.plots[0].maxY < layout.plots[1].y)
        #expect(layout.point(x: 2, y: 3, panel: 0).x == layout.point(x: 2, y: 0, panel: 1).x)
        #expect(layout.plots[0].height > layout.plots[1].height)
        #expect(layout.plots[1].maxY < 400 && layout.plots.allSatisfy { $0.maxX < 500 })
    }

    @Test func renderingIsDeterministic() throws {
        let points = (0..<200).map { ChartPoint(x: Double($0) / 20, y: 0.5 + 0.4 * sin(Double($0) / 7)) }
        let chart = Self.chart([ChartSeries(name: "wave", color: Self.red, points: points, lineWidth: 1.5, marker: .square)])
        let first = chart.render(), second = chart.render()
        #expect(first == second)
        #expect(try PNGEncoder.encode(first.image, name: "a") == PNGEncoder.encode(second.image, name: "b"))
    }

    /// A title too wide for the chart at the title scale is drawn smaller, inside the chart.
    @Test func longTitlesShrink() {
        let title = String(repeating: "m", count: 30)  // 179 font pixels: 537 at 3x, 358 at 2x
        let canvas = LineChart(title: title, xLabel: "", panels: [ChartPanel(yLabel: "", series: [])], width: 400, height: 200).render()
        // The title's rows: from the margin (12) down one 2x cell.
        let inked = (0..<400).filter { x in (0..<30).contains { canvas.color(x: x, y: $0) != .white } }
        #expect(inked.first == 21 && inked.last == 21 + 358 - 1, "title columns \(inked.first ?? -1)...\(inked.last ?? -1)")
    }

    /// A chart smaller than its margins still renders (a one-pixel plot), without trapping.
    @Test func tinyChartsRender() {
        let series = ChartSeries(name: "a long legend entry", color: Self.red, points: [ChartPoint(x: 0, y: 0), ChartPoint(x: 1, y: 1)])
        let canvas = LineChart(title: "title", xLabel: "x", panels: [ChartPanel(yLabel: "y", series: [series])], width: 20, height: 10).render()
        #expect(canvas.width == 20 && canvas.height == 10)
    }
}
