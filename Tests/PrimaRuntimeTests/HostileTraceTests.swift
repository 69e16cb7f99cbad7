import Foundation
import PrimaCheckpoint
import PrimaJSON
import PrimaModels
import PrimaTensor
import PrimaTestSupport
import PrimaVerify
import Testing

/// A trace file written field by field, starting from a fixture trace, so that a test can break exactly one rule of
/// Formats/prima-trace.md. Every crafted file is determined by the fixture and the edit (nothing random).
struct CraftedTrace {
    enum Attribute { case string(String), int(Int) }
    enum Input { case ids([[Int]]), vector([Int]), floats(Tensor) }

    var attributes: [(name: String, value: Attribute)]
    var extraRootGroups: [String] = []
    var hasInputsGroup = true
    var hasActivationsGroup = true
    var inputs: [(name: String, value: Input)]
    var activations: [(name: String, tensor: Tensor, order: Int?)]

    /// The fixture trace `Fixtures/traces/NAME.h5` as its reader sees it, with the root attributes our writer writes.
    init(fixture: String) throws {
        let trace = try Trace(path: RuntimeTestSupport.trace(fixture))
        attributes = [("prima_trace_version", .int(1)), ("component", .string(trace.componentName)), ("source", .string(fixture)),
                      ("torch_version", .string("")), ("transformers_version", .string("")),
                      ("attn_implementation", .string("eager")), ("dtype", .string("float32"))]
        switch trace.subject {
        case .component(_, .pixels(let pixels)):
            inputs = [("pixel_values", .floats(pixels))]
        case .component(_, .tokens(let ids, let mask)):
            inputs = [("input_ids", .ids(ids)), ("attention_mask", .ids(mask))]
        case .prima(let prima, let classIds):
            inputs = [("pixel_values", .floats(prima.pixelValues)), ("input_ids", .ids([prima.textIds])),
                      ("attention_mask", .ids([Array(repeating: 1, count: prima.textIds.count)])),
                      ("prompt_ids", .ids([prima.promptIds])), ("answer_prefix_ids", .ids([prima.answerPrefixIds])),
                      ("class_token_ids", .vector(classIds))]
        case .primaBatch:
            throw HostileHDF5Tests.GenerationError(message: "\(fixture): forward-trace fixtures have no batch subject")
        }
        activations = trace.activations.enumerated().map { ($1.name, $1.tensor, $0) }
    }

    /// Sets (or, with nil, removes) a root attribute.
    mutating func set(_ name: String, _ value: Attribute?) {
        let index = attributes.firstIndex { $0.name == name }
        switch (index, value) {
        case (let index?, let value?): attributes[index].value = value
        case (let index?, nil): attributes.remove(at: index)
        case (nil, let value?): attributes.append((name, value))
        case (nil, nil): break
        }
    }

    /// Sets (or, with nil, removes) an input dataset.
    mutating func set(input name: String, _ value: Input?) {
        let index = inputs.firstIndex { $0.name == name }
        switch (index, value) {
        case (let index?, let value?): inputs[index].value = value
        case (let index?, nil): inputs.remove(at: index)
        case (nil, let value?): inputs.append((name, value))
        case (nil, nil): break
        }
    }

    /// The token rows of an input (nil if it is not a token input).
    func ids(_ name: String) -> [[Int]]? {
        if case .ids(let rows)? = inputs.first(where: { $0.name == name })?.value { return rows }
        return nil
    }

    /// The activation `name`'s tensor.
    func activation(_ name: String) -> Tensor { activations.first { $0.name == name }!.tensor }

    /// Replaces the tensor of activation `name`, keeping its place and order.
    mutating func replace(_ name: String, with tensor: Tensor) {
        let index = activations.firstIndex { $0.name == name }!
        activations[index].tensor = tensor
    }

    /// Keeps only the activations `keep` accepts, `order` renumbered 0 … n−1 (so only what is missing is wrong).
    mutating func keepActivations(where keep: (String) -> Bool) {
        activations = activations.filter { keep($0.name) }.enumerated().map { ($1.name, $1.tensor, $0) }
    }

