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
    /// What the decoder's input sequence holds (the checkpoint's `decoder_inputs`; absent: image and metadata).
    public let decoderInputs: PrimaDecoderInputs
    let weights: ModelWeights
    /// The alignment projections and the image classifier, bound at load.
    let imageProjection, textProjection, imageClassifier: BoundLinear
    /// The fusion projectors, bound at load.
    let imageCLSProjector, textCLSProjector: CLSProjector
    let imageSequenceProjector, textSequenceProjector: SequenceProjector

    /// Reads and validates the heads group of `checkpoint`: every tensor with its §8 shape, the class token ids,
    /// labels, prompt, answer prefix and decoder inputs.
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
        decoderInputs = try PrimaDecoderInputs.read(from: group.group, origin: origin)
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
        imageProjection = try weights.bind("alignment.image_proj")
        textProjection = try weights.bind("alignment.text_proj")
        imageClassifier = try weights.bind("image_classifier")
        imageCLSProjector = try CLSProjector(weights, "fusion.image_cls_projector")
        textCLSProjector = try CLSProjector(weights, "fusion.text_cls_projector")
        imageSequenceProjector = try SequenceProjector(weights, "fusion.image_seq_projector")
        textSequenceProjector = try SequenceProjector(weights, "fusion.text_seq_projector")
    }

    /// The alignment projection of image features [N, d_img] → [N, d_align].
    public func alignImage(_ x: Tensor) -> Tensor { imageProjection.forward(x).output }

    /// The alignment projection of text features [N, d_txt] → [N, d_align].
    public func alignText(_ x: Tensor) -> Tensor { textProjection.forward(x).output }

    /// The image classifier on image CLS features [B, d_img] → [B, K].
    public func classifyImage(_ cls: Tensor) -> Tensor { imageClassifier.forward(cls).output }

    /// A CLS projector (`fc2(gelu(fc1(x)))`) on [1, d] → [1, d_llm]; `projector` is `image_cls_projector` or
    /// `text_cls_projector`.
    public func projectCLS(_ x: Tensor, projector: String) throws -> Tensor {
        (projector == "image_cls_projector" ? imageCLSProjector : textCLSProjector).forward(x).output
    }

    /// The image sequence projector: Conv2d(d_img, d_llm, 2, stride 2) over the h × w patch grid [h·w, d_img] (the
    /// last row or column dropped when odd), GELU, fc → [(h/2)·(w/2), d_llm].
    public func projectImageSequence(_ patches: Tensor, gridHeight h: Int, gridWidth w: Int) throws -> Tensor {
        try imageSequence(patches, gridHeight: h, gridWidth: w).output
    }

    /// ``projectImageSequence(_:gridHeight:gridWidth:)`` with what its backward needs.
    func imageSequence(_ patches: Tensor, gridHeight h: Int, gridWidth w: Int) throws -> (output: Tensor, saved: SequenceProjector.Saved) {
        guard patches.shape == [h * w, config.imageWidth] else {
            throw RuntimeError("image sequence projector: patches \(ShapeMath.describe(patches.shape)) are not [\(h)·\(w), \(config.imageWidth)]")
        }
        return imageSequenceProjector.forward(patches, gridHeight: h, gridWidth: w)
    }

    /// The text sequence projector: Conv1d(d_txt, d_llm, 2, stride 2) over the tokens [L, d_txt] (an odd last
    /// token dropped), GELU, fc → [L/2, d_llm].
    public func projectTextSequence(_ tokens: Tensor) throws -> Tensor { try textSequence(tokens).output }

    /// ``projectTextSequence(_:)`` with what its backward needs.
    func textSequence(_ tokens: Tensor) throws -> (output: Tensor, saved: SequenceProjector.Saved) {
        guard tokens.shape.count == 2, tokens.shape[1] == config.textWidth else {
            throw RuntimeError("text sequence projector: tokens \(ShapeMath.describe(tokens.shape)) are not [L, \(config.textWidth)]")
        }
        return textSequenceProjector.forward(tokens, gridHeight: 1, gridWidth: tokens.shape[0])
    }

    /// `fusion.special_tokens` [4, d_llm]: `<|img_start|>`, `<|img_end|>`, `<|txt_start|>`, `<|txt_end|>`.
    public func specialTokens() throws -> Tensor { try weights(PrimaHeadsConfig.specialTokensName) }
}

