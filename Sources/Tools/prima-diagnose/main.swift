import ArgumentParser
import Foundation
import PrimaCLI
import PrimaDiagnose
import PrimaJSON
import PrimaMetadata
import PrimaModels
import PrimaTokenizers

/// `prima-diagnose`: a PRIMA diagnosis from a checkpoint, a clinical image and the patient's metadata.
/// Exit status: 0 success, 1 the run failed, 2 bad usage or bad input.
@main
struct PrimaDiagnoseCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "prima-diagnose",
        abstract: "Diagnose a lesion from a clinical image (PNG) and the patient's metadata with a PRIMA checkpoint.",
        discussion: """
            One case: --image and --metadata (a JSON object with the schema's fields). Exit status: 0 success, \
            1 the run failed, 2 bad usage or bad input. The model: Docs/prima-model.md.
            """,
        version: "prima-diagnose 1")

    @Option(help: ArgumentHelp("The PRIMA checkpoint (prima-convert import --labels …).", valueName: "prima.h5"))
    var checkpoint: String

    @Option(help: ArgumentHelp("The clinical image.", valueName: "case.png"))
    var image: String

    @Option(help: ArgumentHelp("The patient record: one JSON object.", valueName: "case.json"))
    var metadata: String

    @Flag(help: "Print the result as JSON.")
    var json = false

    @Option(name: .customLong("repeat"), help: "Run the diagnosis N times and report the median time of each stage (for benchmarks).")
    var repeats = 1

    static func main() { ToolMain.run(self, name: "prima-diagnose") }

    func validate() throws {
        if repeats < 1 { throw ValidationError("--repeat must be ≥ 1") }
    }

    func run() throws {
        let loadStart = Date()
        let diagnoser = try Diagnoser(checkpoint: checkpoint)
        let loadSeconds = Date().timeIntervalSince(loadStart)
        if !diagnoser.headsTrained {
            ToolMain.printWarning("prima-diagnose", "\(checkpoint): the PRIMA heads are untrained (seeded initialisation); the probabilities below mean nothing")
        }
        let record = try readRecord(metadata, schema: diagnoser.schema)
        let runs = try (0..<repeats).map { _ in try diagnoser.diagnose(imagePath: image, record: record) }
        let result = runs[0]
        let stages = result.timings.map(\.stage) + ["total"]
        let medians = stages.enumerated().map { index, stage in
            let values = runs.map { index < $0.timings.count ? $0.timings[index].seconds : $0.totalSeconds }.sorted()
            return (stage, values[values.count / 2])
        }
        if json {
            print(DiagnosisReport.json(result, checkpoint: checkpoint, headsTrained: diagnoser.headsTrained,
                                       loadSeconds: loadSeconds, medians: medians, runs: repeats).serialized(indent: 2))
        } else {
            print(DiagnosisReport.text(result, loadSeconds: loadSeconds, medians: medians, runs: repeats), terminator: "")
        }
    }
}

/// Reads a patient record (one JSON object) and checks it against the checkpoint's schema.
func readRecord(_ path: String, schema: MetadataSchema) throws -> MetadataRecord {
    let text: String
    do { text = try String(contentsOfFile: path, encoding: .utf8) } catch {
        throw DiagnoseError.input("\(path): cannot read as UTF-8 text")
    }
    do { return try schema.record(jsonText: text, source: path) } catch { throw DiagnoseError.input(error.description) }
}

extension DiagnoseError: ToolFailure {}

/// A tokenizer.json that cannot be read or used is bad input.
extension TokenizerError: ToolFailure {
    public var exitCode: Int32 { 2 }
}

/// The single-case report, as text and as JSON.
enum DiagnosisReport {
    static func text(_ result: Diagnoser.Result, loadSeconds: Double, medians: [(String, Double)], runs: Int) -> String {
        var out = "metadata text: \(result.text.isEmpty ? "(no fields)" : result.text)\n\n"
        let width = result.ranked.map(\.label.code.count).max() ?? 0
        let nameWidth = result.ranked.map(\.label.name.count).max() ?? 0
        for (rank, entry) in result.ranked.enumerated() {
            let code = entry.label.code.padding(toLength: width, withPad: " ", startingAt: 0)
            let name = entry.label.name.padding(toLength: nameWidth, withPad: " ", startingAt: 0)
            out += String(format: "%2d. %@  %@  %6.2f %%\n", rank + 1, code, name, Double(entry.probability) * 100)
        }
        let stages = medians.map { String(format: "%@ %.1f ms", $0.0.replacingOccurrences(of: "_", with: " "), $0.1 * 1000) }
        out += "\ntimings\(runs > 1 ? " (median of \(runs))" : ""): " + stages.joined(separator: ", ")
        out += String(format: "; checkpoint load %.2f s\n", loadSeconds)
        return out
    }

    static func json(_ result: Diagnoser.Result, checkpoint: String, headsTrained: Bool, loadSeconds: Double,
                     medians: [(String, Double)], runs: Int) -> JSONValue {
        .object(JSONObject([
            ("checkpoint", .string(checkpoint)),
            ("heads_trained", .bool(headsTrained)),
            ("text", .string(result.text)),
            ("prediction", .string(result.ranked[0].label.code)),
            ("classes", .array(result.ranked.map { entry in
                .object(JSONObject([("code", .string(entry.label.code)), ("name", .string(entry.label.name)),
                                    ("probability", .double(Double(entry.probability)))]))
            })),
            ("load_seconds", .double(loadSeconds)),
            ("runs", .int(runs)),
            ("timings_ms", .object(JSONObject(medians.map { ($0.0, .double($0.1 * 1000)) }))),
        ]))
    }
}
