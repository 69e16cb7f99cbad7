import Foundation
import PrimaCheckpoint
import PrimaJSON
import PrimaQuantize
import PrimaSafetensors
import PrimaTensor
import PrimaTestSupport
import Testing

/// The `prima-quantize` binary on the bundled fixtures (imported with prima-convert first), and
/// `prima-convert export --dequantize` of its output.
@Suite struct QuantizeToolTests {
    /// Default rules on every fixture: Linear weights quantised bit-exactly, everything else copied exactly.
    @Test(arguments: Support.fixtureNames)
    func quantisesEveryFixture(fixture: String) throws {
        let work = Support.temporaryDirectory()
        let input = try Support.imported(fixture, in: work)
        let output = work + "/q.h5"
        let result = try Support.quantize("--int8", input, "-o", output)
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stderr.isEmpty)
        let quantized = try Support.expectFaithfulQuantization(input: input, output: output, scheme: .perChannel)

        // Defaults: exactly the rank-2 Linear weights of the layers; embeddings, heads and norms stay float.
        let checkpoint = try Checkpoint(path: input)
        let linearName = try Regex(#"^layers\.[0-9]+\.(attn|mlp)\.(q|k|v|o|qkv|up|gate|wi|down)\.weight$"#)
        for role in checkpoint.roles {
            let linear = try checkpoint.component(role).tensorRecords().filter {
                $0.aliasOf == nil && $0.shape.count == 2 && $0.name.hasPrefix("layers.")
            }.map(\.name)
            #expect(quantized[role.rawValue] == linear)
            #expect(linear.allSatisfy { $0.contains(linearName) })
            #expect(!linear.isEmpty)
        }
        // One line per candidate: quantised ones with their SQNR, kept ones with the reason.
        #expect(result.stdout.contains(try Regex(#"/layers\.0\.attn\.[a-z]+\.weight  \[[0-9, ]+\]  (f32|f16|bf16) -> i8  SQNR [0-9.]+ dB"#)))
        if fixture.hasPrefix("qwen3") || fixture.hasPrefix("bert") || fixture.hasPrefix("modernbert") {
            #expect(result.stdout.contains("/embed.tokens  ") && result.stdout.contains("kept float (embeddings)"))
        }
        // Sizes shrink (tiny fixtures are dominated by embeddings, norms and HDF5 headers: not representative).
        let sizes = try #require(result.stdout.split(separator: "\n").first { $0.hasPrefix("file: ") })
        let before = try FileManager.default.attributesOfItem(atPath: input)[.size] as! Int
        let after = try FileManager.default.attributesOfItem(atPath: output)[.size] as! Int
        #expect(after < before, "\(sizes)")
        print("\(fixture): \(sizes)")

        // The spec-only Python reader opens it and verifies every checksum, when h5py is installed.
        if let python = Support.python(with: ["h5py", "numpy"]) {
            let check = try TestProcessRun.python(python, [Support.repositoryRoot + "/Formats/python/prima_h5.py", output, "--verify"])
            #expect(check.status == 0, "\(check.stdout) \(check.stderr)")
        }
    }

