import ArgumentParser
import Foundation
import PrimaCLI
import PrimaIO
import PrimaCheckpoint
import PrimaQuantize

/// `prima-quantize`: int8 weight quantisation of a PRIMA checkpoint (Formats/prima-checkpoint.md §7).
/// Exit status: 0 success, 1 the job failed, 2 bad usage or bad input.
@main
struct PrimaQuantizeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "prima-quantize",
        abstract: "Write an int8-quantised copy of a PRIMA checkpoint.",
        discussion: """
            Quantises the Linear weights of every component with the reference quantiser of \
            Formats/prima-checkpoint.md §7; norms, biases, layer scales, tokens, the patch embedding, embeddings, \
            output heads, LoRA adapters and the /prima heads stay float (§7.2). Everything else is copied exactly. \
            Prints each candidate tensor with its SQNR, then the sizes before and after. \
            Exit status: 0 success, 1 the job failed, 2 bad usage or bad input.
            """,
        version: CheckpointFormat.tool)

    static func main() { ToolMain.run(self, name: "prima-quantize") }

    @Flag(help: "Quantise weights to int8 (the only quantisation this build does; required).")
    var int8 = false

    @Argument(help: "The float checkpoint to quantise (.h5).")
    var input: String

    @Option(name: .shortAndLong, help: "The quantised checkpoint to write (.h5).")
    var output: String

    @Option(help: "per-channel (one scale per output row) or block32 (one scale per 32 inputs of a row).")
    var scheme = Int8Scheme.perChannel.optionName

    @Option(name: .customLong("keep-float"), help: ArgumentHelp(
        "Keep tensors whose canonical name matches this regular expression float (searched anywhere in the name; repeatable; added to the defaults).",
        valueName: "regex"))
    var keepFloat: [String] = []

    @Flag(name: .customLong("quantize-embeddings"), help: "Also quantise the embedding tables (embed.tokens, embed.positions, embed.token_types).")
    var quantizeEmbeddings = false

    @Flag(name: .customLong("quantize-heads"), help: "Also quantise the output heads (lm_head, mlm.*, pooler.*).")
    var quantizeHeads = false

    @OptionGroup var overwrite: OverwriteOptions

    func validate() throws {
        guard int8 else { throw ValidationError("say --int8 (the only quantisation this build does)") }
        guard Int8Scheme(optionName: scheme) != nil else {
            throw ValidationError("--scheme must be per-channel or block32, not \"\(scheme)\"")
        }
    }

    func run() throws {
        let rules = try KeepFloatRules(userPatterns: keepFloat, quantizeEmbeddings: quantizeEmbeddings, quantizeHeads: quantizeHeads)
        let options = CheckpointQuantizer.Options(scheme: Int8Scheme(optionName: scheme)!, rules: rules)
        let summary = try CheckpointQuantizer.run(input: input, output: output, options: options, overwrite: overwrite.force) { tensor in
            let shape = "[" + tensor.shape.map(String.init).joined(separator: ", ") + "]"
            let name = "\(tensor.component)/\(tensor.name)"
            if let sqnr = tensor.sqnrDecibels {
                print("\(name)  \(shape)  \(tensor.sourceDType.rawValue) -> i8  SQNR \(String(format: "%.2f", sqnr)) dB")
            } else {
                print("\(name)  \(shape)  \(tensor.sourceDType.rawValue) kept float (\(tensor.keptFloatReason ?? "?"))")
            }
        }
        print("quantised \(summary.quantizedTensors) tensors (\(options.scheme.rawValue))")
        print(String(format: "tensors: %@ -> %@ (ratio %.3f)", Progress.format(summary.tensorBytesBefore), Progress.format(summary.tensorBytesAfter),
                     Double(summary.tensorBytesAfter) / Double(max(summary.tensorBytesBefore, 1))))
        print(String(format: "file: %@ -> %@ (ratio %.3f)", Progress.format(summary.fileBytesBefore), Progress.format(summary.fileBytesAfter),
                     Double(summary.fileBytesAfter) / Double(max(summary.fileBytesBefore, 1))))
        print(String(format: "wrote %@ in %.2f s", summary.output, summary.seconds))
    }
}

