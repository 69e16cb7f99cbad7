import PrimaCheckpoint

/// What the decoder's input sequence holds (`/prima`'s `decoder_inputs` attribute, Formats/prima-checkpoint.md §8;
/// Docs/prima-model.md "Decoder input").
///
/// `imageAndMetadata` is the paper's model: prompt, the image part, the metadata part, answer prefix. `image` is the
/// ablation "no metadata in the decoder": the metadata part — `<|txt_start|>`, the projected text CLS, the projected
/// text sequence and `<|txt_end|>` — is left out of the sequence; everything else is unchanged. The text encoder and
/// the text projectors then take no part in the diagnosis.
public enum PrimaDecoderInputs: String, Sendable, CaseIterable {
    case imageAndMetadata = "image+metadata"
    case image = "image"

    /// The attribute's name on `/prima`.
    public static let attributeName = "decoder_inputs"

    /// Whether the decoder sees the metadata part.
    public var usesMetadata: Bool { self == .imageAndMetadata }

    /// The value stored in `heads`; an absent attribute is `imageAndMetadata`. `origin` names the file in errors.
    public static func read(from heads: HDF5Group, origin: String) throws -> PrimaDecoderInputs {
        guard heads.hasAttribute(attributeName) else { return .imageAndMetadata }
        guard let text = try? heads.stringAttribute(attributeName) else {
            throw RuntimeError("\(origin): attribute \(attributeName) is not a string (expected \"image+metadata\" or \"image\")")
        }
        guard let value = PrimaDecoderInputs(rawValue: text) else {
            let shown = text.count > 40 ? String(text.prefix(40)) + "…" : text
            throw RuntimeError("\(origin): attribute \(attributeName) is \(shown.debugDescription), not \"image+metadata\" or \"image\"")
        }
        return value
    }

    /// Stores this value on `group` as the attribute ``read(from:origin:)`` reads: only when it is not the default,
    /// so a checkpoint or trace of the full model is unchanged.
    public func write(to group: HDF5Group) throws {
        if self != .imageAndMetadata { try group.setAttribute(Self.attributeName, string: rawValue) }
    }
}
