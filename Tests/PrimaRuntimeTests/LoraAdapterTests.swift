import Foundation
import PrimaCheckpoint
import PrimaSafetensors
import PrimaTestSupport
import Testing

/// LoRA adapters in checkpoints (Formats/prima-checkpoint.md §6), through the binaries: PEFT directories written by
/// Fixtures/make_lora_fixtures.py (transformers + PEFT) are imported with `prima-convert lora-import`, the adapted
/// models match PEFT's unmerged forward layer by layer (`prima-verify --trace`), the adapters export back to PEFT
/// bit for bit, and what a checkpoint adapter cannot hold is refused with one line.
@Suite struct LoraAdapterTests {
    static let lora = RuntimeTestSupport.repositoryRoot + "/Fixtures/lora"
    static let convert = RuntimeTestSupport.binary("prima-convert")
    static let verify = RuntimeTestSupport.binary("prima-verify")
    static let craft = RuntimeTestSupport.repositoryRoot + "/Fixtures/hostile/craft_checkpoint.py"

    /// adapter fixture, base model fixture, role.
    static let cases: [(adapter: String, model: String, role: String)] = [
        ("qwen3-all-projections", "qwen3-untied-f32", "decoder"),
        ("bert-rslora", "bert-mlm-f32", "text_encoder"),
        ("modernbert-fused", "modernbert-mlm-f32", "text_encoder"),
        ("dinov3-attention-mlp", "dinov3-mlp-reg4-f32", "image_encoder"),
    ]

    /// The base checkpoint and a copy with the fixture adapter as `default`.
    static func adapted(_ adapter: String, _ model: String, _ role: String) throws -> (base: String, adapted: String) {
        let base = try RuntimeTestSupport.importFixture(model)
        let adapted = RuntimeTestSupport.temporaryDirectory() + "/\(adapter).h5"
        let result = try RuntimeTestSupport.run(convert, ["lora-import", base, "--role", role, "--adapter", lora + "/" + adapter, "-o", adapted])
        try #require(result.status == 0, "\(result.stderr)")
        return (base, adapted)
    }

    /// Every tensor of two safetensors files: same names, dtypes, shapes and bytes.
    static func expectSameTensors(_ path: String, _ reference: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let got = try SafetensorsFile(path: path), want = try SafetensorsFile(path: reference)
        #expect(Set(got.entries.map(\.name)) == Set(want.entries.map(\.name)), sourceLocation: sourceLocation)
        for entry in want.entries {
            guard let other = got.entries.first(where: { $0.name == entry.name }) else { continue }
            #expect(other.dtype == entry.dtype && other.shape == entry.shape, "\(entry.name)", sourceLocation: sourceLocation)
            let a = try got.readTensor(other), b = try want.readTensor(entry)
            #expect(a.withUnsafeBytes { Array($0) } == b.withUnsafeBytes { Array($0) }, "\(entry.name) bytes", sourceLocation: sourceLocation)
        }
    }

    /// The adapted checkpoint runs PEFT's unmerged forward: every activation of the PEFT trace within the default
    /// tolerances, while the base checkpoint fails the same trace (the adapter is not a no-op).
    @Test(arguments: cases.map { [$0.adapter, $0.model, $0.role] })
    func adaptedModelMatchesPeftLayerByLayer(_ names: [String]) throws {
        let (base, adapted) = try Self.adapted(names[0], names[1], names[2])
        let trace = Self.lora + "/\(names[0]).h5"
        let passed = try RuntimeTestSupport.run(Self.verify, [adapted, "--trace", trace])
        #expect(passed.status == 0 && passed.stdout.contains("PASS"), "\(passed.stdout)\(passed.stderr)")
        let failed = try RuntimeTestSupport.run(Self.verify, [base, "--trace", trace])
        #expect(failed.status == 1 && failed.stdout.contains("FAIL"), "\(failed.stdout)\(failed.stderr)")
        // Integrity covers the adapter: structure and checksums.
        let integrity = try RuntimeTestSupport.run(Self.verify, [adapted])
        #expect(integrity.status == 0, "\(integrity.stdout)\(integrity.stderr)")
    }

