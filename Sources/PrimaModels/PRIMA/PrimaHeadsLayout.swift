import PrimaTensor

/// The widths that fix the shapes of the PRIMA heads (Formats/prima-checkpoint.md §8, Docs/prima-model.md).
public struct PrimaHeadsConfig: Sendable, Equatable {
    /// K, the number of classes.
    public let classCount: Int
    /// d_img, the image encoder's hidden size.
    public let imageWidth: Int
    /// d_txt, the text encoder's hidden size.
    public let textWidth: Int
    /// d_llm, the decoder's hidden size.
    public let decoderWidth: Int
    /// d_align, the width of the alignment space (256 by default).
    public let alignWidth: Int

    /// The default alignment width.
    public static let defaultAlignWidth = 256

    public init(classCount: Int, imageWidth: Int, textWidth: Int, decoderWidth: Int, alignWidth: Int = defaultAlignWidth) {
        self.classCount = classCount
        self.imageWidth = imageWidth
        self.textWidth = textWidth
        self.decoderWidth = decoderWidth
        self.alignWidth = alignWidth
    }

    /// One float tensor of the heads: its canonical name, shape, and the fan-in of the layer it belongs to (nil for
    /// the special token embeddings, which are not a layer).
    public struct TensorSpec: Sendable, Equatable {
        public let name: String
        public let shape: [Int]
        public let fanIn: Int?
    }

    /// The special token embeddings [4, d_llm].
    public static let specialTokensName = "fusion.special_tokens"
    /// The class token ids, int64 [K].
    public static let classTokenIdsName = "task.class_token_ids"

    /// Every float tensor of the heads, in the order of the §8 table (the order the seeded initialisation draws
    /// them in).
    public var floatTensors: [TensorSpec] {
        let a = alignWidth, k = classCount, i = imageWidth, t = textWidth, d = decoderWidth
        func linear(_ prefix: String, out: Int, in fanIn: Int) -> [TensorSpec] {
            [TensorSpec(name: prefix + ".weight", shape: [out, fanIn], fanIn: fanIn),
             TensorSpec(name: prefix + ".bias", shape: [out], fanIn: fanIn)]
        }
        func conv(_ prefix: String, out: Int, in channels: Int, kernel: [Int]) -> [TensorSpec] {
            let fanIn = channels * kernel.reduce(1, *)
            return [TensorSpec(name: prefix + ".weight", shape: [out, channels] + kernel, fanIn: fanIn),
                    TensorSpec(name: prefix + ".bias", shape: [out], fanIn: fanIn)]
        }
        return linear("alignment.image_proj", out: a, in: i)
            + linear("alignment.text_proj", out: a, in: t)
            + linear("image_classifier", out: k, in: i)
            + linear("fusion.image_cls_projector.fc1", out: d, in: i) + linear("fusion.image_cls_projector.fc2", out: d, in: d)
            + linear("fusion.text_cls_projector.fc1", out: d, in: t) + linear("fusion.text_cls_projector.fc2", out: d, in: d)
            + conv("fusion.image_seq_projector.conv", out: d, in: i, kernel: [2, 2]) + linear("fusion.image_seq_projector.fc", out: d, in: d)
            + conv("fusion.text_seq_projector.conv", out: d, in: t, kernel: [2]) + linear("fusion.text_seq_projector.fc", out: d, in: d)
            + [TensorSpec(name: Self.specialTokensName, shape: [4, d], fanIn: nil)]
    }
}

/// The seeded initialisation of heads not given at assembly (Formats/prima-checkpoint.md §8.1): one SplitMix64
/// stream seeded with `init_seed` draws every layer tensor in table order, each value uniform in [−b, b) with
/// b = 1/√fan_in (PyTorch's default bound for Linear and Conv weights and biases): u = (next() >> 40) · 2⁻²⁴,
/// value = (2u − 1) · b in f32. The stream advances over every layer tensor, given or not, so a tensor's initial
/// values do not depend on which others were given.
public struct PrimaHeadsInitializer {
    private var state: UInt64

    public init(seed: UInt64) { state = seed }

    /// The next raw 64-bit value.
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// The next `count` values of a layer tensor with fan-in `fanIn`.
    public mutating func uniform(count: Int, fanIn: Int) -> [Float] {
        let bound = 1 / Float(fanIn).squareRoot()
        return (0..<count).map { _ in
            let u = Float(next() >> 40) * 0x1p-24
            return (2 * u - 1) * bound
        }
    }
}
