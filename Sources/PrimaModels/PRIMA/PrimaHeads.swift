import PrimaCheckpoint
import PrimaJSON
import PrimaTensor

/// One diagnosis class: its code (e.g. `BCC`) and display name.
public struct PrimaLabel: Sendable, Equatable {
    public let code: String
    public let name: String
    public init(code: String, name: String) {
        self.code = code
        self.name = name
    }
}

/// The PRIMA heads of a checkpoint's `/prima` group (Formats/prima-checkpoint.md §8) and their forward passes:
/// alignment projections, image classifier and the fusion projectors into the decoder's width (Docs/prima-model.md).
/// All heads are float32, also in an int8 checkpoint.
public final class PrimaHeads: Sendable {
    public let config: PrimaHeadsConfig
    /// The classes, in the order of the class logits.
    public let labels: [PrimaLabel]
    /// The decoder token id whose logit scores each class.
    public let classTokenIds: [Int]
    /// The decoder prompt and the answer prefix, as text.
    public let prompt: String
    public let answerPrefix: String
    /// 0: the heads hold their seeded initialisation (the checkpoint's `heads_trained`).
    public let trained: Bool
    let weights: ModelWeights
    /// The convolution weights as matrices over im2col rows: image [d_llm, 4·d_img] in (ky, kx, c) order, text
    /// [d_llm, 2·d_txt] in (k, c) order.
    let imageConv: Tensor
    let textConv: Tensor

    /// Reads and validates the heads group of `checkpoint`: every tensor with its §8 shape, the class token ids,
    /// labels, prompt and answer prefix.
    public init(checkpoint: Checkpoint) throws {
        let group = try checkpoint.group("prima")
        let origin = "\(checkpoint.path): prima"
        func int(_ key: String) throws -> Int {
            guard group.group.hasAttribute(key), let value = try? group.group.intAttribute(key) else {
                throw RuntimeError("\(origin): missing or non-integer attribute \(key)")
            }
            return value
        }
        let labelsText = String(decoding: try group.file("labels.json"), as: UTF8.self)
        guard let labelArray = (try? JSON.parse(labelsText))?.array, !labelArray.isEmpty else {
            throw RuntimeError("\(origin): files/labels.json is not a non-empty JSON array")
        }
        labels = try labelArray.enumerated().map { index, value in
            guard let object = value.object, let code = object["code"]?.string, let name = object["name"]?.string else {
                throw RuntimeError("\(origin): files/labels.json entry \(index) is not an object with string code and name")
            }
            return PrimaLabel(code: code, name: name)
        }
        var codes = Set<String>()
        if let repeated = labels.first(where: { !codes.insert($0.code).inserted }) {
            throw RuntimeError("\(origin)/files/labels.json: class \(repeated.code) appears twice")
        }
        // The widths size every head tensor; bounded like a component's hidden_size (§3.5).
        func width(_ key: String) throws -> Int {
            let value = try int(key)
            guard (1...ConfigLimits.maxHiddenSize).contains(value) else {
                throw RuntimeError("\(origin): attribute \(key) is \(value), outside 1...\(ConfigLimits.maxHiddenSize)")
            }
            return value
        }
        config = PrimaHeadsConfig(classCount: labels.count, imageWidth: try width("d_image"), textWidth: try width("d_text"),
                                  decoderWidth: try width("d_llm"), alignWidth: try width("d_align"))
        let trainedFlag = try int("heads_trained")
        guard trainedFlag == 0 || trainedFlag == 1 else { throw RuntimeError("\(origin): attribute heads_trained is \(trainedFlag), not 0 or 1") }
        trained = trainedFlag == 1
        _ = try int("init_seed")
        // initialised_tensors lists heads that hold their initialisation: none exactly when heads_trained is 1.
        let floatNames = Set(config.floatTensors.map(\.name))
        guard let initialised = (try? group.attribute("initialised_tensors")).flatMap({ try? JSON.parse($0).array }),
              initialised.allSatisfy({ $0.string.map(floatNames.contains) == true }),
              Set(initialised.compactMap(\.string)).count == initialised.count else {
            throw RuntimeError("\(origin): attribute initialised_tensors is not a JSON list of distinct heads tensor names (§8)")
        }
        guard initialised.isEmpty == trained else {
            throw RuntimeError("\(origin): heads_trained is \(trainedFlag) but initialised_tensors lists \(initialised.count) tensors")
        }
        func text(_ fileName: String) throws -> String {
            guard let text = String(validating: try group.file(fileName), as: UTF8.self) else {
                throw RuntimeError("\(origin)/files/\(fileName): not UTF-8 text")
            }
            return text
        }
        prompt = try text("prompt.txt")
        answerPrefix = try text("answer_prefix.txt")

        let records = try group.tensorRecords()
        guard let idsRecord = records.first(where: { $0.name == PrimaHeadsConfig.classTokenIdsName }),
              idsRecord.dtype == .i64, idsRecord.shape == [labels.count] else {
            throw RuntimeError("\(origin): tensor \(PrimaHeadsConfig.classTokenIdsName) must be int64 [\(labels.count)] (one per label)")
        }
        classTokenIds = try group.readTensor(idsRecord).withUnsafeBytes { Array($0.bindMemory(to: Int64.self)).map(Int.init) }
        guard Set(classTokenIds).count == classTokenIds.count else {
            throw RuntimeError("\(origin): two classes share one token in \(PrimaHeadsConfig.classTokenIdsName)")
        }
        // Every tensor's shape and dtype before any weight is read, as TensorValidation does for the components.
        let specs = config.floatTensors
        for spec in specs {
            guard let record = records.first(where: { $0.name == spec.name }) else { throw RuntimeError("\(origin): missing tensor \(spec.name)") }
            guard record.shape == spec.shape, record.dtype == .f32 else {
                throw RuntimeError("\(origin): tensor \(spec.name): \(record.dtype.rawValue) \(ShapeMath.describe(record.shape)) but the heads' attributes imply f32 \(ShapeMath.describe(spec.shape))")
            }
        }
        let known = Set(specs.map(\.name) + [PrimaHeadsConfig.classTokenIdsName])
        if let extra = records.first(where: { !known.contains($0.name) }) {
            throw RuntimeError("\(origin): tensor \(extra.name) is not a PRIMA heads tensor (§8)")
        }
        weights = try ModelWeights(component: group, excluding: [PrimaHeadsConfig.classTokenIdsName])
        imageConv = Self.convMatrix(try weights("fusion.image_seq_projector.conv.weight"))
        textConv = Self.convMatrix(try weights("fusion.text_seq_projector.conv.weight"))
    }