    /// Export writes the PEFT directory back: adapter_config.json byte for byte, every tensor bit for bit; importing
    /// the export again gives the same adapter; the h5py reader verifies the adapter's checksums.
    @Test(arguments: cases.map { [$0.adapter, $0.model, $0.role] })
    func adaptersTravelBackToPeftBitForBit(_ names: [String]) throws {
        let (base, adapted) = try Self.adapted(names[0], names[1], names[2])
        let source = Self.lora + "/" + names[0]
        let exported = RuntimeTestSupport.temporaryDirectory() + "/peft"
        let result = try RuntimeTestSupport.run(Self.convert, ["export", adapted, "--component", names[2], "--adapter", "default", "-o", exported])
        try #require(result.status == 0, "\(result.stderr)")
        #expect(try Data(contentsOf: URL(fileURLWithPath: exported + "/adapter_config.json"))
                == Data(contentsOf: URL(fileURLWithPath: source + "/adapter_config.json")))
        try Self.expectSameTensors(exported + "/adapter_model.safetensors", source + "/adapter_model.safetensors")
        let again = RuntimeTestSupport.temporaryDirectory() + "/again.h5"
        let reimport = try RuntimeTestSupport.run(Self.convert, ["lora-import", base, "--role", names[2], "--adapter", exported,
                                                                  "--name", "second", "-o", again])
        #expect(reimport.status == 0, "\(reimport.stderr)")
        let reader = try RuntimeTestSupport.run("/usr/bin/python3", [RuntimeTestSupport.repositoryRoot + "/Formats/python/prima_h5.py", adapted, "--verify"])
        #expect(reader.status == 0, "\(reader.stderr)")
    }

    /// An adapter made by training has no stored adapter_config.json: export writes one from the attributes, with
    /// PEFT's keys around the base weights' Hugging Face names, and it imports back to the same adapter.
    @Test func anAdapterWithoutItsPeftConfigExportsOneFromItsAttributes() throws {
        let (base, adapted) = try Self.adapted("bert-rslora", "bert-mlm-f32", "text_encoder")
        let stripped = RuntimeTestSupport.temporaryDirectory() + "/stripped.h5"
        let script = """
            import shutil, sys, h5py
            shutil.copyfile(sys.argv[1], sys.argv[2])
            with h5py.File(sys.argv[2], "r+") as f:
                del f["text_encoder/lora/default/files"]
                for d in f["text_encoder/lora/default/tensors"].values():
                    del d.attrs["hf_name"]
            """
        #expect(try RuntimeTestSupport.run("/usr/bin/python3", ["-c", script, adapted, stripped]).status == 0)
        let exported = RuntimeTestSupport.temporaryDirectory() + "/peft"
        let result = try RuntimeTestSupport.run(Self.convert, ["export", stripped, "--component", "text_encoder", "--adapter", "default", "-o", exported])
        try #require(result.status == 0, "\(result.stderr)")
        let config = try String(contentsOfFile: exported + "/adapter_config.json", encoding: .utf8)
        for fragment in ["\"peft_type\": \"LORA\"", "\"r\": 3", "\"use_rslora\": true", "\"bert.encoder.layer.0.attention.self.query\""] {
            #expect(config.contains(fragment), "\(fragment) in \(config)")
        }
        // Same matrices under the names the stripped checkpoint's base implies (the base was imported with `bert.`).
        let keys = try SafetensorsFile(path: exported + "/adapter_model.safetensors").entries.map(\.name)
        #expect(keys.contains("base_model.model.bert.encoder.layer.1.output.dense.lora_B.weight"), "\(keys)")
        // Without the config but with the tensors' PEFT keys, target_modules still names the adapted modules.
        let keyed = RuntimeTestSupport.temporaryDirectory() + "/keyed.h5"
        let stripFiles = "import shutil, sys, h5py\nshutil.copyfile(sys.argv[1], sys.argv[2])\nwith h5py.File(sys.argv[2], 'r+') as f:\n    del f['text_encoder/lora/default/files']\n"
        #expect(try RuntimeTestSupport.run("/usr/bin/python3", ["-c", stripFiles, adapted, keyed]).status == 0)
        let keyedExport = RuntimeTestSupport.temporaryDirectory() + "/keyed-peft"
        #expect(try RuntimeTestSupport.run(Self.convert, ["export", keyed, "--component", "text_encoder", "--adapter", "default", "-o", keyedExport]).status == 0)
        let keyedConfig = try String(contentsOfFile: keyedExport + "/adapter_config.json", encoding: .utf8)
        #expect(keyedConfig.contains("\"encoder.layer.0.attention.self.query\""), "\(keyedConfig)")
        let back = RuntimeTestSupport.temporaryDirectory() + "/back.h5"
        let reimport = try RuntimeTestSupport.run(Self.convert, ["lora-import", base, "--role", "text_encoder", "--adapter", exported, "-o", back])
        #expect(reimport.status == 0, "\(reimport.stderr)")
        let passed = try RuntimeTestSupport.run(Self.verify, [back, "--trace", Self.lora + "/bert-rslora.h5"])
        #expect(passed.status == 0, "\(passed.stdout)")
    }

    /// A copy of the bert-rslora PEFT directory with its config changed by `edit` (and optionally other tensors).
    static func peftCopy(config edit: (inout [String: Any]) -> Void, tensors: ((inout [(String, [Int], [Float])]) -> Void)? = nil) throws -> String {
        let directory = RuntimeTestSupport.temporaryDirectory() + "/peft"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let source = lora + "/bert-rslora"
        var config = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: source + "/adapter_config.json"))) as! [String: Any]
        edit(&config)
        try JSONSerialization.data(withJSONObject: config, options: [.sortedKeys]).write(to: URL(fileURLWithPath: directory + "/adapter_config.json"))
        if let tensors {
            let file = try SafetensorsFile(path: source + "/adapter_model.safetensors")
            var list = try file.entries.map { ($0.name, $0.shape, try file.readTensor($0).float32Values()) }
            tensors(&list)
            let writer = try SafetensorsWriter(path: directory + "/adapter_model.safetensors",
                                               tensors: list.map { SafetensorsTensorSpec(name: $0.0, dtype: .f32, shape: $0.1) })
            for (_, _, values) in list { try values.withUnsafeBytes { try writer.append($0) } }
            try writer.finish()
        } else {
            try FileManager.default.copyItem(atPath: source + "/adapter_model.safetensors", toPath: directory + "/adapter_model.safetensors")
        }
        return directory
    }

    /// What a checkpoint adapter cannot hold exactly is refused with one line naming the file and the field or key,
    /// exit 2, and no output.
    @Test func unrepresentablePeftAdaptersAreRefused() throws {
        let base = try RuntimeTestSupport.importFixture("bert-mlm-f32")
        let cases: [(String, String)] = [
            (try Self.peftCopy(config: { $0["use_dora"] = true }), "use_dora is true"),
            (try Self.peftCopy(config: { $0["bias"] = "all" }), "bias is \"all\""),
            (try Self.peftCopy(config: { $0["modules_to_save"] = ["pooler"] }), "modules_to_save is [\"pooler\"]"),
            (try Self.peftCopy(config: { $0["rank_pattern"] = ["query": 2] }), "rank_pattern is"),
            (try Self.peftCopy(config: { $0["use_magic_lora"] = true }), "use_magic_lora is true"),
            (try Self.peftCopy(config: { $0["peft_type"] = "IA3" }), "only LORA adapters are supported"),
            (try Self.peftCopy(config: { $0["r"] = 0 }), "r must be an integer in 1...4096"),
            (try Self.peftCopy(config: { _ in }, tensors: { $0.append(("base_model.model.pooler.dense.weight", [2, 2], [1, 2, 3, 4])) }),
             "key base_model.model.pooler.dense.weight is not a LoRA A/B matrix"),
            (try Self.peftCopy(config: { _ in }, tensors: { $0.removeAll { $0.0.hasSuffix("layer.0.attention.self.query.lora_B.weight") } }),
             "encoder.layer.0.attention.self.query has lora_A but no lora_B"),
            (try Self.peftCopy(config: { _ in }, tensors: { list in
                list = list.map { $0.0.contains("layer.1.intermediate.dense.lora_A") ? ($0.0, [3, 7], [Float](repeating: 0, count: 21)) : $0 }
            }), "module encoder.layer.1.intermediate.dense: lora_A [3, 7] and lora_B [48, 3] do not fit layers.1.mlp.up.weight [48, 32]"),
            (try Self.peftCopy(config: { _ in }, tensors: { list in
                list = list.map { ($0.0.replacingOccurrences(of: "attention.self.key", with: "attention.self.nothing"), $0.1, $0.2) }
            }), "module encoder.layer.0.attention.self.nothing is not a linear weight"),
        ]
        for (directory, message) in cases {
            let output = RuntimeTestSupport.temporaryDirectory() + "/out.h5"
            let result = try RuntimeTestSupport.run(Self.convert, ["lora-import", base, "--role", "text_encoder", "--adapter", directory, "-o", output])
            #expect(result.status == 2 && result.stderr.contains(message) && result.stderr.contains(directory), "\(message): \(result.stderr)")
            #expect(result.stderr.split(separator: "\n").count == 1, "\(result.stderr)")
            #expect(!FileManager.default.fileExists(atPath: output))
        }
        // Usage errors: a bad name, a name already taken, a role the checkpoint lacks.
        let (_, adapted) = try Self.adapted("bert-rslora", "bert-mlm-f32", "text_encoder")
        for (arguments, message) in [
            (["--name", "../x"], "--name ../x: an adapter name is 1-64 characters"),
            (["--name", "default"], "already has an adapter named default"),
        ] {
            let result = try RuntimeTestSupport.run(Self.convert, ["lora-import", adapted, "--role", "text_encoder", "--adapter",
                                                                   Self.lora + "/bert-rslora", "-o", adapted + ".2.h5"] + arguments)
            #expect(result.status == 2 && result.stderr.contains(message), "\(result.stderr)")
        }
        let wrongRole = try RuntimeTestSupport.run(Self.convert, ["lora-import", base, "--role", "decoder", "--adapter",
                                                                  Self.lora + "/bert-rslora", "-o", base + ".3.h5"])
        #expect(wrongRole.status == 2 && wrongRole.stderr.contains("decoder"), "\(wrongRole.stderr)")
    }

    /// A damaged adapter group in a checkpoint is refused by the tools that load the component (exit 2, one line
    /// naming the adapter) and reported by prima-verify (exit 1).
    @Test(arguments: [
        (["attr", "text_encoder/lora/default", "rank", "0"], "lora/default: rank 0 is outside 1...4096"),
        (["attr", "text_encoder/lora/default", "alpha", "\"x\""], "lora/default: attribute alpha is a string, not a float64"),
        (["attr", "text_encoder/lora/default", "alpha", "4"], "lora/default: attribute alpha is a 64-bit signed integer, not a float64"),
        (["attr", "text_encoder/lora/default", "targets", "\"[\\\"layers.0.attn_norm.weight\\\"]\""],
         "lora/default: target layers.0.attn_norm.weight is not a rank-2 weight of this component"),
        (["reshape", "text_encoder/lora/default", "layers.0.attn.q.lora_a"], "lora/default: tensor layers.0.attn.q.lora_a: f32 [3, 33]"),
        (["attr", "text_encoder/lora/default", "merged", "1"], "lora/default: merged = 1 but the component has no lora_merged = 1"),
    ])
    func damagedAdapterGroupsAreRefused(_ operation: [String], _ message: String) throws {
        let (_, adapted) = try Self.adapted("bert-rslora", "bert-mlm-f32", "text_encoder")
        let crafted = RuntimeTestSupport.temporaryDirectory() + "/crafted.h5"
        let made = try RuntimeTestSupport.run("/usr/bin/python3", [Self.craft, adapted, crafted] + operation)
        try #require(made.status == 0, "\(made.stderr)")
        let traced = try RuntimeTestSupport.run(Self.verify, [crafted, "--trace", Self.lora + "/bert-rslora.h5"])
        #expect(traced.status == 2 && traced.stderr.contains(message), "\(traced.stderr)")
        #expect(traced.stderr.split(separator: "\n").count == 1, "\(traced.stderr)")
        let integrity = try RuntimeTestSupport.run(Self.verify, [crafted])
        #expect(integrity.status == 1 && integrity.stdout.contains(message), "\(integrity.stdout)")
        let exported = try RuntimeTestSupport.run(Self.convert, ["export", crafted, "--component", "text_encoder", "--adapter", "default",
                                                                 "-o", crafted + ".peft"])
        #expect(exported.status == 2 && exported.stderr.contains(message), "\(exported.stderr)")
    }
}

