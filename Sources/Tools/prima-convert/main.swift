import ArgumentParser
import Foundation
import PrimaCLI
import PrimaIO
import PrimaCheckpoint
import PrimaConvert
import PrimaMetadata
import PrimaTokenizers

/// `prima-convert`: Hugging Face safetensors ⇄ PRIMA checkpoint, and inspection.
/// Exit status: 0 success, 1 the job failed, 2 bad usage or bad input.
@main
struct PrimaConvertCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "prima-convert",
        abstract: "Convert Hugging Face safetensors models to and from PRIMA checkpoints, and run their tokenizers.",
        discussion: "Exit status: 0 success, 1 the job failed, 2 bad usage or bad input. Format: Formats/prima-checkpoint.md.",
        version: CheckpointFormat.tool,
        subcommands: [Import.self, Export.self, LoraImport.self, MergeLora.self, Inspect.self, Tokenize.self])

    static func main() { ToolMain.run(self, name: "prima-convert") }
}


/// A tokenizer.json that cannot be read or used is bad input.
extension TokenizerError: ToolFailure {
    public var exitCode: Int32 { 2 }
}

/// Prints a warning line on stderr.
func warn(_ line: String) { ToolMain.printWarning("prima-convert", line) }

struct Import: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Import Hugging Face model directories into a PRIMA checkpoint.",
        discussion: """
            With one DIR, its role comes from config.json's model_type. With --image-encoder/--text-encoder/--decoder, \
            each directory fills that role (any subset). With --labels and all three roles, the PRIMA heads are \
            added (Formats/prima-checkpoint.md §8): from --heads where given, otherwise with the seeded initialisation, \
            and the checkpoint records which heads are untrained.
            """)

    @Argument(help: "A Hugging Face model directory (config.json + model.safetensors or a sharded index).")
    var directory: String?

    @Option(name: .customLong("image-encoder"), help: "DINOv3 ViT directory for the image_encoder role.")
    var imageEncoder: String?

    @Option(name: .customLong("text-encoder"), help: "ModernBERT or BERT directory for the text_encoder role.")
    var textEncoder: String?

    @Option(name: .customLong("decoder"), help: "Qwen3 directory for the decoder role.")
    var decoder: String?

    @Option(name: .shortAndLong, help: "The checkpoint to write (.h5).")
    var output: String

    @Option(help: ArgumentHelp("Assemble a PRIMA checkpoint with these classes, in order: CODE or CODE=Name, comma-separated.",
                               valueName: "CODES"))
    var labels: String?

    @Option(help: ArgumentHelp("Trained PRIMA heads under their canonical names (any subset).", valueName: "FILE.safetensors"))
    var heads: String?

    @Option(help: "The decoder prompt.")
    var prompt = PrimaAssemblyOptions.defaultPrompt

    @Option(name: .customLong("answer-prefix"), help: "The text after which the decoder scores the classes.")
    var answerPrefix = PrimaAssemblyOptions.defaultAnswerPrefix

    @Option(name: .customLong("metadata-schema"), help: ArgumentHelp("Metadata schema (default: PAD-UFES-20's).", valueName: "FILE.json"))
    var metadataSchema: String?

    @Option(name: .customLong("init-seed"), parsing: .unconditional, help: "Seed of the initialisation of heads not given by --heads.")
    var initSeed = 0

    @Flag(name: .customLong("no-metadata"),
          help: "The decoder reads the image only (decoder_inputs \"image\"): for heads trained with stage 3 --no-metadata.")
    var noMetadata = false

    @OptionGroup var overwrite: OverwriteOptions
    @OptionGroup var progress: ProgressOptions

    func validate() throws {
        if initSeed < 0 { throw ValidationError("--init-seed must be ≥ 0") }
        let roles = [imageEncoder, textEncoder, decoder].compactMap { $0 }
        if directory != nil && !roles.isEmpty {
            throw ValidationError("give either one DIR or --image-encoder/--text-encoder/--decoder, not both")
        }
        if directory == nil && roles.isEmpty { throw ValidationError("nothing to import: give DIR or a role option") }
    }

    func run() throws {
        var sources: [ImportSource] = []
        if let directory { sources.append(ImportSource(directory: directory, role: nil)) }
        if let imageEncoder { sources.append(ImportSource(directory: imageEncoder, role: .imageEncoder)) }
        if let textEncoder { sources.append(ImportSource(directory: textEncoder, role: .textEncoder)) }
        if let decoder { sources.append(ImportSource(directory: decoder, role: .decoder)) }
        if labels == nil {
            for (flag, given) in [("--heads", heads != nil), ("--metadata-schema", metadataSchema != nil), ("--no-metadata", noMetadata)]
                where given {
                throw ToolError.input("\(flag) needs --labels (it belongs to a PRIMA checkpoint)")
            }
        }
        let prima = try labels.map { labels in
            let schema = try metadataSchema.map { path in
                try ToolError.classify(asInput: true) {
                    try MetadataSchema(jsonText: try InputFile.readText(path, limit: MetadataLimits.maxSchemaBytes), source: path)
                }
            } ?? .padUfes20
            return PrimaAssemblyOptions(labels: try PrimaAssemblyOptions.parseLabels(labels), headsFile: heads, prompt: prompt,
                                        answerPrefix: answerPrefix, schema: schema, initSeed: initSeed,
                                        decoderInputs: noMetadata ? .image : .imageAndMetadata)
        }
        let summary = try Importer.run(sources, output: output, overwrite: overwrite.force, showProgress: progress.showProgress, prima: prima, warn: warn)
        for component in summary.components {
            print("\(component.role.rawValue): \(component.architecture), \(component.tensorCount) tensors, \(component.parameterCount) parameters, \(Progress.format(component.bytes))")
        }
        if let prima {
            print("prima: \(prima.labels.count) classes (\(prima.labels.map(\.code).joined(separator: ", "))), heads \(prima.headsFile.map { "from \($0)" } ?? "initialised with seed \(prima.initSeed)")")
        }
        print(String(format: "wrote %@ in %.2f s", summary.output, summary.seconds))
    }
}