    @Test func block32SchemeAndKeepFloat() throws {
        let work = Support.temporaryDirectory()
        let input = try Support.imported("qwen3-untied-f32", in: work)
        let output = work + "/q.h5"
        let result = try Support.quantize("--int8", input, "-o", output, "--scheme", "block32",
                                          "--keep-float", #"^layers\.0\."#, "--keep-float", #"mlp\.down"#)
        #expect(result.status == 0, "\(result.stderr)")
        let quantized = try Support.expectFaithfulQuantization(input: input, output: output, scheme: .block32)
        #expect(quantized["decoder"]?.count == 6)  // layer 1's q, k, v, o, gate, up
        #expect(quantized["decoder"]?.allSatisfy { $0.hasPrefix("layers.1.") && !$0.contains("mlp.down") } == true)
        #expect(result.stdout.contains(#"kept float (--keep-float ^layers\.0\.)"#))
        let root = try HDF5File.open(path: output).root()
        let record = try #require(try JSON.parse(try root.stringAttribute("quantization")).object)
        #expect(record["keep_float"]?.array?.suffix(2).compactMap(\.string) == [#"^layers\.0\."#, #"mlp\.down"#])
        let scales = try Checkpoint(path: output).component(.decoder).dataset(forTensor: "layers.1.mlp.gate.weight.scales")
        #expect(scales.shape == [64, 1])  // [I, ceil(C/32)] with C = 32
        let inspected = try Support.convert("inspect", output)
        #expect(inspected.status == 0)
        #expect(inspected.stdout.contains(try Regex(#"layers\.1\.mlp\.gate\.weight +i8 +\[64, 32\]  int8-block32 from f32, SQNR [0-9.]+ dB"#)))
    }

    @Test func embeddingsAndHeadsOptIn() throws {
        let work = Support.temporaryDirectory()
        // Tied: --quantize-embeddings alone keeps embed.tokens float, because lm_head.weight (a head) is its alias.
        let tied = try Support.imported("qwen3-tied-f32", in: work)
        let embeddingsOnly = try Support.quantize("--int8", tied, "-o", work + "/e.h5", "--quantize-embeddings")
        #expect(embeddingsOnly.status == 0, "\(embeddingsOnly.stderr)")
        #expect(embeddingsOnly.stdout.contains("embed.tokens  [640, 32]  f32 kept float (tied to lm_head.weight (output heads))"))
        let both = try Support.quantize("--int8", tied, "-o", work + "/b.h5", "--quantize-embeddings", "--quantize-heads")
        #expect(both.status == 0, "\(both.stderr)")
        let quantizedBoth = try Support.expectFaithfulQuantization(input: tied, output: work + "/b.h5", scheme: .perChannel)
        #expect(quantizedBoth["decoder"]?.first == "embed.tokens")
        let lmHead = try Checkpoint(path: work + "/b.h5").component(.decoder).tensorRecords().first { $0.name == "lm_head.weight" }
        #expect(lmHead?.aliasOf == "embed.tokens" && lmHead?.dtype == .i8)

        // Untied: each flag acts on its own tensor.
        let untied = try Support.imported("qwen3-untied-f32", in: work)
        #expect(try Support.quantize("--int8", untied, "-o", work + "/u1.h5", "--quantize-embeddings").status == 0)
        let u1 = try Support.expectFaithfulQuantization(input: untied, output: work + "/u1.h5", scheme: .perChannel)
        #expect(u1["decoder"]?.contains("embed.tokens") == true && u1["decoder"]?.contains("lm_head.weight") == false)
        #expect(try Support.quantize("--int8", untied, "-o", work + "/u2.h5", "--quantize-heads").status == 0)
        let u2 = try Support.expectFaithfulQuantization(input: untied, output: work + "/u2.h5", scheme: .perChannel)
        #expect(u2["decoder"]?.contains("embed.tokens") == false && u2["decoder"]?.contains("lm_head.weight") == true)

        // BERT: the pooler is a head.
        let bert = try Support.imported("bert-pooler-f32", in: work)
        #expect(try Support.quantize("--int8", bert, "-o", work + "/p.h5", "--quantize-heads").status == 0)
        let p = try Support.expectFaithfulQuantization(input: bert, output: work + "/p.h5", scheme: .perChannel)
        #expect(p["text_encoder"]?.contains("pooler.dense.weight") == true)
    }

    /// LoRA adapters and the /prima heads group are copied byte for byte and never quantised.
    @Test func loraAndPrimaGroupsAreCopied() throws {
        let work = Support.temporaryDirectory()
        // A whole PRIMA checkpoint (quantize validates every stored part before copying any), with an adapter added.
        let input = work + "/tiny-prima.h5"
        try FileManager.default.copyItem(atPath: Support.repositoryRoot + "/Fixtures/prima/tiny-prima.h5", toPath: input)
        try addLoRA(to: input)
        let output = work + "/q.h5"
        let result = try Support.quantize("--int8", input, "-o", output, "--quantize-heads", "--quantize-embeddings")
        #expect(result.status == 0, "\(result.stderr)")
        try Support.expectFaithfulQuantization(input: input, output: output, scheme: .perChannel)
        #expect(!result.stdout.contains("alignment") && !result.stdout.contains("lora"))
        let (a, b) = (try HDF5File.open(path: input).root(), try HDF5File.open(path: output).root())
        try Support.expectIdenticalTrees(try a.group("decoder"), try b.group("decoder"), "lora")
        try Support.expectIdenticalTrees(a, b, "prima")
        if let python = Support.python(with: ["h5py", "numpy"]) {
            let check = try TestProcessRun.python(python, [Support.repositoryRoot + "/Formats/python/prima_h5.py", output, "--verify"])
            #expect(check.status == 0, "\(check.stdout) \(check.stderr)")
        }
    }

    /// --keep-float patterns have the limits of tokenizer regexes: a loop that can match empty and a pattern
    /// nested too deep are refused at start, and catastrophic backtracking on a tensor name stops at the step
    /// budget; each is one line, exit 2, within seconds, and no output is left.
    @Test(arguments: [
        ("(.*)*(.*)*(.*)*(.*)*(.*)*(.*)*(.*)*x$", "a repeated group that can match empty"),
        (String(repeating: "(", count: 5000) + "a" + String(repeating: ")", count: 5000), "deep"),
        ("(.+)+Q$", "catastrophic backtracking"),
    ])
    func pathologicalKeepFloatPatternsStopQuickly(_ pattern: String, _ message: String) throws {
        let work = Support.temporaryDirectory()
        let input = try Support.imported("qwen3-tied-f32", in: work)
        let start = Date()
        let result = try TestProcess.run("/usr/bin/timeout", ["60", TestProcess.binary("prima-quantize"), "--int8", input,
                                                              "-o", work + "/q.h5", "--keep-float", pattern])
        #expect(Date().timeIntervalSince(start) < 20)
        try Support.expectRefusal(result, mentioning: ["--keep-float", message], work: work, keep: ["qwen3-tied-f32.h5"])
    }

    @Test func refusesToOverwriteUnlessForced() throws {
        let work = Support.temporaryDirectory()
        let input = try Support.imported("dinov3-mlp-reg4-f32", in: work)
        let output = work + "/q.h5"
        #expect(try Support.quantize("--int8", input, "-o", output).status == 0)
        let before = try Data(contentsOf: URL(fileURLWithPath: output))
        let again = try Support.quantize("--int8", input, "-o", output, "--scheme", "block32")
        try Support.expectRefusal(again, mentioning: [output, "already exists", "--force"], work: work,
                                  keep: ["dinov3-mlp-reg4-f32.h5", "q.h5"])
        #expect(try Data(contentsOf: URL(fileURLWithPath: output)) == before)
        let forced = try Support.quantize("--int8", input, "-o", output, "--scheme", "block32", "--force")
        #expect(forced.status == 0, "\(forced.stderr)")
        try Support.expectFaithfulQuantization(input: input, output: output, scheme: .block32)
        #expect(Set(try FileManager.default.contentsOfDirectory(atPath: work)) == ["dinov3-mlp-reg4-f32.h5", "q.h5"])
    }

    @Test func badInputsAndUsage() throws {
        let work = Support.temporaryDirectory()
        let input = try Support.imported("qwen3-tied-bf16", in: work)
        let output = work + "/out.h5"
        let keep: Set<String> = ["qwen3-tied-bf16.h5"]
        try Support.expectRefusal(try Support.quantize("--int8", work + "/missing.h5", "-o", output),
                                  mentioning: [work + "/missing.h5", "no such file"], work: work, keep: keep)
        try Support.expectRefusal(try Support.quantize("--int8", Support.fixtures + "/manifest.json", "-o", output),
                                  mentioning: ["manifest.json", "not an HDF5 file"], work: work, keep: keep)
        try Support.expectRefusal(try Support.quantize("--int8", input, "-o", output, "--keep-float", "layers.(0"),
                                  mentioning: ["--keep-float", "layers.(0"], work: work, keep: keep)
        try Support.expectRefusal(try Support.quantize("--int8", input, "-o", input, "--force"),
                                  mentioning: [input, "must differ"], work: work, keep: keep)
        let usage = try Support.quantize(input, "-o", output)
        #expect(usage.status == 2 && usage.stderr.contains("--int8"))
        let scheme = try Support.quantize("--int8", input, "-o", output, "--scheme", "int4")
        #expect(scheme.status == 2 && scheme.stderr.contains("per-channel or block32"))
        #expect(try Support.quantize("--help").status == 0)

        // An already quantised checkpoint is refused (quantising int8 again would compound the error).
        #expect(try Support.quantize("--int8", input, "-o", work + "/q.h5").status == 0)
        try Support.expectRefusal(try Support.quantize("--int8", work + "/q.h5", "-o", output),
                                  mentioning: [work + "/q.h5", "decoder", "already quantised", "layers.0.mlp.down.weight"],
                                  work: work, keep: keep.union(["q.h5"]))

        // A NaN in a weight to quantise (with a consistent checksum) is refused, naming tensor, row and column.
        let nan = work + "/nan.h5"
        try FileManager.default.copyItem(atPath: input, toPath: nan)
        try overwriteElement(of: nan, tensor: "/decoder/tensors/layers.1.attn.o.weight", at: 64 + 5, bf16: 0x7FC0, fixChecksum: true)
        try Support.expectRefusal(try Support.quantize("--int8", nan, "-o", output),
                                  mentioning: [nan, "layers.1.attn.o.weight", "row 1, column 5", "not finite"],
                                  work: work, keep: keep.union(["q.h5", "nan.h5"]))
        // A damaged tensor (checksum mismatch) is refused rather than quantised.
        let damaged = work + "/damaged.h5"
        try FileManager.default.copyItem(atPath: input, toPath: damaged)
        try overwriteElement(of: damaged, tensor: "/decoder/tensors/layers.0.attn.q.weight", at: 3, bf16: 0x3F80, fixChecksum: false)
        try Support.expectRefusal(try Support.quantize("--int8", damaged, "-o", output),
                                  mentioning: [damaged, "layers.0.attn.q.weight", "CRC-32", "damaged"],
                                  work: work, keep: keep.union(["q.h5", "nan.h5", "damaged.h5"]))
    }

    /// Export refuses a quantised component without --dequantize; with it, the directory has the original's
    /// names, dtypes and shapes, float tensors bit-identical and quantised ones equal to ŵ in the source dtype.
    @Test(arguments: [("qwen3-tied-headstored-bf16", ["--quantize-embeddings", "--quantize-heads"]),
                      ("modernbert-mlm-f16", []), ("dinov3-mlp-reg4-f32", ["--scheme", "block32"]),
                      ("qwen3-untied-f16-sharded", ["--quantize-heads"])])
    func exportDequantizes(fixture: String, options: [String]) throws {
        let work = Support.temporaryDirectory()
        let input = try Support.imported(fixture, in: work)
        let output = work + "/q.h5"
        let quantizeResult = try TestProcessRun.tool("prima-quantize", ["--int8", input, "-o", output] + options)
        #expect(quantizeResult.status == 0, "\(quantizeResult.stderr)")
        let role = try Checkpoint(path: output).roles[0].rawValue

        let refused = try Support.convert("export", output, "--component", role, "-o", work + "/refused")
        #expect(refused.status == 2)
        #expect(refused.stderr.contains("int8-quantised") && refused.stderr.contains("--dequantize") && refused.stderr.contains(output))
        #expect(!FileManager.default.fileExists(atPath: work + "/refused"))

        let exported = work + "/export"
        let result = try Support.convert("export", output, "--component", role, "-o", exported, "--dequantize")
        #expect(result.status == 0, "\(result.stderr)")

        let original = try SafetensorsModel(directory: Support.fixtures + "/" + fixture)
        let copy = try SafetensorsModel(directory: exported)
        #expect(Set(copy.weights.map(\.entry.name)) == Set(original.weights.map(\.entry.name)))
        let component = try Checkpoint(path: output).component(ComponentRole(rawValue: role)!)
        let records = Dictionary(try component.tensorRecords().map { ($0.hfName ?? $0.name, $0) }, uniquingKeysWith: { a, _ in a })
        var dequantized = 0
        for weight in original.weights {
            let entry = weight.entry
            let other = try #require(copy.weights.first { $0.entry.name == entry.name })
            #expect(other.entry.dtype == entry.dtype && other.entry.shape == entry.shape, "\(entry.name)")
            let a = try weight.file.readTensor(entry), b = try other.file.readTensor(other.entry)
            let bytesA = a.withUnsafeBytes { [UInt8]($0) }, bytesB = b.withUnsafeBytes { [UInt8]($0) }
            // The stored tensor behind this name (an alias stored by the source resolves to its target).
            let record = try #require(records[entry.name], "\(entry.name) is not in the checkpoint")
            let stored = record.aliasOf ?? record.name
            guard let info = try Int8Dequantizer.info(of: stored, in: component) else {
                #expect(bytesA == bytesB, "\(entry.name): a float tensor changed on export")
                continue
            }
            dequantized += 1
            #expect(info.sourceDType == entry.dtype)
            var w = [Float](repeating: 0, count: a.elementCount)
            bytesA.withUnsafeBytes { raw in w.withUnsafeMutableBufferPointer { WeightConversion.widen(raw, dtype: entry.dtype, into: $0) } }
            let back = Int8Reference.quantize(w, rows: entry.shape[0], columns: entry.shape[1], scheme: info.scheme).dequantized()
            var expected = [UInt8](repeating: 0, count: bytesA.count)
            back.withUnsafeBufferPointer { v in expected.withUnsafeMutableBytes { WeightConversion.narrow(v, to: entry.dtype, into: $0) } }
            #expect(bytesB == expected, "\(entry.name): not ŵ in \(entry.dtype.rawValue)")
        }
        #expect(dequantized >= 8)

        // transformers loads it like the original: same keys, dtypes, shapes and ties; only quantised values differ.
        if let python = Support.python(with: ["torch", "transformers", "safetensors"]) {
            let compare = try TestProcessRun.python(python, [Support.repositoryRoot + "/Formats/python/compare_hf_dirs.py",
                                                             Support.fixtures + "/" + fixture, exported])
            #expect(compare.status == 1, "\(compare.stdout) \(compare.stderr)")
            let differences = compare.stdout.split(separator: "\n")
            #expect(!differences.isEmpty)
            for line in differences {
                #expect(line.hasSuffix("bytes)") && line.contains(": bytes differ (") || line.contains(": values differ ("),
                        "unexpected difference: \(line)")
            }
        } else {
            print("note: torch/transformers not installed; the dequantised export was not loaded with transformers here")
        }
    }