/// `prima-convert merge-lora` (Formats/prima-checkpoint.md §6.2).
@Suite struct LoraMergeTests {
    static let convert = LoraAdapterTests.convert
    static let verify = LoraAdapterTests.verify

    /// The merged checkpoint matches PEFT's unmerged forward within the trace tolerances, its adapter is marked
    /// merged (so it is not applied twice) and cannot be exported or merged again.
    @Test(arguments: LoraAdapterTests.cases.map { [$0.adapter, $0.model, $0.role] })
    func mergedModelMatchesPeft(_ names: [String]) throws {
        let (_, adapted) = try LoraAdapterTests.adapted(names[0], names[1], names[2])
        let merged = RuntimeTestSupport.temporaryDirectory() + "/merged.h5"
        let result = try RuntimeTestSupport.run(Self.convert, ["merge-lora", adapted, "-o", merged])
        try #require(result.status == 0, "\(result.stderr)")
        let passed = try RuntimeTestSupport.run(Self.verify, [merged, "--trace", LoraAdapterTests.lora + "/\(names[0]).h5"])
        #expect(passed.status == 0, "\(passed.stdout)\(passed.stderr)")
        #expect(try RuntimeTestSupport.run(Self.verify, [merged]).status == 0)
        let again = try RuntimeTestSupport.run(Self.convert, ["merge-lora", merged, "-o", merged + ".2"])
        #expect(again.status == 2 && again.stderr.contains("no unmerged LoRA adapter"), "\(again.stderr)")
        let export = try RuntimeTestSupport.run(Self.convert, ["export", merged, "--component", names[2], "--adapter", "default", "-o", merged + ".peft"])
        #expect(export.status == 2 && export.stderr.contains("is merged into the base weights"), "\(export.stderr)")
    }