    /// Writes the file into a fresh temporary directory and returns its path.
    func write(_ name: String) throws -> String {
        let path = RuntimeTestSupport.temporaryDirectory() + "/\(name).h5"
        let file = try HDF5File.create(path: path)
        do {
            let root = try file.root()
            for (name, value) in attributes {
                switch value {
                case .string(let text): try root.setAttribute(name, string: text)
                case .int(let number): try root.setAttribute(name, int: number)
                }
            }
            if hasInputsGroup {
                let group = try root.createGroup("inputs")
                for (name, value) in inputs {
                    switch value {
                    case .ids(let rows):
                        let dataset = try group.createDataset(name, dtype: .i64, shape: [rows.count, rows.first?.count ?? 0])
                        let flat = rows.flatMap { $0.map(Int64.init) }
                        if !flat.isEmpty { try flat.withUnsafeBytes { try dataset.writeAll($0) } }
                    case .vector(let values):
                        let dataset = try group.createDataset(name, dtype: .i64, shape: [values.count])
                        try values.map(Int64.init).withUnsafeBytes { try dataset.writeAll($0) }
                    case .floats(let tensor):
                        try Self.write(tensor, name, into: group)
                    }
                }
            }
            if hasActivationsGroup {
                let group = try root.createGroup("activations")
                for (name, tensor, order) in activations {
                    let dataset = try Self.write(tensor, name, into: group)
                    if let order { try dataset.setAttribute("order", int: order) }
                }
            }
            for name in extraRootGroups { _ = try root.createGroup(name) }
        }
        try file.close()
        return path
    }

    @discardableResult
    private static func write(_ tensor: Tensor, _ name: String, into group: HDF5Group) throws -> HDF5Dataset {
        let dataset = try group.createDataset(name, dtype: .f32, shape: tensor.shape)
        if tensor.elementCount > 0 { try tensor.float32Values().withUnsafeBytes { try dataset.writeAll($0) } }
        return dataset
    }
}

/// `prima-verify --trace` (and `--against … --trace`) on crafted traces that break Formats/prima-trace.md: every one
/// is refused before anything is compared, with exit status 2 and one line naming the trace file once, the same in
/// both modes; traces whose activations legitimately differ still pass.
@Suite struct HostileTraceTests {
    static let verify = RuntimeTestSupport.binary("prima-verify")

    /// One crafted trace: the fixture it starts from, the checkpoint it runs on, the edit, and what the error says.
    struct Case: Sendable, CustomStringConvertible {
        let name: String
        let fixture: String
        let edit: @Sendable (inout CraftedTrace) -> Void
        let message: String
        /// The fixture model the checkpoint is imported from (nil: the fixture's own; "prima": the assembled pipeline).
        var model: String? = nil
        var description: String { name }
    }

    static let qwen = "qwen3-tied-f32", bert = "bert-mlm-f32", dino = "dinov3-mlp-reg4-f32", prima = "prima-tiny-bert"

    /// Finding: traces that lack required activations passed (Formats/prima-trace.md §6 rule 2, §10.4).
    static let missingActivations: [Case] = [
        Case(name: "qwen-only-logits", fixture: qwen, edit: { $0.keepActivations { $0 == "logits" } },
             message: "required activation embeddings is missing"),
        Case(name: "qwen-missing-layer1", fixture: qwen, edit: { $0.keepActivations { $0 != "layers.1" } },
             message: "required activation layers.1 is missing"),
        Case(name: "qwen-missing-final-norm", fixture: qwen, edit: { $0.keepActivations { $0 != "final_norm" } },
             message: "required activation final_norm is missing"),
        Case(name: "bert-missing-embeddings", fixture: bert, edit: { $0.keepActivations { $0 != "embeddings" } },
             message: "required activation embeddings is missing"),
        Case(name: "prima-missing-probs", fixture: prima, edit: { $0.keepActivations { $0 != "class_probs" } },
             message: "required activation class_probs is missing"),
        Case(name: "prima-missing-class-logits", fixture: prima, edit: { $0.keepActivations { $0 != "class_logits" } },
             message: "required activation class_logits is missing"),
        Case(name: "prima-only-probs", fixture: prima, edit: { $0.keepActivations { $0 == "class_probs" } },
             message: "required activation image_encoder.embeddings is missing"),
        Case(name: "prima-missing-decoder-layer", fixture: prima, edit: { $0.keepActivations { $0 != "decoder.layers.1" } },
             message: "required activation decoder.layers.1 is missing"),
        // A pooler is accepted only from a checkpoint that has one.
        Case(name: "bert-pooler-without-one", fixture: bert, edit: { trace in
            let final = trace.activation("final_norm")
            trace.activations.append(("pooler", RuntimeTestSupport.random([final.shape[0], final.shape[2]], seed: 1), trace.activations.count))
        }, message: "/activations/pooler is not an activation of the text_encoder of"),
    ]