struct Export: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Export one component of a checkpoint to a Hugging Face directory (bit-identical tensors).")

    @Argument(help: "The checkpoint (.h5).")
    var checkpoint: String

    @Option(help: "The component: image_encoder, text_encoder or decoder.")
    var component: String

    @Option(name: .shortAndLong, help: "The directory to write.")
    var output: String

    @Option(name: .customLong("max-shard-size"), parsing: .unconditional, help: "Shard model.safetensors above this size (e.g. 5GB, 500MB, 2GiB).")
    var maxShardSize = "5GB"

    @OptionGroup var overwrite: OverwriteOptions

    @Flag(help: "Export an int8-quantised component as dequantised weights in their recorded source dtype (not bit-identical to the original).")
    var dequantize = false

    @Option(help: ArgumentHelp("Export the component's LoRA adapter NAME as a PEFT directory instead of the component (Formats/prima-checkpoint.md §6.1).", valueName: "NAME"))
    var adapter: String?

    @OptionGroup var progress: ProgressOptions

    func validate() throws {
        guard ComponentRole(rawValue: component) != nil else {
            throw ValidationError("--component must be image_encoder, text_encoder or decoder, not \"\(component)\"")
        }
        guard parseByteSize(maxShardSize) != nil else { throw ValidationError("--max-shard-size: cannot read \"\(maxShardSize)\"") }
    }

    func run() throws {
        if let adapter {
            if dequantize { throw ToolError.input("--dequantize applies to a component, not to --adapter (adapters are float)") }
            let written = try PeftAdapters.exportAdapter(checkpoint: checkpoint, role: ComponentRole(rawValue: component)!,
                                                         name: adapter, output: output, overwrite: overwrite.force)
            print("wrote \(output): PEFT LoRA adapter \(adapter), \(written.tensorCount) tensors, \(Progress.format(written.bytes))")
            return
        }
        let summary = try Exporter.run(checkpoint: checkpoint, role: ComponentRole(rawValue: component)!, output: output,
                                       maxShardBytes: parseByteSize(maxShardSize)!, overwrite: overwrite.force,
                                       showProgress: progress.showProgress, dequantize: dequantize)
        print(String(format: "wrote %@: %d tensors, %@ in %d file(s), %.2f s", summary.directory, summary.tensorCount,
                     Progress.format(summary.bytes), summary.shardCount, summary.seconds))
    }
}

