import Foundation
import PrimaImage
import PrimaIO

// MARK: - Figures and the report directory

extension EvaluationReport {
    /// One PNG figure of the report.
    public struct Figure: Sendable {
        /// The file name inside the report directory.
        public let name: String
        public let image: RGBImage
    }

    /// The figures (Docs/evaluation.md, "Figures"): `metrics.png`, the mean macro F1, accuracy and balanced
    /// accuracy of every system as bars with ±1 SD error bars; then per system `confusion-SYSTEM.png`, its summed
    /// confusion matrix with the counts in the cells and each row shaded by its share of the row (row-normalised,
    /// so the diagonal reads as recall), and `reliability-SYSTEM.png`, the accuracy of each confidence bin as bars
    /// against the diagonal of perfect calibration (an empty bin has no bar).
    public var figures: [Figure] {
        var figures = [Figure(name: "metrics.png", image: metricsChart.render().image)]
        for system in systems {
            figures.append(Figure(name: "confusion-\(system.name).png", image: confusionMap(system).render().image))
            figures.append(Figure(name: "reliability-\(system.name).png", image: reliabilityChart(system).render().image))
        }
        return figures
    }

    /// Width of `metrics.png`: room for every system's label.
    static func metricsWidth(systemCount: Int) -> Int { max(900, 120 + 150 * systemCount) }

    /// The bars of `metrics.png`, in percent on a 0…100 axis.
    var metricsChart: BarChart {
        let scores: [(String, (System) -> Spread)] = [("macro F1", \.macroF1), ("accuracy", \.accuracy), ("balanced accuracy", \.balancedAccuracy)]
        let series = scores.enumerated().map { index, score in
            BarSeries(name: score.0, color: ChartStyle.palette[index], values: systems.map { 100 * score.1($0).mean },
                      errors: systems.map { 100 * (score.1($0).sd ?? 0) })
        }
        return BarChart(title: "Mean over folds, error bars 1 SD", xLabel: "", yLabel: "percent", yRange: 0...100,
                        groups: systems.map { "\($0.name) (n=\($0.folds.count))" }, series: series,
                        width: Self.metricsWidth(systemCount: systems.count))
    }

    /// The heat map of `confusion-SYSTEM.png`.
    func confusionMap(_ system: System) -> HeatMap {
        let shades = system.confusion.map { row in
            let total = row.reduce(0, +)
            return row.map { total == 0 ? 0 : Double($0) / Double(total) }
        }
        return HeatMap(title: "\(system.name): confusion, \(system.folds.count) folds", rowTitle: "true", columnTitle: "predicted",
                       rowLabels: classes, columnLabels: classes, shades: shades,
                       cellText: system.confusion.map { $0.map(String.init) })
    }

    /// The bars of `reliability-SYSTEM.png`: accuracy per bin, labelled by the bin's middle.
    func reliabilityChart(_ system: System) -> BarChart {
        let accuracy = BarSeries(name: "", color: ChartStyle.palette[0], values: system.calibration.map { $0.accuracy ?? .nan })
        return BarChart(title: "\(system.name): reliability, ECE \(Self.percent(system.expectedCalibrationError))%",
                        xLabel: "top-class probability (bin middle)", yLabel: "accuracy", yRange: 0...1,
                        groups: system.calibration.map { String(format: "%.2f", ($0.lower + $0.upper) / 2) },
                        series: [accuracy], referenceLine: ReferenceLine(start: 0, end: 1))
    }

    /// Writes the report directory `directory` whole or not at all (``OutputTarget``): `report.json`, `report.md`
    /// and the ``figures``. Refuses an existing directory unless `overwrite` (then it is replaced, never merged).
    public func write(to directory: String, overwrite: Bool = false) throws(ToolError) {
        let target = try OutputTarget(destination: directory, kind: .directory, overwrite: overwrite)
        var files: [(String, [UInt8])] = [("report.json", Array((json.serialized(indent: 2) + "\n").utf8)), ("report.md", Array(markdown.utf8))]
        for figure in figures {
            do { files.append((figure.name, try PNGEncoder.encode(figure.image, name: figure.name))) } catch { throw .failed("\(directory): \(error.description)") }
        }
        for (name, bytes) in files {
            let path = (target.temporaryPath as NSString).appendingPathComponent(name)
            guard FileManager.default.createFile(atPath: path, contents: Data(bytes)) else {
                throw .failed("\(directory): cannot write \(name) in \(target.temporaryPath)")
            }
        }
        try target.commit()
    }
}
