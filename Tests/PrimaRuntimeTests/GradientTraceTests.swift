import Foundation
import PrimaJSON
import PrimaTestSupport
import PrimaVerify
import Testing

/// The hand-written backward passes against PyTorch autograd (+ PEFT), layer by layer: every component gradient
/// trace of Fixtures/grad_traces (written by Fixtures/make_grad_fixtures.py), through the library and through
/// `prima-verify`. Loss within 1e-5 relative, every activation and parameter gradient within 1e-4 · max|ref| and at
/// cosine ≥ 0.99999 (Tolerances.gradients).
@Suite struct GradientTraceTests {
    static let traces = RuntimeTestSupport.repositoryRoot + "/Fixtures/grad_traces"

    /// trace name, base model fixture, LoRA adapter fixture (imported as `default`) or nil, role; a base ending in
    /// `:SCHEME` is quantised with `prima-quantize --int8 --scheme SCHEME` before the adapter is imported.
    static let cases: [(trace: String, model: String, adapter: String?, role: String)] = [
        ("bert-mlm-f32-dot-full", "bert-mlm-f32", nil, "text_encoder"),
        ("bert-rslora-dot-lora", "bert-mlm-f32", "bert-rslora", "text_encoder"),
        ("bert-rslora-mlm-lora", "bert-mlm-f32", "bert-rslora", "text_encoder"),
        ("dinov3-mlp-reg4-f32-dot-full", "dinov3-mlp-reg4-f32", nil, "image_encoder"),
        ("dinov3-gated-noreg-f32-dot-full", "dinov3-gated-noreg-f32", nil, "image_encoder"),
        ("dinov3-attention-mlp-dot-lora", "dinov3-mlp-reg4-f32", "dinov3-attention-mlp", "image_encoder"),
        ("dinov3-attention-mlp-int8-block32-dot-lora", "dinov3-mlp-reg4-f32:block32", "dinov3-attention-mlp", "image_encoder"),
        ("modernbert-mlm-f32-dot-full", "modernbert-mlm-f32", nil, "text_encoder"),
        ("modernbert-fused-dot-lora", "modernbert-mlm-f32", "modernbert-fused", "text_encoder"),
        ("modernbert-fused-mlm-lora", "modernbert-mlm-f32", "modernbert-fused", "text_encoder"),
        ("qwen3-tied-f32-dot-full", "qwen3-tied-f32", nil, "decoder"),
        ("qwen3-untied-f32-dot-full", "qwen3-untied-f32", nil, "decoder"),
        ("qwen3-all-projections-dot-lora", "qwen3-untied-f32", "qwen3-all-projections", "decoder"),
        ("qwen3-all-projections-causal_lm-lora", "qwen3-untied-f32", "qwen3-all-projections", "decoder"),
        ("qwen3-tied-f32-causal_lm-full", "qwen3-tied-f32", nil, "decoder"),
        ("qwen3-all-projections-int8-causal_lm-lora", "qwen3-untied-f32:per-channel", "qwen3-all-projections", "decoder"),
    ]

    static func checkpoint(model: String, adapter: String?, role: String) throws -> String {
        let parts = model.split(separator: ":").map(String.init)
        var base = try RuntimeTestSupport.importFixture(parts[0])
        if parts.count == 2 {
            let quantized = RuntimeTestSupport.temporaryDirectory() + "/int8.h5"
            let result = try RuntimeTestSupport.run(RuntimeTestSupport.binary("prima-quantize"), ["--int8", base, "--scheme", parts[1], "-o", quantized])
            try #require(result.status == 0, "\(result.stderr)")
            base = quantized
        }
        guard let adapter else { return base }
        return try importAdapter(adapter, role: role, into: base)
    }

    /// A copy of the checkpoint at `base` with the PEFT adapter Fixtures/lora/`adapter` imported as `default` into
    /// `role` (`prima-convert lora-import`).
    static func importAdapter(_ adapter: String, role: String, into base: String) throws -> String {
        let adapted = RuntimeTestSupport.temporaryDirectory() + "/adapted.h5"
        let result = try RuntimeTestSupport.run(RuntimeTestSupport.binary("prima-convert"),
                                                ["lora-import", base, "--role", role, "--adapter",
                                                 RuntimeTestSupport.repositoryRoot + "/Fixtures/lora/" + adapter, "-o", adapted])
        try #require(result.status == 0, "\(result.stderr)")
        return adapted
    }