    /// Finding: traces that break §1-§3 were accepted, or compared and reported as a numerical FAIL.
    static let brokenRules: [Case] = [
        Case(name: "qwen-mask-zero-row", fixture: qwen, edit: { trace in
            var mask = trace.ids("attention_mask")!
            mask[1] = Array(repeating: 0, count: mask[1].count)
            trace.set(input: "attention_mask", .ids(mask))
        }, message: "/inputs/attention_mask row 1 has no real token"),
        Case(name: "bert-mask-zero-row", fixture: bert, edit: { trace in
            var mask = trace.ids("attention_mask")!
            mask[1] = Array(repeating: 0, count: mask[1].count)
            trace.set(input: "attention_mask", .ids(mask))
        }, message: "/inputs/attention_mask row 1 has no real token"),
        Case(name: "qwen-mask-left-pad", fixture: qwen, edit: { trace in
            trace.set(input: "attention_mask", .ids(trace.ids("attention_mask")!.map { $0.reversed() }))
        }, message: "is not right-padded"),
        Case(name: "qwen-mask-all-rows-padded", fixture: qwen, edit: { trace in
            trace.set(input: "attention_mask", .ids(trace.ids("attention_mask")!.map { $0 + [0] }))
            trace.set(input: "input_ids", .ids(trace.ids("input_ids")!.map { $0 + [0] }))
        }, message: "every row ends in padding"),
        Case(name: "qwen-mask-2", fixture: qwen, edit: { trace in
            trace.set(input: "attention_mask", .ids(trace.ids("attention_mask")!.map { $0.map { $0 * 2 } }))
        }, message: "/inputs/attention_mask holds 2 in row 0; its values are 0 and 1"),
        Case(name: "qwen-extra-root", fixture: qwen, edit: { $0.extraRootGroups = ["extra"] },
             message: "/extra: the root of a trace holds only the groups inputs and activations"),
        Case(name: "qwen-no-activations-group", fixture: qwen, edit: { $0.hasActivationsGroup = false },
             message: "/activations is missing"),
        Case(name: "qwen-no-inputs-group", fixture: qwen, edit: { $0.hasInputsGroup = false }, message: "/inputs is missing"),
        Case(name: "qwen-extra-input", fixture: qwen, edit: { trace in
            trace.set(input: "token_type_ids", .ids(trace.ids("input_ids")!.map { $0.map { _ in 0 } }))
        }, message: "/inputs/token_type_ids is not an input of component decoder"),
        Case(name: "dino-ids-instead", fixture: dino, edit: { $0.set(input: "input_ids", .ids([[0, 0, 0], [0, 0, 0]])) },
             message: "/inputs/input_ids is not an input of component image_encoder"),
        Case(name: "qwen-dtype-f16", fixture: qwen, edit: { $0.set("dtype", .string("float16")) },
             message: "root attribute dtype is \"float16\", not \"float32\""),
        Case(name: "bert-attn-sdpa", fixture: bert, edit: { $0.set("attn_implementation", .string("sdpa")) },
             message: "root attribute attn_implementation is \"sdpa\", not \"eager\""),
        Case(name: "qwen-no-source", fixture: qwen, edit: { $0.set("source", nil) }, message: "root attribute source is missing"),
        Case(name: "qwen-torch-version-int", fixture: qwen, edit: { $0.set("torch_version", .int(2)) },
             message: "root attribute torch_version is not a string"),
        Case(name: "qwen-activation-nan", fixture: qwen, edit: { trace in
            let layer = trace.activation("layers.0")
            trace.replace("layers.0", with: Tensor(shape: layer.shape, float32: Array(repeating: .nan, count: layer.elementCount)))
        }, message: "/activations/layers.0 holds 1152 NaN or infinite values"),
        Case(name: "bert-activation-inf-at-padding", fixture: bert, edit: { trace in
            let mask = trace.ids("attention_mask")!.joined().map { $0 == 1 }
            let layer = trace.activation("layers.0"), width = layer.shape[2]
            let values = layer.float32Values().enumerated().map { mask[$0 / width] ? $1 : Float.infinity }
            trace.replace("layers.0", with: Tensor(shape: layer.shape, float32: values))
        }, message: "/activations/layers.0 holds"),
        Case(name: "dino-pixels-nan", fixture: dino, edit: { trace in
            guard case .floats(let pixels)? = trace.inputs.first?.value else { return }
            var values = pixels.float32Values()
            values[5] = .nan
            trace.set(input: "pixel_values", .floats(Tensor(shape: pixels.shape, float32: values)))
        }, message: "/inputs/pixel_values holds 1 NaN or infinite values"),
        Case(name: "qwen-order-swapped", fixture: qwen, edit: { trace in
            trace.activations[1].order = 2
            trace.activations[2].order = 1
        }, message: "/activations/layers.0 comes after layers.1 in the trace's order but before it in the forward pass"),
        Case(name: "prima-class-ids-repeated", fixture: prima, edit: { trace in
            trace.set(input: "class_token_ids", .vector([406, 379, 376, 396, 403, 406]))
        }, message: "/inputs/class_token_ids holds 406 twice"),
    ]