struct LoraImport: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lora-import",
        abstract: "Write a copy of a checkpoint with a PEFT LoRA adapter added to one component.",
        discussion: """
            DIR holds adapter_config.json and adapter_model.safetensors as PeftModel.save_pretrained writes them. \
            The adapter becomes /ROLE/lora/NAME (Formats/prima-checkpoint.md §6), its tensors bit-identical; \
            options a checkpoint adapter cannot represent exactly (DoRA, trained biases, saved modules, per-module \
            ranks, ...) are refused.
            """)

    @Argument(help: "The checkpoint (.h5).")
    var checkpoint: String

    @Option(help: "The component the adapter belongs to: image_encoder, text_encoder or decoder.")
    var role: String

    @Option(help: ArgumentHelp("The PEFT adapter directory.", valueName: "DIR"))
    var adapter: String

    @Option(help: "The adapter's name in the checkpoint.")
    var name = "default"

    @Option(name: .shortAndLong, help: "The checkpoint to write.")
    var output: String

    @OptionGroup var overwrite: OverwriteOptions

    func validate() throws {
        guard ComponentRole(rawValue: role) != nil else {
            throw ValidationError("--role must be image_encoder, text_encoder or decoder, not \"\(role)\"")
        }
    }

    func run() throws {
        let summary = try PeftAdapters.importAdapter(checkpoint: checkpoint, role: ComponentRole(rawValue: role)!,
                                                     adapterDirectory: adapter, name: name, output: output,
                                                     overwrite: overwrite.force)
        print("\(role)/lora/\(summary.name): rank \(summary.rank), alpha \(summary.alpha), \(summary.targets.count) weights adapted")
        print("wrote \(summary.output)")
    }
}

struct MergeLora: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "merge-lora",
        abstract: "Write a copy of a checkpoint with its LoRA adapters merged into the base weights.",
        discussion: """
            Each adapted weight becomes W + scale · B A, computed in f32 and rounded once to the weight's dtype \
            (Formats/prima-checkpoint.md §6.2). The adapters stay in the file, marked merged. Tied and int8 weights \
            are refused: merge the float checkpoint, then quantise.
            """)

    @Argument(help: "The checkpoint (.h5).")
    var checkpoint: String

    @Option(help: "Only this component: image_encoder, text_encoder or decoder (default: all).")
    var role: String?

    @Option(help: "Only the adapter of this name (default: every unmerged adapter).")
    var adapter: String?

    @Option(name: .shortAndLong, help: "The checkpoint to write.")
    var output: String

    @OptionGroup var overwrite: OverwriteOptions

    func validate() throws {
        if let role, ComponentRole(rawValue: role) == nil {
            throw ValidationError("--role must be image_encoder, text_encoder or decoder, not \"\(role)\"")
        }
    }

    func run() throws {
        let merged = try LoraMerger.run(checkpoint: checkpoint, roles: role.map { [ComponentRole(rawValue: $0)!] },
                                        adapter: adapter, output: output, overwrite: overwrite.force)
        let adapters = Set(merged.map { "\($0.role.rawValue)/lora/\($0.adapter)" }).sorted()
        print("merged \(merged.count) weights from \(adapters.isEmpty ? "no adapters" : adapters.joined(separator: ", "))")
        print("wrote \(output)")
    }
}

struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show a checkpoint's components, configs, files, tensors and provenance.")

    @Argument(help: "The checkpoint (.h5).")
    var checkpoint: String

    @Flag(help: "Print one JSON object instead of text.")
    var json = false

    @Flag(name: .customLong("no-tensors"), help: "Text output without the tensor list.")
    var noTensors = false

    func run() throws {
        if json {
            print(try Inspector.json(checkpoint: checkpoint).serialized())
        } else {
            print(try Inspector.text(checkpoint: checkpoint, showTensors: !noTensors))
        }
    }
}