    @Test(arguments: cases.map { [$0.trace, $0.model, $0.adapter ?? "", $0.role] })
    func gradientsMatchPyTorch(_ item: [String]) throws {
        let trace = try GradientTrace(path: Self.traces + "/\(item[0]).h5")
        let checkpoint = try Self.checkpoint(model: item[1], adapter: item[2].isEmpty ? nil : item[2], role: item[3])
        let report = try GradientVerifier.run(checkpoint: checkpoint, trace: trace)
        #expect(report.lossPasses, "loss \(report.loss) against \(report.referenceLoss)")
        for comparison in report.activationGradients + report.gradients {
            #expect(comparison.pass, "\(item[0]): \(comparison.name): \(comparison.failure ?? "") (max_rel \(comparison.maxRel), cosine \(comparison.cosine))")
        }
        #expect(!report.gradients.isEmpty && report.gradients.count == trace.gradients.count)
        // The same through the binary.
        let tool = try RuntimeTestSupport.run(RuntimeTestSupport.binary("prima-verify"), [checkpoint, "--trace", Self.traces + "/\(item[0]).h5", "--json"])
        #expect(tool.status == 0 && (try? JSON.parse(tool.stdout))?.object?["pass"]?.bool == true, "\(tool.stderr)")
        if ProcessInfo.processInfo.environment["PRIMA_PRINT_GRADIENT_ERRORS"] != nil {
            let worst = (report.activationGradients + report.gradients).max { $0.maxRel < $1.maxRel }
            print("\(item[0]): loss rel \(report.lossRelativeError), worst \(worst?.name ?? "-") max_rel \(worst?.maxRel ?? 0)")
        }
    }
}

/// Hostile gradient traces (Fixtures/hostile/make_grad_cases.py: valid traces each with one defect) through
/// `prima-verify --trace`: one error line naming the object at fault, exit 2, for defects of the trace alone and
/// for those only the checkpoint shows.
@Suite struct HostileGradientTraceTests {
    @Test func everyDefectIsOneLineAndExitTwo() throws {
        let directory = RuntimeTestSupport.temporaryDirectory() + "/cases"
        let made = try RuntimeTestSupport.run("/usr/bin/python3", [RuntimeTestSupport.repositoryRoot + "/Fixtures/hostile/make_grad_cases.py", directory])
        try #require(made.status == 0, "\(made.stderr)")
        let cases = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: directory + "/cases.json"))) as? [[String: String]])
        #expect(cases.count >= 30)
        var checkpoints: [String: String] = [:]
        func checkpoint(for source: String) throws -> String {
            if let path = checkpoints[source] { return path }
            let path: String
            switch source {
            case let name where name.hasPrefix("qwen3-tied-f32"): path = try GradientTraceTests.checkpoint(model: "qwen3-tied-f32", adapter: nil, role: "decoder")
            case let name where name.hasPrefix("bert-rslora"): path = try GradientTraceTests.checkpoint(model: "bert-mlm-f32", adapter: "bert-rslora", role: "text_encoder")
            case let name where name.hasPrefix("prima-tiny-bert"):
                path = try PipelineGradientTests.checkpoint(variant: 0, adapter: "dinov3-attention-mlp", role: "image_encoder")
            case let name where name.hasPrefix("prima-tiny-modernbert"):
                path = try PipelineGradientTests.checkpoint(variant: 1, adapter: "modernbert-fused", role: "text_encoder")
            default: path = try GradientTraceTests.checkpoint(model: "bert-mlm-f32", adapter: nil, role: "text_encoder")
            }
            checkpoints[source] = path
            return path
        }
        for item in cases {
            let file = directory + "/" + item["file", default: ""]
            let result = try RuntimeTestSupport.run(RuntimeTestSupport.binary("prima-verify"), [try checkpoint(for: item["source", default: ""]), "--trace", file])
            let lines = result.stderr.split(separator: "\n").filter { !$0.isEmpty }
            #expect(result.status == 2 && lines.count == 1 && result.stderr.contains(item["mentions", default: "?"]),
                    "\(item["file", default: ""]) (\(item["defect", default: ""])): status \(result.status): \(result.stderr)\(result.stdout.suffix(300))")
        }
    }
}

/// The PRIMA objectives against PyTorch (Formats/prima-trace.md §11.10, §11.11): stage 3's class cross-entropy
/// through the decoder, the fusion heads and both encoders on the pipeline of the `prima-tiny-bert` trace, and the
/// batch objectives of stages 2b and 2 (image classifier, the four alignment losses in both L_loc modes) with LoRA on
/// an encoder, through the library and the binary.
@Suite struct PipelineGradientTests {
    /// The pipeline checkpoint of `variant` (PrimaTraceTests.variants) with `adapter` (Fixtures/lora) imported as
    /// `default` into `role`.
    static func checkpoint(variant: Int, adapter: String, role: String) throws -> String {
        try GradientTraceTests.importAdapter(adapter, role: role, into: try PrimaTraceTests.assemble(PrimaTraceTests.variants[variant]))
    }

    /// trace, pipeline variant, adapter, its role.
    static let batchCases: [[String]] = [
        ["prima-tiny-bert-image_ce", "0", "dinov3-attention-mlp", "image_encoder"],
        ["prima-tiny-bert-alignment", "0", "dinov3-attention-mlp", "image_encoder"],
        ["prima-tiny-modernbert-alignment-direct", "1", "modernbert-fused", "text_encoder"],
    ]