    /// A convolution weight [O, C, k…] as [O, k…·C]: the kernel positions outermost, channels innermost, so that an
    /// im2col row is the concatenation of whole token vectors.
    static func convMatrix(_ weight: Tensor) -> Tensor {
        let out = weight.shape[0], channels = weight.shape[1], taps = weight.shape.dropFirst(2).reduce(1, *)
        let matrix = Tensor(zeros: [out, taps * channels], dtype: .f32)
        weight.withFloat32 { w in matrix.withMutableFloat32 { m in
            for o in 0..<out { for c in 0..<channels { for t in 0..<taps {
                m[o * taps * channels + t * channels + c] = w[(o * channels + c) * taps + t]
            } } }
        } }
        return matrix
    }

    private func linear(_ x: Tensor, _ prefix: String) throws -> Tensor {
        Linear.forward(x, weight: try weights.linear(prefix + ".weight"), bias: try weights(prefix + ".bias"))
    }

    /// image_proj: x [N, d_img] → [N, d_align] (image CLS or patch tokens).
    public func alignImage(_ x: Tensor) throws -> Tensor { try linear(x, "alignment.image_proj") }

    /// text_proj: x [N, d_txt] → [N, d_align] (text CLS or sequence tokens).
    public func alignText(_ x: Tensor) throws -> Tensor { try linear(x, "alignment.text_proj") }

    /// image_classifier: image CLS [N, d_img] → logits [N, K].
    public func classifyImage(_ cls: Tensor) throws -> Tensor { try linear(cls, "image_classifier") }

    /// fc2(GELU(fc1(x))): a CLS token [N, d] → [N, d_llm]; `projector` is `image_cls_projector` or `text_cls_projector`.
    public func projectCLS(_ x: Tensor, projector: String) throws -> Tensor {
        let prefix = "fusion.\(projector)"
        return try linear(Elementwise.apply(.gelu, try linear(x, prefix + ".fc1")), prefix + ".fc2")
    }

    /// The image sequence projector: patch tokens [h·w, d_img] of a row-major h × w grid → Conv2d (kernel 2, stride 2;
    /// an odd last row or column is dropped) → GELU → Linear: [(h/2)·(w/2), d_llm].
    public func projectImageSequence(_ patches: Tensor, gridHeight h: Int, gridWidth w: Int) throws -> Tensor {
        let c = config.imageWidth, h2 = h / 2, w2 = w / 2
        precondition(patches.shape == [h * w, c], "image sequence projector: patches \(patches.shape) are not [\(h)·\(w), \(c)]")
        let columns = Tensor(zeros: [h2 * w2, 4 * c], dtype: .f32)                    // im2col rows, (ky, kx, c)
        patches.withFloat32 { x in columns.withMutableFloat32 { m in
            for i in 0..<h2 { for j in 0..<w2 { for ky in 0..<2 { for kx in 0..<2 {
                let source = ((2 * i + ky) * w + 2 * j + kx) * c
                let target = (i * w2 + j) * 4 * c + (ky * 2 + kx) * c
                (m.baseAddress! + target).update(from: x.baseAddress! + source, count: c)
            } } } }
        } }
        let conv = Linear.forward(columns, weight: imageConv, bias: try weights("fusion.image_seq_projector.conv.bias"))
        return try linear(Elementwise.apply(.gelu, conv), "fusion.image_seq_projector.fc")
    }

    /// The text sequence projector: sequence tokens [L, d_txt] (no [CLS], [SEP] or padding) → Conv1d (kernel 2,
    /// stride 2; an odd last token is dropped) → GELU → Linear: [L/2, d_llm]; [0, d_llm] when L < 2.
    public func projectTextSequence(_ tokens: Tensor) throws -> Tensor {
        let c = config.textWidth, length = tokens.shape[0], pairs = length / 2
        precondition(tokens.shape == [length, c], "text sequence projector: tokens \(tokens.shape) are not [L, \(c)]")
        guard pairs > 0 else { return Tensor(zeros: [0, config.decoderWidth], dtype: .f32) }
        // Two consecutive rows of [L, c] are one contiguous (k, c) im2col row.
        let columns = Tensor(zeros: [pairs, 2 * c], dtype: .f32)
        tokens.withFloat32 { x in columns.withMutableFloat32 { m in m.baseAddress!.update(from: x.baseAddress!, count: pairs * 2 * c) } }
        let conv = Linear.forward(columns, weight: textConv, bias: try weights("fusion.text_seq_projector.conv.bias"))
        return try linear(Elementwise.apply(.gelu, conv), "fusion.text_seq_projector.fc")
    }

    /// The special token embeddings [4, d_llm]: `<|img_start|>`, `<|img_end|>`, `<|txt_start|>`, `<|txt_end|>`.
    public func specialTokens() throws -> Tensor { try weights(PrimaHeadsConfig.specialTokensName) }
}
