import Foundation
import PrimaImage
import PrimaJSON
import PrimaMetadata
import PrimaSafetensors
import PrimaTokenizers
import PrimaVerify

/// The parsers a user's file reaches, each as one entry point that takes arbitrary bytes: what libFuzzer drives
/// (Tests/Fuzz, `bash Tests/Fuzz/run.sh`) and what the regression test replays over the committed corpus and every
/// input that once crashed (Tests/PrimaFuzzRegressionTests). An entry point either accepts its input or refuses it
/// with the one-line error a tool would print; a crash, trap or hang is a bug.
public enum FuzzTarget: String, CaseIterable, Sendable {
    /// A safetensors file: header length, JSON header, entries, and every tensor read back.
    case safetensors
    /// The strict JSON parser (config.json, tokenizer.json, heads files, traces' JSON attributes).
    case json
    /// tokenizer.json loading, then encoding: the input is the tokenizer's JSON, a NUL byte, and the text to encode.
    case tokenizer
    /// metadata.csv parsed against the PAD-UFES-20 schema, and every row rendered to text.
    case metadataCSV = "metadata-csv"
    /// One patient record as JSON (`prima-diagnose --metadata`), checked and rendered.
    case metadataJSON = "metadata-json"
    /// A metadata schema file (`prima-convert import --metadata-schema`).
    case metadataSchema = "metadata-schema"
    /// PNG decoding, then the DINOv3 preprocessing of a decoded image.
    case png
    /// A checkpoint as `prima-verify CKPT` checks it: opened (the whole HDF5 tree validated), every component's
    /// configuration and tensors checked, every tensor read and its CRC-32 compared. libhdf5 itself can crash on
    /// corrupted metadata before any check runs; the fuzz driver, like every tool, therefore walks each file in a
    /// probe child first (`HDF5Probe`), and the regression test replays these inputs through `prima-verify`.
    case checkpoint

    /// What one input did.
    public enum Outcome: Equatable, Sendable {
        /// Parsed (and, where the target goes on, used) without error.
        case accepted
        /// Refused with this error message.
        case refused(String)
    }

    /// Largest decoded image the PNG target preprocesses (bigger ones are decoded only), to keep each run short.
    static let maxPreprocessedPixels = 1 << 20

    /// Runs the target on `data`; `scratch` is a directory for targets whose reader takes a path.
    public func run(_ data: [UInt8], scratch: String = NSTemporaryDirectory()) -> Outcome {
        do {
            switch self {
            case .safetensors: try Self.safetensors(data, scratch: scratch)
            case .json: _ = try JSON.parse(data)
            case .tokenizer: try Self.tokenizer(data)
            case .metadataCSV:
                let table = try MetadataTable(csvText: String(decoding: data, as: UTF8.self), source: "metadata.csv")
                for row in table.rows { _ = table.schema.text(for: row.record) }
            case .metadataJSON:
                let schema = MetadataSchema.padUfes20
                _ = schema.text(for: try schema.record(jsonText: String(decoding: data, as: UTF8.self), source: "patient.json"))
            case .metadataSchema:
                _ = try MetadataSchema(jsonText: String(decoding: data, as: UTF8.self)).serialized()
            case .png: try Self.png(data)
            case .checkpoint: try Self.checkpoint(data, scratch: scratch)
            }
            return .accepted
        } catch {
            return .refused("\(error)")
        }
    }

    private static func safetensors(_ data: [UInt8], scratch: String) throws {
        let path = scratch + "/fuzz-\(getpid()).safetensors"
        try write(data, to: path)
        defer { unlink(path) }
        let file = try SafetensorsFile(path: path)
        for entry in file.entries { _ = try file.readTensor(entry) }
    }

    private static func checkpoint(_ data: [UInt8], scratch: String) throws {
        let path = scratch + "/fuzz-\(getpid()).h5"
        try write(data, to: path)
        defer { unlink(path) }
        _ = try IntegrityChecker.run(checkpoint: path)
    }

    /// Writes `data` to the scratch file `path` (a harness failure, not an input's, if it cannot).
    private static func write(_ data: [UInt8], to path: String) throws {
        unlink(path)
        guard FileManager.default.createFile(atPath: path, contents: Data(data)) else {
            fatalError("cannot write the scratch file \(path)")
        }
    }

    private static func tokenizer(_ data: [UInt8]) throws {
        let split = data.firstIndex(of: 0) ?? data.endIndex
        let tokenizer = try Tokenizer(jsonData: Data(data[..<split]))
        let text = split < data.endIndex ? String(decoding: data[(split + 1)...], as: UTF8.self) : "Hello world"
        _ = try tokenizer.encode(text)
        _ = try tokenizer.encode(text, pair: text, addSpecialTokens: false)
    }

    private static func png(_ data: [UInt8]) throws {
        let image = try data.withUnsafeBytes { try PNGDecoder.decode($0, name: "image.png") }
        guard image.width * image.height <= maxPreprocessedPixels else { return }
        _ = try ImagePreprocessing().pixelValues(for: image)
    }
}