    @Test(arguments: batchCases)
    func batchObjectivesMatchPyTorch(_ item: [String]) throws {
        let path = GradientTraceTests.traces + "/\(item[0]).h5"
        let trace = try GradientTrace(path: path)
        let checkpoint = try Self.checkpoint(variant: Int(item[1])!, adapter: item[2], role: item[3])
        let report = try GradientVerifier.run(checkpoint: checkpoint, trace: trace)
        #expect(report.lossPasses, "loss \(report.loss) against \(report.referenceLoss)")
        #expect(report.terms.count == (trace.objective == .alignment ? 4 : 0))
        for term in report.terms { #expect(term.pass, "\(item[0]): term \(term.name) \(term.ours) against \(term.reference)") }
        for comparison in report.activationGradients + report.gradients {
            #expect(comparison.pass, "\(item[0]): \(comparison.name): \(comparison.failure ?? "") (max_rel \(comparison.maxRel), cosine \(comparison.cosine))")
        }
        #expect(report.gradients.count == trace.gradients.count && report.activationGradients.count == trace.activationGradients.count)
        let tool = try RuntimeTestSupport.run(RuntimeTestSupport.binary("prima-verify"), [checkpoint, "--trace", path, "--json"])
        let json = try? JSON.parse(tool.stdout).object
        #expect(tool.status == 0 && json?["pass"]?.bool == true && json?["objective"]?.string == trace.objective.rawValue, "\(tool.stderr)")
        #expect((json?["loss_terms"]?.array?.count ?? 0) == report.terms.count)
        if ProcessInfo.processInfo.environment["PRIMA_PRINT_GRADIENT_ERRORS"] != nil {
            let worst = (report.activationGradients + report.gradients).max { $0.maxRel < $1.maxRel }
            print("\(item[0]): loss rel \(report.lossRelativeError), worst \(worst?.name ?? "-") max_rel \(worst?.maxRel ?? 0)")
        }
    }

    @Test func classCrossEntropyMatchesPyTorch() throws {
        let checkpoint = try PrimaTraceTests.assemble(PrimaTraceTests.variants[0])
        let trace = GradientTraceTests.traces + "/prima-tiny-bert-class_ce.h5"
        let result = try RuntimeTestSupport.run(RuntimeTestSupport.binary("prima-verify"), [checkpoint, "--trace", trace, "--json"])
        #expect(result.status == 0, "\(result.stderr)\(result.stdout.suffix(2000))")
        let report = try JSON.parse(result.stdout).object
        #expect(report?["pass"]?.bool == true && report?["objective"]?.string == "class_ce")
        #expect((report?["gradients"]?.array?.count ?? 0) == 42 && (report?["activations"]?.array?.count ?? 0) == 23)
    }

    /// The decoder without metadata (`decoder_inputs` "image"): the same checkpoint with the attribute set runs the
    /// image-only pipeline, which the trace of that variant matches; the full trace does not match it.
    @Test func classCrossEntropyWithoutMetadataMatchesPyTorch() throws {
        let full = try PrimaTraceTests.assemble(PrimaTraceTests.variants[0])
        let checkpoint = RuntimeTestSupport.temporaryDirectory() + "/image-only.h5"
        let craft = try RuntimeTestSupport.run("/usr/bin/python3", [HostileConfigTests.script, full, checkpoint, "attr", "prima", "decoder_inputs", "\"image\""])
        try #require(craft.status == 0, "\(craft.stderr)")
        let trace = GradientTraceTests.traces + "/prima-tiny-bert-image-class_ce.h5"
        let result = try RuntimeTestSupport.run(RuntimeTestSupport.binary("prima-verify"), [checkpoint, "--trace", trace, "--json"])
        #expect(result.status == 0, "\(result.stderr)\(result.stdout.suffix(2000))")
        let report = try JSON.parse(result.stdout).object
        #expect(report?["pass"]?.bool == true && report?["objective"]?.string == "class_ce")
        // 42 of the full model less the text projectors' 8; no text activation.
        let activations = report?["activations"]?.array?.compactMap { $0.object?["name"]?.string } ?? []
        #expect((report?["gradients"]?.array?.count ?? 0) == 34 && !activations.isEmpty, "\(activations)")
        #expect(!activations.contains { $0.hasPrefix("text_encoder.") || $0.hasPrefix("fusion.text_") || $0.hasPrefix("alignment.text_") })
        // A trace of the other decoder input is refused before anything is compared, naming both values: the
        // image-only trace on the full checkpoint, the full gradient trace and the full forward trace on the image-only one.
        for (model, other, says) in [(full, trace, "made with decoder_inputs \"image\", but /prima of \(full) has \"image+metadata\""),
                                     (checkpoint, GradientTraceTests.traces + "/prima-tiny-bert-class_ce.h5", "has \"image\""),
                                     (checkpoint, RuntimeTestSupport.repositoryRoot + "/Fixtures/traces/prima-tiny-bert.h5", "has \"image\"")] {
            let mismatched = try RuntimeTestSupport.run(RuntimeTestSupport.binary("prima-verify"), [model, "--trace", other, "--json"])
            #expect(mismatched.status == 2 && mismatched.stdout.isEmpty, "\(mismatched.stdout.suffix(2000))")
            #expect(mismatched.stderr.contains(says) && mismatched.stderr.contains("the trace is of the other decoder input"), "\(mismatched.stderr)")
            #expect(mismatched.stderr.filter { $0 == "\n" }.count == 1, "\(mismatched.stderr)")
        }
    }
}