    /// f16 weights: each merged element is the exact W + scale·B·A (in double) rounded to f16, give or take the f32
    /// roundings of the sum before it is narrowed (half an f16 ulp plus 2⁻²¹ of the terms' magnitudes).
    @Test func halfPrecisionWeightsAreRoundedOnce() throws {
        let (_, adapted) = try LoraAdapterTests.adapted("modernbert-fused", "modernbert-mlm-f16", "text_encoder")
        let merged = RuntimeTestSupport.temporaryDirectory() + "/merged.h5"
        #expect(try RuntimeTestSupport.run(Self.convert, ["merge-lora", adapted, "-o", merged]).status == 0)
        let before = try Checkpoint(path: adapted).component(.textEncoder), after = try Checkpoint(path: merged).component(.textEncoder)
        let (info, reader) = try before.loraAdapter("default")
        for target in info.targets {
            let old = try before.tensorRecords().first { $0.name == target }!
            #expect(old.dtype == .f16)
            let w = try before.readTensor(old).float32Values()
            let m = try after.readTensor(try after.tensorRecords().first { $0.name == target }!).float32Values()
            let records = try reader.tensorRecords()
            let a = try reader.readTensor(records.first { $0.name == LoraAdapterInfo.aName(for: target) }!).float32Values()
            let b = try reader.readTensor(records.first { $0.name == LoraAdapterInfo.bName(for: target) }!).float32Values()
            let (rows, columns, rank) = (old.shape[0], old.shape[1], info.rank)
            for i in 0..<rows {
                for j in 0..<columns {
                    var product = 0.0, magnitude = 0.0
                    for k in 0..<rank {
                        product += Double(b[i * rank + k]) * Double(a[k * columns + j])
                        magnitude += abs(Double(b[i * rank + k]) * Double(a[k * columns + j]))
                    }
                    let exact = Double(w[i * columns + j]) + Double(info.scale) * product
                    // The f32 sum carries a few roundings relative to its terms (not to the possibly cancelled sum).
                    let f32Error = (abs(Double(w[i * columns + j])) + Double(info.scale) * magnitude) * 0x1p-21
                    let ulp = Double(Float16(Float(exact)).ulp)
                    #expect(abs(Double(m[i * columns + j]) - exact) <= ulp / 2 + f32Error, "\(target)[\(i), \(j)]")
                }
            }
        }
    }