    // MARK: - helpers

    /// Writes one bf16 element of a bf16 tensor in place (and, if asked, the CRC-32 that matches).
    func overwriteElement(of path: String, tensor: String, at index: Int, bf16 bits: UInt16, fixChecksum: Bool) throws {
        let file = try HDF5File.open(path: path, writable: true)
        do {
            let parts = tensor.split(separator: "/").map(String.init)
            var group = try file.root()
            for part in parts.dropLast() { group = try group.group(part) }
            let dataset = try group.dataset(parts.last!)
            var bytes = try dataset.readAllBytes()
            bytes[2 * index] = UInt8(bits & 0xFF)
            bytes[2 * index + 1] = UInt8(bits >> 8)
            try bytes.withUnsafeBytes { try dataset.writeAll($0) }
            if fixChecksum { try dataset.setAttribute("crc32", int: Int(bytes.withUnsafeBytes { CRC32.checksum($0) })) }
        }
        try file.close()
    }

    /// Adds a LoRA adapter to the decoder and a minimal /prima heads group (§6, §8), with a tied soft link.
    /// Adds an unmerged rank-2 adapter on the decoder's `layers.0.attn.q.weight` [64, 48] (§6).
    func addLoRA(to path: String) throws {
        let file = try HDF5File.open(path: path, writable: true)
        do {
            let adapter = try file.root().group("decoder").createGroup("lora").createGroup("default")
            try adapter.setAttribute("rank", int: 2)
            try adapter.setAttribute("alpha", double: 4)
            try adapter.setAttribute("use_rslora", int: 0)
            try adapter.setAttribute("dropout", double: 0)
            try adapter.setAttribute("targets", string: #"["layers.0.attn.q.weight"]"#)
            try adapter.setAttribute("merged", int: 0)
            let loraTensors = try adapter.createGroup("tensors")
            try writeFloats(loraTensors, "layers.0.attn.q.lora_a", shape: [2, 48])
            try writeFloats(loraTensors, "layers.0.attn.q.lora_b", shape: [64, 2])
        }
        try file.close()
    }

    func writeFloats(_ group: HDF5Group, _ name: String, shape: [Int]) throws {
        let values = (0..<shape.reduce(1, *)).map { Float($0 % 17) * 0.25 - 2 }
        let dataset = try group.createDataset(name, dtype: .f32, shape: shape)
        try values.withUnsafeBytes { try dataset.writeAll($0) }
        try dataset.setAttribute("dtype", string: "f32")
        try dataset.setAttribute("crc32", int: Int(values.withUnsafeBytes { CRC32.checksum($0) }))
    }
}

/// Running tools and Python with an argument array.
enum TestProcessRun {
    static func tool(_ name: String, _ arguments: [String]) throws -> TestProcess.Result {
        try TestProcess.run(TestProcess.binary(name), arguments)
    }

    static func python(_ python: String, _ arguments: [String]) throws -> TestProcess.Result {
        try TestProcess.run(python, arguments)
    }
}
