import ArgumentParser
import Foundation
import PrimaCLI
import PrimaDiagnose
import PrimaIO
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
            One case: --image and --metadata (a JSON object with the schema's fields). A batch: --folder, a \
            PAD-UFES-20-style folder (metadata.csv and the images named by its img_id column, in any subfolder); the \
            per-case results go to -o (CSV or JSON by its extension) and, when the csv has a diagnostic column, \
            per-class F1, macro F1, accuracy and balanced accuracy are reported. Exit status: 0 success, 1 the run \
            failed, 2 bad usage or bad input. The model: Docs/prima-model.md.
            """,
        version: "prima-diagnose 1")

    @Option(help: ArgumentHelp("The PRIMA checkpoint (prima-convert import --labels …).", valueName: "prima.h5"))
    var checkpoint: String

    @Option(help: ArgumentHelp("The clinical image.", valueName: "case.png"))
    var image: String?

    @Option(help: ArgumentHelp("The patient record: one JSON object.", valueName: "case.json"))
    var metadata: String?

    @Option(help: ArgumentHelp("A folder of cases: metadata.csv and the images.", valueName: "DIR"))
    var folder: String?

    @Option(name: .shortAndLong, help: ArgumentHelp("Batch results, per case (.csv or .json).", valueName: "FILE"))
    var output: String?

    @Option(help: ArgumentHelp("Batch summary and metrics as JSON.", valueName: "FILE.json"))
    var summary: String?

    @OptionGroup var overwrite: OverwriteOptions
    @OptionGroup var progress: ProgressOptions

    @Flag(help: "Print the result (one case) or the summary (batch) as JSON.")
    var json = false

    @Option(name: .customLong("repeat"), parsing: .unconditional, help: "Run the diagnosis N times and report the median time of each stage (for benchmarks).")
    var repeats = 1

    static func main() { ToolMain.run(self, name: "prima-diagnose") }

    func validate() throws {
        if repeats < 1 || repeats > FlagLimits.maxRepeats { throw ValidationError("--repeat must be in 1...\(FlagLimits.maxRepeats)") }
        if folder == nil {
            guard image != nil, metadata != nil else { throw ValidationError("give --image and --metadata, or --folder") }
            if output != nil || summary != nil { throw ValidationError("-o and --summary belong to a batch (--folder)") }
        } else {
            if image != nil || metadata != nil { throw ValidationError("give --image and --metadata, or --folder, not both") }
            if repeats != 1 { throw ValidationError("--repeat times one case") }
        }
        if let output, !(output.hasSuffix(".csv") || output.hasSuffix(".json")) {
            throw ValidationError("-o must end in .csv or .json")
        }
    }

    func run() throws {
        if let folder { return try runBatch(folder) }
        guard let image, let metadata else { return }
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
            print(DiagnosisReport.json(result, labels: diagnoser.labels, checkpoint: checkpoint, headsTrained: diagnoser.headsTrained,
                                       decoderInputs: diagnoser.model.decoderInputs, loadSeconds: loadSeconds, medians: medians, runs: repeats).serialized(indent: 2))
        } else {
            print(DiagnosisReport.text(result, labels: diagnoser.labels, usesMetadata: diagnoser.model.decoderInputs.usesMetadata,
                                       loadSeconds: loadSeconds, medians: medians, runs: repeats), terminator: "")
        }
    }

    /// Diagnoses every case of `folder`; a case that fails (no image, a corrupt one) is reported and skipped.
    private func runBatch(_ folder: String) throws {
        let diagnoser = try Diagnoser(checkpoint: checkpoint)
        let codes = diagnoser.labels.map(\.code)
        let cases = try CaseFolder(folder: folder, classCodes: codes, schema: diagnoser.schema)
        // Refuse the outputs before the run: existing without --force, and always an input (checkpoint, metadata.csv).
        for path in [output, summary].compactMap({ $0 }) {
            do { try OutputTarget.check(destination: path, kind: .file, overwrite: overwrite.force) } catch { throw ToolError.input(error.description) }
        }
        if let output, let summary, FileIdentity(path: output).map({ $0 == FileIdentity(path: summary) })
            ?? ((output as NSString).standardizingPath == (summary as NSString).standardizingPath) {
            throw ToolError.input("\(summary): -o and --summary name the same file")
        }
        if !diagnoser.headsTrained {
            ToolMain.printWarning("prima-diagnose", "\(checkpoint): the PRIMA heads are untrained (seeded initialisation); the predictions mean nothing")
        }
        let progress = Progress(label: "diagnose", total: cases.cases.count, unit: .items("cases"), enabled: progress.showProgress)
        var results: [CaseResult] = []
        for item in cases.cases {
            let outcome: CaseResult.Outcome
            switch item.image {
            case .failure(let error):
                outcome = .failed(error.description)
            case .success(let path):
                do {
                    outcome = .diagnosed(try diagnoser.diagnose(imagePath: path, record: item.record).diagnosis)
                } catch let error as ToolError where error.exitCode == 2 {
                    outcome = .failed(error.description)
                }
            }
            if case .failed(let message) = outcome { ToolMain.printWarning("prima-diagnose", "skipped: \(message)") }
            results.append(CaseResult(imageID: item.imageID, label: item.label, outcome: outcome))
            progress.advance(1)
        }
        progress.finish()
        // With nothing diagnosed there are no results and no accuracy to report (each case's failure was printed
        // above): a failed job, and no output files.
        if !results.isEmpty, !results.contains(where: { if case .diagnosed = $0.outcome { true } else { false } }) {
            throw ToolError.failed("\(folder): every one of the \(results.count) cases failed")
        }
        let batch = BatchResults(classCodes: codes, cases: results)
        if let output {
            try OutputFile.write(output.hasSuffix(".json") ? batch.jsonText() : batch.csvText(), to: output, overwrite: overwrite.force)
        }
        if let summary { try OutputFile.write(batch.summary.jsonText(), to: summary, overwrite: overwrite.force) }
        print(json ? batch.summary.jsonText() : batch.summary.table, terminator: "")
    }
}

/// Reads a patient record (one JSON object) and checks it against the checkpoint's schema.
func readRecord(_ path: String, schema: MetadataSchema) throws -> MetadataRecord {
    // A regular file (never a FIFO or device), then read with the metadata reader's size limit.
    try InputFile.check(path)
    do { return try schema.record(jsonFile: path) } catch { throw ToolError.input(error.description) }
}


/// A tokenizer.json that cannot be read or used is bad input.
extension TokenizerError: ToolFailure {
    public var exitCode: Int32 { 2 }
}

/// The single-case report, as text and as JSON.
enum DiagnosisReport {
    static func text(_ result: Diagnoser.Result, labels: [PrimaLabel], usesMetadata: Bool, loadSeconds: Double, medians: [(String, Double)], runs: Int) -> String {
        // Codes, names and the metadata text come from the checkpoint and the record: escaped for the terminal.
        let names = Dictionary(labels.map { ($0.code, ToolMain.oneLine($0.name)) }, uniquingKeysWith: { first, _ in first })
        var out = "metadata text: \(result.text.isEmpty ? "(no fields)" : ToolMain.oneLine(result.text))\n"
        if !usesMetadata { out += "(not read: this checkpoint's decoder sees the image only, decoder_inputs \"image\")\n" }
        out += "\n"
        let width = labels.map(\.code.count).max() ?? 0
        let nameWidth = names.values.map(\.count).max() ?? 0
        for (rank, entry) in result.diagnosis.ranked.enumerated() {
            let code = ToolMain.oneLine(entry.code).padding(toLength: width, withPad: " ", startingAt: 0)
            let name = (names[entry.code] ?? "").padding(toLength: nameWidth, withPad: " ", startingAt: 0)
            out += String(format: "%2d. %@  %@  %6.2f %%\n", rank + 1, code, name, Double(entry.probability) * 100)
        }
        let stages = medians.map { String(format: "%@ %.1f ms", $0.0.replacingOccurrences(of: "_", with: " "), $0.1 * 1000) }
        out += "\ntimings\(runs > 1 ? " (median of \(runs))" : ""): " + stages.joined(separator: ", ")
        out += String(format: "; checkpoint load %.2f s\n", loadSeconds)
        return out
    }

    static func json(_ result: Diagnoser.Result, labels: [PrimaLabel], checkpoint: String, headsTrained: Bool,
                     decoderInputs: PrimaDecoderInputs, loadSeconds: Double,
                     medians: [(String, Double)], runs: Int) -> JSONValue {
        let names = Dictionary(labels.map { ($0.code, $0.name) }, uniquingKeysWith: { first, _ in first })
        return .object(JSONObject([
            ("checkpoint", .string(checkpoint)),
            ("heads_trained", .bool(headsTrained)),
            ("decoder_inputs", .string(decoderInputs.rawValue)),
            ("text", .string(result.text)),
            ("prediction", .string(result.diagnosis.predicted)),
            ("classes", .array(result.diagnosis.ranked.map { entry in
                .object(JSONObject([("code", .string(entry.code)), ("name", .string(names[entry.code] ?? "")),
                                    ("probability", .double(Double(entry.probability)))]))
            })),
            ("load_seconds", .double(loadSeconds)),
            ("runs", .int(runs)),
            ("timings_ms", .object(JSONObject(medians.map { ($0.0, .double($0.1 * 1000)) }))),
        ]))
    }
}