/// A CLS projector of the fusion heads, `fc2(gelu(fc1(x)))` (Docs/prima-model.md), bound at load.
struct CLSProjector: Sendable {
    let fc1, fc2: BoundLinear

    struct Saved {
        let input, hidden, activated: Tensor
        let fc1, fc2: BoundLinear.Saved
    }

    init(_ weights: ModelWeights, _ prefix: String) throws {
        fc1 = try weights.bind(prefix + ".fc1")
        fc2 = try weights.bind(prefix + ".fc2")
    }

    /// x [1, d] → [1, d_llm].
    func forward(_ x: Tensor) -> (output: Tensor, saved: Saved) {
        let first = fc1.forward(x)
        let activated = Elementwise.apply(.gelu, first.output)
        let second = fc2.forward(activated)
        return (second.output, Saved(input: x, hidden: first.output, activated: activated, fc1: first.saved, fc2: second.saved))
    }

    /// dx from dy; the projector's trainable gradients accumulate.
    func backward(_ dy: Tensor, saved: Saved, gradients: GradientStore) throws -> Tensor {
        let dActivated = try fc2.backward(dy, input: saved.activated, saved: saved.fc2, gradients: gradients)!
        return try fc1.backward(Elementwise.backward(.gelu, dActivated, x: saved.hidden), input: saved.input, saved: saved.fc1,
                                gradients: gradients)!
    }
}

/// A sequence projector of the fusion heads: a stride-2 convolution over the token grid (TokenConvolution), GELU,
/// then `fc`, bound at load.
struct SequenceProjector: Sendable {
    let role: String
    let prefix: String
    let convWeight: Tensor          // [O, C, 2, 2] or [O, C, 2]; its im2col form is made per forward (training updates it)
    let convBias: Tensor
    let fc: BoundLinear

    struct Saved {
        let tokens: Tensor
        let gridHeight, gridWidth: Int
        let convolved, activated: Tensor
        let fc: BoundLinear.Saved
    }

    init(_ weights: ModelWeights, _ prefix: String) throws {
        role = weights.role
        self.prefix = prefix
        convWeight = try weights(prefix + ".conv.weight")
        convBias = try weights(prefix + ".conv.bias")
        fc = try weights.bind(prefix + ".fc")
    }

    /// tokens [gH·gW, C] → [(gH/kH)·(gW/kW), d_llm].
    func forward(_ tokens: Tensor, gridHeight: Int, gridWidth: Int) -> (output: Tensor, saved: Saved) {
        let convolved = TokenConvolution.forward(tokens, gridHeight: gridHeight, gridWidth: gridWidth, weightMatrix: TokenConvolution.weightMatrix(convWeight),
                                                 kernel: TokenConvolution.kernel(of: convWeight), bias: convBias)
        let activated = Elementwise.apply(.gelu, convolved)
        let projected = fc.forward(activated)
        return (projected.output, Saved(tokens: tokens, gridHeight: gridHeight, gridWidth: gridWidth, convolved: convolved,
                                        activated: activated, fc: projected.saved))
    }

    /// d(tokens) [gH·gW, C] from dy (rows the convolution drops get 0); the trainable gradients accumulate.
    func backward(_ dy: Tensor, saved: Saved, gradients: GradientStore) throws -> Tensor {
        let dActivated = try fc.backward(dy, input: saved.activated, saved: saved.fc, gradients: gradients)!
        let dConvolved = Elementwise.backward(.gelu, dActivated, x: saved.convolved)
        return TokenConvolution.backward(dConvolved, tokens: saved.tokens, gridHeight: saved.gridHeight, gridWidth: saved.gridWidth,
                                         weight: convWeight,
                                         weightGradient: gradients[GradientStore.path(role: role, tensor: prefix + ".conv.weight")],
                                         biasGradient: gradients[GradientStore.path(role: role, tensor: prefix + ".conv.bias")],
                                         inputGradient: true)!
    }
}