/// Parses `5GB`, `500MB`, `2GiB`, `1000` (bytes) into a byte count; nil if malformed, not positive or above 2⁶².
func parseByteSize(_ text: String) -> Int? {
    let units: [(String, Int)] = [("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10), ("GB", 1_000_000_000),
                                  ("MB", 1_000_000), ("KB", 1000), ("kB", 1000), ("B", 1)]
    for (suffix, scale) in units where text.hasSuffix(suffix) {
        // Finite, positive and within 2⁶² bytes (an exabyte): Int(Double) traps outside Int's range.
        guard let value = Double(text.dropLast(suffix.count)), value > 0, value * Double(scale) < 0x1p62 else { return nil }
        return max(1, Int(value * Double(scale)))
    }
    guard let value = Int(text), value > 0 else { return nil }
    return value
}

/// Lines of a file descriptor without their "\n" or "\r\n", refusing a line longer than `maxLineBytes` as soon as
/// that many bytes are buffered (a 50 MB line is never held whole) and a line that is not UTF-8 (repairing it with
/// U+FFFD, as `readLine` does, would encode text the user did not give).
struct BoundedLineReader {
    let fileDescriptor: Int32
    let maxLineBytes: Int
    private var buffer = [UInt8](repeating: 0, count: 1 << 16)
    private var start = 0, end = 0
    private var atEOF = false
    private var lineNumber = 0

    init(fileDescriptor: Int32, maxLineBytes: Int) {
        self.fileDescriptor = fileDescriptor
        self.maxLineBytes = maxLineBytes
    }

    /// The next line; nil at the end of input.
    mutating func nextLine() throws -> String? {
        var line: [UInt8] = []
        lineNumber += 1
        while true {
            if start == end {
                if atEOF { return line.isEmpty ? nil : try text(line) }
                let count = buffer.withUnsafeMutableBytes { read(fileDescriptor, $0.baseAddress, $0.count) }
                if count < 0 {
                    if errno == EINTR { continue }
                    throw ToolError.input("stdin: cannot read: \(String(cString: strerror(errno)))")
                }
                if count == 0 { atEOF = true; continue }
                start = 0
                end = count
            }
            let newline = buffer[start..<end].firstIndex(of: UInt8(ascii: "\n"))
            let chunkEnd = newline ?? end
            // One more byte than the limit is allowed for the "\r" of a "\r\n" line end.
            guard line.count + (chunkEnd - start) <= maxLineBytes + 1 else {
                throw ToolError.input("stdin line \(lineNumber): longer than the limit of \(maxLineBytes) bytes")
            }
            line.append(contentsOf: buffer[start..<chunkEnd])
            start = chunkEnd
            if newline != nil {
                start += 1
                return try text(line)
            }
        }
    }

    private func text(_ line: [UInt8]) throws -> String {
        let content = line.last == UInt8(ascii: "\r") ? line.dropLast() : line[...]
        guard let text = String(validating: content, as: UTF8.self) else {
            throw ToolError.input("stdin line \(lineNumber): not UTF-8 text")
        }
        return text
    }
}

struct Tokenize: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Encode lines of UTF-8 text from stdin with a Hugging Face tokenizer.json.",
        discussion: """
            Prints one JSON array of token ids per input line (the line without its "\\n" or "\\r\\n"), the ids the \
            Python tokenizers library gives for Tokenizer.from_file(FILE).encode(line). Truncation and padding set in \
            the file apply. --stats prints the load time and the encoding throughput on stderr.
            """)

    @Argument(help: "The tokenizer.json file.")
    var tokenizer: String

    @Flag(name: .customLong("no-special"), help: "Do not add the post-processor's special tokens ([CLS], [SEP], ...).")
    var noSpecial = false

    @Flag(help: "Print the load time and the encoding throughput on stderr.")
    var stats = false

    func run() throws {
        let clock = ContinuousClock()
        let loadStart = clock.now
        let model = try Tokenizer(contentsOfFile: tokenizer)
        let loadTime = clock.now - loadStart

        var output = [UInt8]()
        output.reserveCapacity(1 << 16)
        let standardOutput = FileHandle.standardOutput
        func flush() {
            standardOutput.write(Data(output))
            output.removeAll(keepingCapacity: true)
        }
        var lines = 0, tokens = 0, bytes = 0
        var encodeTime = Duration.zero
        var reader = BoundedLineReader(fileDescriptor: 0, maxLineBytes: TokenizerLimits.maxInputBytes)
        while let line = try reader.nextLine() {
            let start = clock.now
            let ids = try model.encode(line, addSpecialTokens: !noSpecial).ids
            encodeTime += clock.now - start
            lines += 1
            tokens += ids.count
            bytes += line.utf8.count
            output.append(UInt8(ascii: "["))
            for (i, id) in ids.enumerated() {
                if i > 0 { output.append(contentsOf: ", ".utf8) }
                output.append(contentsOf: String(id).utf8)
            }
            output.append(contentsOf: "]\n".utf8)
            if output.count >= 1 << 16 { flush() }
        }
        flush()
        if stats {
            func seconds(_ d: Duration) -> Double {
                Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18
            }
            let encodeSeconds = seconds(encodeTime)
            warnStats(String(format: "loaded %@ in %.3f s (%d ids); encoded %d lines, %d bytes, %d tokens in %.3f s "
                                + "(%.2f MB/s, %.0f tokens/s)",
                             tokenizer, seconds(loadTime), model.vocabularySize, lines, bytes, tokens, encodeSeconds,
                             encodeSeconds > 0 ? Double(bytes) / encodeSeconds / 1e6 : 0,
                             encodeSeconds > 0 ? Double(tokens) / encodeSeconds : 0))
        }
    }

    private func warnStats(_ line: String) {
        FileHandle.standardError.write(Data("prima-convert: stats: \(line)\n".utf8))
    }
}
