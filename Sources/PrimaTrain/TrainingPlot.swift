import PrimaCheckpoint
import PrimaDiagnose
import PrimaImage
import PrimaIO

/// The training curves of a stage as a chart (issue 11, "What the user sees"): a loss panel over a validation
/// macro F1 panel, sharing an x axis in epochs.
///
/// - Loss panel: the training loss of every optimiser step (thin, pale), the mean training loss of each epoch and
///   the validation loss of each epoch (thick, with markers); its y axis covers the data.
/// - Macro F1 panel: the validation macro F1 of each epoch, on a fixed 0…1 axis.
///
/// Step `i` (0-based, ``TrainingRecord/History/loss``) is drawn at epoch `(i + 1) / stepsPerEpoch`, when it
/// finished; the values of epoch `e` (0-based) at `e + 1`. An epoch without validation (NaN, as ``Trainer``
/// records it) leaves a gap, as does a non-finite step loss; a lone point is a marker; a curve with no finite
/// value at all leaves its panel reading "no data". The x axis runs from 0 to the last step or epoch.
public enum TrainingPlot {
    public static let defaultWidth = 900
    public static let defaultHeight = 540

    /// The chart of `history`; `stepsPerEpoch` (≥ 1) places the steps on the epoch axis.
    public static func chart(history: TrainingRecord.History, title: String, stepsPerEpoch: Int,
                             width: Int = defaultWidth, height: Int = defaultHeight) -> LineChart {
        precondition(stepsPerEpoch >= 1, "steps per epoch \(stepsPerEpoch)")
        let stepPoints = history.loss.enumerated().map { ChartPoint(x: Double($0.offset + 1) / Double(stepsPerEpoch), y: Double($0.element)) }
        func perEpoch(_ values: [Float]) -> [ChartPoint] {
            values.enumerated().map { ChartPoint(x: Double($0.offset + 1), y: Double($0.element)) }
        }
        let blue = ChartStyle.palette[0], orange = ChartStyle.palette[1], green = ChartStyle.palette[2]
        let loss = ChartPanel(yLabel: "loss", series: [
            ChartSeries(name: "train (step)", color: blue.mixed(with: .white, amount: 0.55), points: stepPoints, lineWidth: 1),
            ChartSeries(name: "train (epoch mean)", color: blue, points: perEpoch(history.trainLoss), lineWidth: 2.5,
                        marker: .circle, markerRadius: 3.5),
            ChartSeries(name: "validation", color: orange, points: perEpoch(history.valLoss), lineWidth: 2.5,
                        marker: .square, markerRadius: 3),
        ], weight: 3)
        let f1 = ChartPanel(yLabel: "macro F1", yRange: 0...1, series: [
            ChartSeries(name: "validation macro F1", color: green, points: perEpoch(history.valMacroF1), lineWidth: 2.5,
                        marker: .circle, markerRadius: 3.5),
        ], weight: 2)
        // From 0 to the last step or epoch exactly (1 epoch when there is nothing yet).
        let last = max(Double(history.loss.count) / Double(stepsPerEpoch), Double(history.trainLoss.count), Double(history.valLoss.count),
                       Double(history.valMacroF1.count))
        return LineChart(title: title, xLabel: "epoch", xRange: 0...(last == 0 ? 1 : last), panels: [loss, f1], width: width, height: height)
    }

    /// The chart of `history` drawn as an image (``defaultWidth`` × ``defaultHeight`` unless given).
    public static func render(history: TrainingRecord.History, title: String, stepsPerEpoch: Int,
                              width: Int = defaultWidth, height: Int = defaultHeight) -> RGBImage {
        chart(history: history, title: title, stepsPerEpoch: stepsPerEpoch, width: width, height: height).render().image
    }

    /// Renders the chart and writes it to `path` as a PNG file, whole or not at all (``OutputFile``): the same
    /// history always gives the same bytes. Refuses an existing `path` unless `overwrite`.
    public static func write(history: TrainingRecord.History, title: String, stepsPerEpoch: Int, to path: String,
                             overwrite: Bool) throws(ToolError) {
        let image = render(history: history, title: title, stepsPerEpoch: stepsPerEpoch)
        let bytes: [UInt8]
        do { bytes = try PNGEncoder.encode(image, name: path) } catch { throw .failed(error.description) }
        try OutputFile.write(bytes, to: path, overwrite: overwrite)
    }
}