    /// Tied and int8 targets are refused before anything is written.
    @Test func tiedAndQuantisedTargetsAreRefused() throws {
        let (_, tied) = try LoraAdapterTests.adapted("qwen3-all-projections", "qwen3-tied-f32", "decoder")
        let output = RuntimeTestSupport.temporaryDirectory() + "/out.h5"
        let refusedTied = try RuntimeTestSupport.run(Self.convert, ["merge-lora", tied, "-o", output])
        #expect(refusedTied.status == 2 && refusedTied.stderr.contains("target lm_head.weight is tied to another tensor"), "\(refusedTied.stderr)")
        let (_, adapted) = try LoraAdapterTests.adapted("qwen3-all-projections", "qwen3-untied-f32", "decoder")
        let quantized = RuntimeTestSupport.temporaryDirectory() + "/int8.h5"
        #expect(try RuntimeTestSupport.run(RuntimeTestSupport.binary("prima-quantize"), ["--int8", adapted, "-o", quantized]).status == 0)
        let refusedInt8 = try RuntimeTestSupport.run(Self.convert, ["merge-lora", quantized, "-o", output])
        #expect(refusedInt8.status == 2 && refusedInt8.stderr.contains("is i8; merge into the float checkpoint, then quantise"), "\(refusedInt8.stderr)")
        #expect(!FileManager.default.fileExists(atPath: output))
    }
}