    /// Finding: errors about a trace named no file, or the checkpoint, or the trace twice.
    static let misattributed: [Case] = [
        Case(name: "qwen-activation-wrong-shape", fixture: qwen, edit: { $0.replace("layers.0", with: Tensor(zeros: [2, 17, 32], dtype: .f32)) },
             message: "/activations/layers.0 has shape [2, 17, 32]; the decoder of "),
        Case(name: "qwen-activation-2d", fixture: qwen, edit: { $0.replace("layers.0", with: Tensor(zeros: [18, 32], dtype: .f32)) },
             message: "/activations/layers.0 has shape [18, 32]"),
        Case(name: "qwen-activation-scalar", fixture: qwen, edit: { $0.replace("layers.0", with: Tensor(zeros: [], dtype: .f32)) },
             message: "/activations/layers.0 has shape []"),
        Case(name: "qwen-activation-layers-01", fixture: qwen, edit: { $0.activations[2].name = "layers.01" },
             message: "/activations/layers.01 is not an activation of the decoder of"),
        Case(name: "prima-unknown-activation", fixture: prima, edit: { $0.activations[$0.activations.count - 1].name = "class_probz" },
             message: "/activations/class_probz is not an activation of the prima pipeline of"),
        Case(name: "qwen-ids-negative", fixture: qwen, edit: { trace in
            var ids = trace.ids("input_ids")!
            ids[1][3] = -1
            trace.set(input: "input_ids", .ids(ids))
        }, message: "/inputs/input_ids holds -1 (row 1, position 3), outside the vocabulary of 640 of the decoder of"),
        Case(name: "bert-ids-vocabulary", fixture: bert, edit: { trace in
            trace.set(input: "input_ids", .ids(trace.ids("input_ids")!.map { $0.map { _ in 1_000_000 } }))
        }, message: "/inputs/input_ids holds 1000000 (row 0, position 0), outside the vocabulary of"),
        Case(name: "qwen-ids-huge-at-padding", fixture: qwen, edit: { trace in
            let mask = trace.ids("attention_mask")!
            trace.set(input: "input_ids", .ids(zip(trace.ids("input_ids")!, mask).map { row, m in zip(row, m).map { $1 == 0 ? 1 << 62 : $0 } }))
        }, message: "/inputs/input_ids holds 4611686018427387904 (row 0, position 12), outside the vocabulary of 640"),
        Case(name: "modernbert-longer-than-its-positions", fixture: "modernbert-mlm-f32", edit: { trace in
            let rows = trace.ids("input_ids")!.count
            trace.set(input: "input_ids", .ids(Array(repeating: Array(repeating: 5, count: 129), count: rows)))
            trace.set(input: "attention_mask", .ids(Array(repeating: Array(repeating: 1, count: 129), count: rows)))
        }, message: "/inputs/input_ids has 129 positions, more than the 128 (max_position_embeddings) of the text_encoder of"),
        Case(name: "dino-pixels-33", fixture: dino, edit: { $0.set(input: "pixel_values", .floats(Tensor(zeros: [2, 3, 33, 33], dtype: .f32))) },
             message: "/inputs/pixel_values is 33 × 33 pixels, not a whole number of the 8 × 8 patches of the image_encoder of"),
        Case(name: "prima-prompt-out-of-vocabulary", fixture: prima, edit: { $0.set(input: "prompt_ids", .ids([Array(repeating: 1_000_000_000, count: 14)])) },
             message: "/inputs/prompt_ids holds 1000000000 (row 0, position 0), outside the vocabulary of 640 of the decoder of"),
        Case(name: "prima-answer-negative", fixture: prima, edit: { $0.set(input: "answer_prefix_ids", .ids([[-7, -7]])) },
             message: "/inputs/answer_prefix_ids holds -7"),
        Case(name: "prima-text-out-of-vocabulary", fixture: prima, edit: { trace in
            trace.set(input: "input_ids", .ids(trace.ids("input_ids")!.map { $0.map { _ in 1_000_000_000 } }))
        }, message: "/inputs/input_ids holds 1000000000 (row 0, position 0), outside the vocabulary of 512 of the text_encoder of"),
        Case(name: "prima-prompt-too-long", fixture: prima, edit: { $0.set(input: "prompt_ids", .ids([Array(repeating: 1, count: 60_000)])) },
             message: "the inputs make a decoder sequence of 60043 positions"),
        Case(name: "prima-class-ids-differ", fixture: prima, edit: { $0.set(input: "class_token_ids", .vector([406, 379, 376, 396])) },
             message: "/inputs/class_token_ids differ from the class token ids of"),
        Case(name: "prima-pixels-too-small", fixture: prima, edit: { $0.set(input: "pixel_values", .floats(Tensor(zeros: [1, 3, 8, 8], dtype: .f32))) },
             message: "/activations/image_encoder.embeddings has shape [1, 21, 32]; the prima pipeline of"),
    ]

