import Foundation
import PrimaCheckpoint
import PrimaImage
import PrimaMetadata
import PrimaTokenizers

/// The stored parts a diagnosis reads besides the weights (Formats/prima-checkpoint.md §3.2, §3.4, §8), each
/// read and checked in one place: `StoredValidation` runs them for every tool, `prima-diagnose` uses what they
/// return. Errors are one line naming the file and the part.
public enum StoredParts {
    /// The metadata schema of the `/prima` group (`prima/files/metadata_schema.json`): at least one field, and every
    /// category field with at least one value (a record could match no other).
    public static func schema(_ checkpoint: Checkpoint) throws -> MetadataSchema {
        let source = "\(checkpoint.path): prima/files/metadata_schema.json"
        let schema = try MetadataSchema(jsonText: String(decoding: try checkpoint.group("prima").file("metadata_schema.json"), as: UTF8.self),
                                        source: source)
        guard !schema.fields.isEmpty else { throw StoredComponentError("\(source): no fields (the text encoder would read nothing)") }
        for field in schema.fields {
            if case .category(let values, _) = field.kind, values.isEmpty {
                throw StoredComponentError("\(source): field '\(field.key)': a category with no values")
            }
        }
        return schema
    }

    /// The component's `files/tokenizer.json`, loaded as diagnosis uses it; every id it can emit must have an
    /// embedding row, so it must lie below the component's `vocab_size`.
    public static func tokenizer(_ component: ComponentReader) throws -> Tokenizer {
        let path = component.checkpoint.path
        guard try component.fileNames().contains("tokenizer.json") else {
            throw StoredComponentError("\(path): \(component.name) has no files/tokenizer.json")
        }
        let source = "\(path): \(component.name)/files/tokenizer.json"
        let tokenizer = try Tokenizer(jsonData: Data(try component.file("tokenizer.json")), source: source)
        if let config = try? StoredConfig.read(component),
           case .int(let vocabSize)? = config.fields.first(where: { $0.0 == "vocab_size" })?.1,
           let problem = try idProblem(tokenizer, vocabSize: vocabSize) {
            throw StoredComponentError("\(source): \(problem)")
        }
        return tokenizer
    }

    /// Why `tokenizer` can emit an id at or above `vocabSize`, or nil: every token of its vocabulary (through the
    /// public id ↔ token map), every added token, the special tokens its post-processor adds and its padding id.
    static func idProblem(_ tokenizer: Tokenizer, vocabSize: Int) throws -> String? {
        var below = 0
        for id in 0..<vocabSize where tokenizer.idToToken(id) != nil { below += 1 }
        if below < tokenizer.vocabularySize {
            return "\(tokenizer.vocabularySize - below) of its \(tokenizer.vocabularySize) tokens have ids at or above vocab_size \(vocabSize) (files/config.json), which has no embedding for them"
        }
        let special = try tokenizer.encode("", addSpecialTokens: true).ids + (tokenizer.padding.map { [$0.padId] } ?? [])
        if let bad = special.first(where: { $0 < 0 || $0 >= vocabSize }) {
            return "special token id \(bad) is outside vocab_size \(vocabSize) (files/config.json)"
        }
        return nil
    }

    /// Why the heads' class token ids are not the first token of " CODE" for each class code under the decoder's
    /// tokenizer (§8.1), or nil.
    public static func classTokenProblem(_ heads: PrimaHeads, decoderTokenizer: Tokenizer) -> String? {
        for (label, id) in zip(heads.labels, heads.classTokenIds) {
            guard let first = (try? decoderTokenizer.encode(" " + label.code, addSpecialTokens: false))?.ids.first else {
                return "class \(label.code): \" \(label.code)\" encodes to no decoder token"
            }
            if first != id {
                return "tensor \(PrimaHeadsConfig.classTokenIdsName): class \(label.code) has token \(id), but the first decoder token of \" \(label.code)\" is \(first) (§8.1)"
            }
        }
        return nil
    }

    /// The image encoder's `preprocessing/` attributes (§3.4): flags 0 or 1, a known resample, valid parameters.
    public static func preprocessing(_ component: ComponentReader) throws -> ImagePreprocessing {
        let origin = "\(component.checkpoint.path): \(component.name)"
        let group = try component.subgroup("preprocessing")
        func flag(_ key: String) throws -> Bool {
            let value = try group.intAttribute(key)
            guard value == 0 || value == 1 else { throw StoredComponentError("\(origin): preprocessing/\(key) is \(value), not 0 or 1") }
            return value == 1
        }
        let resampleName = try group.stringAttribute("resample")
        guard let resample = ImageResample(rawValue: resampleName) else {
            throw StoredComponentError("\(origin): preprocessing: unsupported resample \"\(resampleName)\"")
        }
        let result = ImagePreprocessing(
            height: try group.intAttribute("height"), width: try group.intAttribute("width"), resample: resample,
            doResize: try flag("do_resize"), doRescale: try flag("do_rescale"), doNormalize: try flag("do_normalize"),
            rescaleFactor: try group.doubleAttribute("rescale_factor"),
            imageMean: try group.doublesAttribute("image_mean"), imageStd: try group.doublesAttribute("image_std"))
        do { try result.validate() } catch { throw StoredComponentError("\(origin): \(error)") }
        return result
    }
}
