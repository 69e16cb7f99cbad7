import Foundation
import PrimaCheckpoint
import PrimaJSON
import PrimaKernels
import PrimaTensor
import PrimaVerify
import Testing

/// `prima-verify` end to end: verdicts, exit codes, JSON, --dump, bad input, and the OpenBLAS kernel choice.
@Suite struct VerifyToolTests {
    let verify = RuntimeTestSupport.binary("prima-verify")

    /// `--against` on two models of different widths says what it compares, in one line.
    @Test func againstModelsOfDifferentShapesIsExplained() throws {
        let a = try RuntimeTestSupport.importFixture("qwen3-tied-f32"), b = try RuntimeTestSupport.importFixture("qwen3-prima-f32")
        let result = try RuntimeTestSupport.run(RuntimeTestSupport.binary("prima-verify"), [a, "--against", b])
        #expect(result.status == 2 && result.stderr.contains("embeddings is [48, 32] but [48, 48]")
                && result.stderr.contains("not models of different shapes") && result.stderr.split(separator: "\n").count == 1, "\(result.stderr)")
    }

    @Test func integrityPassesOnAnImportAndFailsOnACorruptTensor() throws {
        let checkpoint = try RuntimeTestSupport.importFixture("qwen3-tied-f32")
        let good = try RuntimeTestSupport.run(verify, [checkpoint])
        #expect(good.status == 0, "\(good.stdout) \(good.stderr)")
        #expect(good.stdout.contains("decoder: qwen3, 24 tensors"))
        // Flip one stored value in place: the CRC-32 check must catch it.
        do {
            let file = try HDF5File.open(path: checkpoint, writable: true)
            let dataset = try file.root().group("decoder").group("tensors").dataset("final_norm.weight")
            var value: Float = 12345
            try withUnsafeBytes(of: &value) { try dataset.writeRows(start: 0, count: 1, from: $0) }
        }
        let bad = try RuntimeTestSupport.run(verify, [checkpoint, "--json"])
        #expect(bad.status == 1)
        let json = try #require(try JSON.parse(bad.stdout).object)
        #expect(json["pass"]?.bool == false)
        #expect(bad.stdout.contains("final_norm.weight: CRC-32"))
    }

    @Test func traceComparisonJSONAndDump() throws {
        let checkpoint = try RuntimeTestSupport.importFixture("qwen3-untied-f32")
        let dump = RuntimeTestSupport.temporaryDirectory() + "/ours.h5"
        let result = try RuntimeTestSupport.run(verify, [checkpoint, "--trace", RuntimeTestSupport.trace("qwen3-untied-f32"),
                                                         "--json", "--repeat", "3", "--dump", dump])
        #expect(result.status == 0, "\(result.stderr)")
        let json = try #require(try JSON.parse(result.stdout).object)
        #expect(json["pass"]?.bool == true)
        #expect((json["forward_seconds"]?.double ?? -1) > 0 && (json["load_seconds"]?.double ?? -1) >= 0)
        #expect(json["forward_runs"]?.array?.count == 3)
        let names = json["activations"]?.array?.compactMap { $0.object?["name"]?.string }
        #expect(names == ["embeddings", "layers.0", "layers.1", "final_norm", "logits"])
        for item in json["activations"]?.array ?? [] {
            let object = try #require(item.object)
            for key in ["max_abs", "max_rel", "cosine", "nmse", "pass"] { #expect(object[key] != nil, "missing \(key)") }
        }
        // Our dump is itself a valid trace that passes against the same checkpoint.
        let again = try RuntimeTestSupport.run(verify, [checkpoint, "--trace", dump])
        #expect(again.status == 0, "\(again.stdout)")
        let ours = try Trace(path: dump)
        #expect(ours.activations.first { $0.name == "layers.0" }?.tensor.shape == [2, 18, 32])
    }

    @Test func tableMarksTheFirstFailure() throws {
        let checkpoint = try RuntimeTestSupport.importFixture("qwen3-tied-f32")
        // Against another model's trace of the same inputs, embeddings differ: the first row fails.
        let result = try RuntimeTestSupport.run(verify, [checkpoint, "--trace", RuntimeTestSupport.trace("qwen3-untied-f32")])
        #expect(result.status == 1)
        #expect(result.stdout.contains("<- first failure"))
        #expect(result.stdout.contains("FAIL"))
    }

    @Test func unknownActivationIsAnErrorAndInputsOnlyTracesRun() throws {
        let checkpoint = try RuntimeTestSupport.importFixture("qwen3-tied-f32")
        let reference = try Trace(path: RuntimeTestSupport.trace("qwen3-tied-f32"))
        let directory = RuntimeTestSupport.temporaryDirectory()
        let unknown = Trace(subject: reference.subject,
                            activations: reference.activations + [("attention_probs", reference.activations[0].tensor)])
        try unknown.write(to: directory + "/unknown.h5", source: "test")
        let refused = try RuntimeTestSupport.run(verify, [checkpoint, "--trace", directory + "/unknown.h5"])
        #expect(refused.status == 2 && refused.stderr.contains("attention_probs"))

        let inputsOnly = Trace(subject: reference.subject, activations: [])
        try inputsOnly.write(to: directory + "/inputs.h5", source: "test")
        let timed = try RuntimeTestSupport.run(verify, [checkpoint, "--trace", directory + "/inputs.h5", "--json", "--repeat", "2"])
        #expect(timed.status == 0, "\(timed.stderr)")
        #expect(try JSON.parse(timed.stdout).object?["activations"]?.array?.isEmpty == true)
    }

    @Test func badInputsExitWithTwo() throws {
        let directory = RuntimeTestSupport.temporaryDirectory()
        try Data("not a trace".utf8).write(to: URL(fileURLWithPath: directory + "/bad.h5"))
        let checkpoint = try RuntimeTestSupport.importFixture("qwen3-tied-f32")
        let badTrace = try RuntimeTestSupport.run(verify, [checkpoint, "--trace", directory + "/bad.h5"])
        #expect(badTrace.status == 2 && badTrace.stderr.contains(directory + "/bad.h5"))
        let badCheckpoint = try RuntimeTestSupport.run(verify, [directory + "/bad.h5"])
        #expect(badCheckpoint.status == 2 && badCheckpoint.stderr.contains("not an HDF5 file"))
        // A decoder trace against a checkpoint without a decoder.
        let image = try RuntimeTestSupport.importFixture("bert-pooler-f32")
        let wrongRole = try RuntimeTestSupport.run(verify, [image, "--trace", RuntimeTestSupport.trace("qwen3-tied-f32")])
        #expect(wrongRole.status == 2 && wrongRole.stderr.contains("no decoder component"))
        #expect(try RuntimeTestSupport.run(verify, []).status == 2)
    }

    /// `PRIMA_FLOAT_KERNEL` runs a smaller f32 build (for measuring what a CPU without AVX-512 runs) with the same
    /// bits; a value that names no build, or one this CPU cannot run, stops every tool at start-up with exit 2.
    @Test func forcedFloatKernelBuildsGiveTheSameBits() throws {
        let checkpoint = try RuntimeTestSupport.importFixture("dinov3-mlp-reg4-f32")
        let trace = RuntimeTestSupport.trace("dinov3-mlp-reg4-f32")
        var dumps: [FloatISA: Data] = [:]
        for isa in FloatISA.available {
            var environment = ProcessInfo.processInfo.environment
            environment["PRIMA_FLOAT_KERNEL"] = isa.rawValue
            let info = try RuntimeTestSupport.run(verify, ["--system-info"], environment: environment)
            #expect(info.stdout.contains("f32 kernels: \(isa.rawValue)"), "\(info.stdout)")
            let dump = RuntimeTestSupport.temporaryDirectory() + "/\(isa.rawValue).h5"
            let result = try RuntimeTestSupport.run(verify, [checkpoint, "--trace", trace, "--dump", dump], environment: environment)
            #expect(result.status == 0, "\(result.stderr)")
            let ours = try Trace(path: dump)
            dumps[isa] = ours.activations.reduce(into: Data()) { bytes, activation in activation.tensor.withUnsafeBytes { bytes.append(contentsOf: $0) } }
        }
        #expect(dumps.count == FloatISA.available.count && Set(dumps.values).count == 1)
        var environment = ProcessInfo.processInfo.environment
        for value in ["avx1024", "AVX2"] + FloatISA.allCases.filter { !FloatISA.available.contains($0) }.map(\.rawValue) {
            environment["PRIMA_FLOAT_KERNEL"] = value
            let refused = try RuntimeTestSupport.run(verify, ["--system-info"], environment: environment)
            #expect(refused.status == 2 && refused.stdout.isEmpty, "\(value)")
            #expect(refused.stderr.hasPrefix("prima-verify: error: PRIMA_FLOAT_KERNEL=\(value)") && refused.stderr.split(separator: "\n").count == 1, "\(refused.stderr)")
        }
    }

    /// OpenBLAS gets fast kernels chosen from the CPU when nothing is preset, and a preset choice is kept.
    @Test func openBLASCoreTypeSelection() throws {
        var environment = ProcessInfo.processInfo.environment
        environment["OPENBLAS_CORETYPE"] = nil
        environment["OPENBLAS_L2_SIZE"] = nil
        let chosen = try RuntimeTestSupport.run(verify, ["--system-info"], environment: environment)
        let expected = BLAS.coreType(forFeatures: prima_cpu_features())
        if let expected {
            #expect(chosen.stdout.contains("openblas core: \(expected)"), "\(chosen.stdout)")
            #expect(chosen.stdout.contains("chosen from the CPU's features"))
        }
        environment["OPENBLAS_CORETYPE"] = "Sandybridge"
        let preset = try RuntimeTestSupport.run(verify, ["--system-info"], environment: environment)
        #expect(preset.stdout.contains("openblas core: Sandybridge"), "\(preset.stdout)")
        #expect(preset.stdout.contains("Sandybridge (set before start, respected)"))
    }
}