    /// The checkpoint a case runs on, imported (or assembled) fresh.
    static func checkpoint(for item: Case) throws -> String {
        if item.fixture == prima { return try PrimaTraceTests.assemble(PrimaTraceTests.variants[0]) }
        return try RuntimeTestSupport.importFixture(item.model ?? item.fixture)
    }

    /// Exit 2 and one stderr line `prima-verify: error: TRACE: …` that names the trace once and says `message`.
    static func expectRefused(_ result: TestProcess.Result, trace: String, message: String, _ context: String,
                              sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(result.status == 2, "\(context): status \(result.status) \(result.stdout) \(result.stderr)", sourceLocation: sourceLocation)
        #expect(result.stderr.hasPrefix("prima-verify: error: \(trace): "), "\(context): \(result.stderr)", sourceLocation: sourceLocation)
        #expect(result.stderr.components(separatedBy: trace).count == 2, "\(context): the trace is not named once: \(result.stderr)",
                sourceLocation: sourceLocation)
        #expect(result.stderr.split(separator: "\n").count == 1, "\(context): \(result.stderr)", sourceLocation: sourceLocation)
        #expect(result.stderr.contains(message), "\(context): \(result.stderr) lacks \(message)", sourceLocation: sourceLocation)
        #expect(!result.stdout.contains("PASS") && !result.stdout.contains("FAIL"), "\(context): compared: \(result.stdout)",
                sourceLocation: sourceLocation)
    }

    /// Runs the case through `--trace` and, for a component trace, `--against` (the checkpoint against itself, on
    /// the trace's inputs): both refuse it with the same line.
    func refuse(_ item: Case) throws {
        var crafted = try CraftedTrace(fixture: item.fixture)
        item.edit(&crafted)
        let trace = try crafted.write(item.name)
        let checkpoint = try Self.checkpoint(for: item)
        let traced = try RuntimeTestSupport.run(Self.verify, [checkpoint, "--trace", trace])
        Self.expectRefused(traced, trace: trace, message: item.message, "--trace")
        guard item.fixture != Self.prima else { return }
        let against = try RuntimeTestSupport.run(Self.verify, [checkpoint, "--against", checkpoint, "--trace", trace])
        Self.expectRefused(against, trace: trace, message: item.message, "--against")
        #expect(against.stderr == traced.stderr)
    }

    @Test(arguments: missingActivations)
    func aTraceMissingARequiredActivationIsRefused(_ item: Case) throws { try refuse(item) }

    @Test(arguments: brokenRules)
    func aTraceBreakingTheFormatIsRefused(_ item: Case) throws { try refuse(item) }

    @Test(arguments: misattributed)
    func errorsAboutATraceNameTheTrace(_ item: Case) throws { try refuse(item) }

    /// An unknown activation name gets the closest names and the count, not the runtime's whole list.
    @Test func anUnknownActivationNamesTheClosestOnes() throws {
        var crafted = try CraftedTrace(fixture: Self.prima)
        crafted.activations[1].name = "image_encoder.layers.00"
        let trace = try crafted.write("prima-layers-00")
        let result = try RuntimeTestSupport.run(Self.verify, [try PrimaTraceTests.assemble(PrimaTraceTests.variants[0]), "--trace", trace])
        Self.expectRefused(result, trace: trace, message: "(closest: image_encoder.layers.0; 23 in all)", "--trace")
        #expect(!result.stderr.contains("class_probs"), "\(result.stderr)")
    }

    /// Activations that legitimately differ: a decoder trace without logits, a BERT trace without the pooler its
    /// checkpoint has, and one with it, all pass.
    @Test func optionalActivationsMayBeLeftOut() throws {
        for (fixture, optional) in [(Self.qwen, "logits"), ("bert-pooler-f32", "pooler")] {
            var crafted = try CraftedTrace(fixture: fixture)
            #expect(crafted.activations.contains { $0.name == optional })
            let checkpoint = try RuntimeTestSupport.importFixture(fixture)
            let whole = try RuntimeTestSupport.run(Self.verify, [checkpoint, "--trace", try crafted.write(fixture)])
            #expect(whole.status == 0 && whole.stdout.contains("PASS"), "\(fixture): \(whole.stdout) \(whole.stderr)")
            crafted.keepActivations { $0 != optional }
            let result = try RuntimeTestSupport.run(Self.verify, [checkpoint, "--trace", try crafted.write("\(fixture)-no-\(optional)"), "--json"])
            #expect(result.status == 0, "\(fixture): \(result.stdout) \(result.stderr)")
            let names = try JSON.parse(result.stdout).object?["activations"]?.array?.compactMap { $0.object?["name"]?.string }
            #expect(names == crafted.activations.map(\.name))
        }
    }

    /// §10.2 lets the prompt and the answer prefix be empty: such a trace of inputs only runs (with --repeat), and
    /// the runtime's dump of it passes against the same checkpoint.
    @Test func aPrimaTraceWithAnEmptyPromptRuns() throws {
        var crafted = try CraftedTrace(fixture: Self.prima)
        crafted.set(input: "prompt_ids", .ids([[]]))
        crafted.set(input: "answer_prefix_ids", .ids([[]]))
        crafted.keepActivations { _ in false }
        let trace = try crafted.write("prima-empty-prompt")
        let checkpoint = try PrimaTraceTests.assemble(PrimaTraceTests.variants[0])
        let dump = RuntimeTestSupport.temporaryDirectory() + "/dump.h5"
        let timed = try RuntimeTestSupport.run(Self.verify, [checkpoint, "--trace", trace, "--repeat", "1", "--dump", dump])
        #expect(timed.status == 0 && timed.stdout.contains("TIMED"), "\(timed.stdout) \(timed.stderr)")
        let again = try RuntimeTestSupport.run(Self.verify, [checkpoint, "--trace", dump])
        #expect(again.status == 0 && again.stdout.contains("PASS"), "\(again.stdout) \(again.stderr)")
        guard case .prima(let inputs, _)? = try? Trace(path: dump).subject else { Issue.record("not a prima dump"); return }
        #expect(inputs.promptIds.isEmpty && inputs.answerPrefixIds.isEmpty)
    }

    /// `--against` takes one component's trace, of the component compared: anything else is a usage error naming
    /// the trace (exit 2), as is an inputs-only trace's defect; an inputs-only trace is enough for its inputs.
    @Test func againstTakesTheTraceOfTheComparedComponent() throws {
        let prima = try PrimaTraceTests.assemble(PrimaTraceTests.variants[0])
        let primaTrace = RuntimeTestSupport.trace(Self.prima)
        let refused = try RuntimeTestSupport.run(Self.verify, [prima, "--against", prima, "--trace", primaTrace, "--component", "decoder"])
        Self.expectRefused(refused, trace: primaTrace, message: "a trace of component prima does not hold the inputs of component decoder", "prima trace")
        let decoderTrace = RuntimeTestSupport.trace(Self.qwen)
        let other = try RuntimeTestSupport.run(Self.verify, [prima, "--against", prima, "--trace", decoderTrace, "--component", "image_encoder"])
        Self.expectRefused(other, trace: decoderTrace, message: "a trace of component decoder does not hold the inputs of component image_encoder", "role")

        var crafted = try CraftedTrace(fixture: Self.qwen)
        crafted.keepActivations { _ in false }
        let inputsOnly = try crafted.write("qwen-inputs-only")
        let checkpoint = try RuntimeTestSupport.importFixture(Self.qwen)
        let against = try RuntimeTestSupport.run(Self.verify, [checkpoint, "--against", checkpoint, "--trace", inputsOnly])
        #expect(against.status == 0 && against.stdout.contains("PASS"), "\(against.stdout) \(against.stderr)")
    }
}
