import Foundation
import PrimaCheckpoint
import PrimaJSON
import PrimaTestSupport
import PrimaVerify
import Testing

/// The small hostile inputs of the untrusted-input work, each through a binary: empty class codes, names carrying
/// newlines and terminal escapes, NaN attributes and NaN thresholds, traces that compare nothing or carry no `order`,
/// and image ids that a spreadsheet would run as formulas.
@Suite struct HostileSmallInputTests {
    static let convert = RuntimeTestSupport.binary("prima-convert")
    static let verify = RuntimeTestSupport.binary("prima-verify")
    static let diagnose = RuntimeTestSupport.binary("prima-diagnose")

    /// Expects exit status 2 and exactly one stderr line containing every fragment.
    private func expectRefused(_ result: TestProcess.Result, _ fragments: String..., sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(result.status == 2, "status \(result.status): \(result.stderr)", sourceLocation: sourceLocation)
        let lines = result.stderr.split(separator: "\n", omittingEmptySubsequences: false).filter { !$0.isEmpty }
        #expect(lines.count == 1, "\(result.stderr)", sourceLocation: sourceLocation)
        for fragment in fragments {
            #expect(result.stderr.contains(fragment), "\(result.stderr) lacks \(fragment)", sourceLocation: sourceLocation)
        }
    }

    @Test func emptyClassCodesAreRefusedNotACrash() throws {
        let model = RuntimeTestSupport.model
        let output = RuntimeTestSupport.temporaryDirectory() + "/p.h5"
        for (labels, fragment) in [("", "entry 1 has no class code"), ("A,,B", "entry 2 has no class code"),
                                   ("A,B,", "entry 3 has no class code"), ("=Name,B", "entry 1 has no class code"),
                                   ("A=,B", "class A has an empty name")] {
            let result = try RuntimeTestSupport.run(Self.convert, [
                "import", "--image-encoder", model("dinov3-mlp-reg4-f32"), "--text-encoder", model("bert-mlm-f32"),
                "--decoder", model("qwen3-prima-f32"), "--labels", labels, "-o", output, "--no-progress"])
            expectRefused(result, "--labels", fragment)
            #expect(!FileManager.default.fileExists(atPath: output))
        }
    }

    @Test func errorsNeverCarryRawControlCharacters() throws {
        // A name with a newline and an ANSI escape (as a crafted file or file name could carry) stays one inert line.
        let hostile = RuntimeTestSupport.temporaryDirectory() + "/evil\nprima-convert: error: forged\u{1B}[31mred\u{7}.json"
        let result = try TestProcess.run(Self.convert, ["tokenize", hostile], standardInput: "")
        expectRefused(result, "evil\\nprima-convert: error: forged\\u{1B}[31mred\\u{7}.json")
        #expect(!result.stderr.unicodeScalars.contains { $0.value < 0x20 && $0 != "\n" })
    }

    @Test func inspectShowsNonFiniteAttributes() throws {
        let checkpoint = try RuntimeTestSupport.importFixture("bert-mlm-f32")
        do {
            let file = try HDF5File.open(path: checkpoint, writable: true)
            let group = try file.root().group("text_encoder")
            try group.setAttribute("nan_value", double: .nan)
            try group.setAttribute("inf_values", doubles: [1.5, -.infinity, .infinity])
        }
        let result = try RuntimeTestSupport.run(Self.convert, ["inspect", checkpoint, "--json"])
        #expect(result.status == 0, "\(result.stderr)")
        let component = try JSON.parse(result.stdout).object?["components"]?.object?["text_encoder"]?.object
        #expect(component?["nan_value"]?.string == "NaN")
        #expect(component?["inf_values"]?.array?.map { $0.string ?? $0.double.map { String($0) } ?? "?" } == ["1.5", "-Infinity", "Infinity"])
        #expect(try RuntimeTestSupport.run(Self.convert, ["inspect", checkpoint]).status == 0)
    }

    @Test func nonFiniteOrOutOfRangeThresholdsAreUsageErrors() throws {
        let checkpoint = try RuntimeTestSupport.importFixture("qwen3-tied-f32")
        let trace = RuntimeTestSupport.trace("qwen3-tied-f32")
        for (flag, value) in [("--min-cosine", "nan"), ("--atol-scale", "nan"), ("--max-rel", "inf"), ("--max-nmse", "-1"),
                              ("--min-cosine", "2"), ("--min-top1", "1.5"), ("--max-kl", "nan"), ("--min-final-cosine", "nan")] {
            let result = try RuntimeTestSupport.run(Self.verify, [checkpoint, "--trace", trace, "\(flag)=\(value)"])
            #expect(result.status == 2, "\(flag) \(value): \(result.stderr)")
            #expect(result.stderr.contains(flag) && result.stderr.contains("finite number"), "\(result.stderr)")
            #expect(!result.stdout.contains("PASS"))
        }
    }

    @Test func aTraceOfInputsOnlyNeverPasses() throws {
        let checkpoint = try RuntimeTestSupport.importFixture("qwen3-tied-f32")
        let reference = try Trace(path: RuntimeTestSupport.trace("qwen3-tied-f32"))
        let path = RuntimeTestSupport.temporaryDirectory() + "/inputs.h5"
        try Trace(subject: reference.subject, activations: []).write(to: path, source: "test")
        expectRefused(try RuntimeTestSupport.run(Self.verify, [checkpoint, "--trace", path]), path, "no activations to compare")
        let timed = try RuntimeTestSupport.run(Self.verify, [checkpoint, "--trace", path, "--repeat", "1"])
        #expect(timed.status == 0, "\(timed.stderr)")
        #expect(timed.stdout.contains("TIMED") && !timed.stdout.contains("PASS"))
        let json = try JSON.parse(try RuntimeTestSupport.run(Self.verify, [checkpoint, "--trace", path, "--repeat", "1", "--json"]).stdout).object
        #expect(json?["pass"] == .null && json?["timing_only"]?.bool == true)
    }

    /// Writes `reference`'s trace file again with its activations in `names` creation order, without `order`.
    private func writeWithoutOrder(_ reference: String, names: [String], extra: String? = nil) throws -> String {
        let trace = try Trace(path: reference)
        let tensors = Dictionary(uniqueKeysWithValues: trace.activations.map { ($0.name, $0.tensor) })
        let path = RuntimeTestSupport.temporaryDirectory() + "/unordered.h5"
        let source = try HDF5File.open(path: reference)
        let file = try HDF5File.create(path: path)
        do {
            let sourceRoot = try source.root(), root = try file.root()
            try root.copyAttributes(from: sourceRoot)
            try root.copyObject("inputs", from: sourceRoot)
            let activations = try root.createGroup("activations")
            for name in names + (extra.map { [$0] } ?? []) {
                let tensor = tensors[name] ?? trace.activations[0].tensor
                let dataset = try activations.createDataset(name, dtype: .f32, shape: tensor.shape)
                try tensor.float32Values().withUnsafeBytes { try dataset.writeAll($0) }
            }
        }
        try file.close()
        return path
    }

    @Test func activationsWithoutOrderAreReadInTheOrderTheirNamesFix() throws {
        for fixture in ["qwen3-tied-f32", "bert-pooler-f32"] {
            let reference = RuntimeTestSupport.trace(fixture)
            let names = try Trace(path: reference).activations.map(\.name)
            // Creation order reversed, so neither creation nor name order (layers.10 < layers.2) gives the forward order.
            let unordered = try writeWithoutOrder(reference, names: names.reversed())
            #expect(try Trace(path: unordered).activations.map(\.name) == names)
            let checkpoint = try RuntimeTestSupport.importFixture(fixture)
            let result = try RuntimeTestSupport.run(Self.verify, [checkpoint, "--trace", unordered])
            #expect(result.status == 0 && result.stdout.contains("PASS"), "\(result.stdout)\(result.stderr)")

            let unknown = try writeWithoutOrder(reference, names: names, extra: "attention_probs")
            expectRefused(try RuntimeTestSupport.run(Self.verify, [checkpoint, "--trace", unknown]),
                          "activations/attention_probs has no order attribute")
        }
        // The prima names of Formats/prima-trace.md §10.3 sort in forward order from any starting order.
        let prima = ["image_encoder.embeddings", "image_encoder.layers.0", "image_encoder.layers.10", "image_encoder.final_norm",
                     "text_encoder.embeddings", "text_encoder.layers.2", "text_encoder.final_norm", "text_encoder.pooler",
                     "alignment.image_global", "alignment.text_global", "alignment.image_local", "alignment.text_local",
                     "image_classifier.logits", "fusion.image_cls", "fusion.image_seq", "fusion.text_cls", "fusion.text_seq",
                     "decoder.embeddings", "decoder.layers.1", "decoder.layers.12", "decoder.final_norm", "class_logits", "class_probs"]
        var generator = SplitMix64(seed: 9)
        var shuffled = prima
        for index in shuffled.indices.reversed() { shuffled.swapAt(index, Int(generator.next() % UInt64(index + 1))) }
        let sorted = shuffled.sorted { Trace.forwardRank(of: $0, prima: true)!.lexicographicallyPrecedes(Trace.forwardRank(of: $1, prima: true)!) }
        #expect(sorted == prima)
        for bad in ["layers.01", "layers.", "layers.x", "layers.-1", "layers.+1", "layers.1e3", "pooler.x", "image_encoder.final_norm"] {
            #expect(Trace.forwardRank(of: bad, prima: false) == nil, "\(bad)")
        }
        for bad in ["final_norm", "decoder.pooler", "fusion.other", "image_encoder.layers.07", "text_encoder.logits"] {
            #expect(Trace.forwardRank(of: bad, prima: true) == nil, "\(bad)")
        }
    }

    @Test func imageIdsThatLookLikeFormulasStayText() throws {
        let checkpoint = try PrimaPipelineTests.assemble()
        let folder = RuntimeTestSupport.temporaryDirectory() + "/cases"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        let image = RuntimeTestSupport.repositoryRoot + "/Fixtures/images/preprocess/small_rgb8.png"
        let ids = ["=HYPERLINK(\"http:x\").png", "+1.png", "-2.png", "@SUM(A1).png"]
        var csv = "patient_id,lesion_id,smoke,drink,background_father,background_mother,age,pesticide,gender,skin_cancer_history,cancer_history,has_piped_water,has_sewage_system,fitspatrick,region,diameter_1,diameter_2,diagnostic,itch,grew,hurt,changed,bleed,elevation,img_id,biopsed\n"
        for (index, id) in ids.enumerated() {
            try FileManager.default.copyItem(atPath: image, toPath: folder + "/" + id)
            let quoted = id.contains("\"") || id.contains(",") ? "\"" + id.replacing("\"", with: "\"\"") + "\"" : id
            csv += "PAT_\(index),\(index),,,,,50,,,,,,,,ARM,,,BCC,False,False,False,False,False,False,\(quoted),True\n"
        }
        try csv.write(toFile: folder + "/metadata.csv", atomically: true, encoding: .utf8)
        let out = RuntimeTestSupport.temporaryDirectory() + "/r.csv"
        let result = try RuntimeTestSupport.run(Self.diagnose, ["--checkpoint", checkpoint, "--folder", folder, "-o", out, "--no-progress"])
        #expect(result.status == 0, "\(result.stderr)")
        let rows = try String(contentsOfFile: out, encoding: .utf8).split(separator: "\r\n").dropFirst()
        #expect(rows.count == ids.count)
        for row in rows {
            #expect(row.hasPrefix("'") || row.hasPrefix("\"'"), "\(row)")
            #expect(!"=+-@".contains(row.first!), "\(row)")
        }
    }
}

/// The lead's findings of the second hostile-input campaign, through the binaries: names from files reach stdout
/// escaped, numeric flags are bounded, kernel pseudo-files are not stored, and a PNG's chunk lengths are checked
/// against the file before libpng allocates them.
@Suite struct SecondCampaignTests {
    static let convert = HostileSmallInputTests.convert
    static let verify = HostileSmallInputTests.verify
    static let diagnose = HostileSmallInputTests.diagnose
    static let craft = RuntimeTestSupport.repositoryRoot + "/Fixtures/hostile/craft_checkpoint.py"
    static let fixture = RuntimeTestSupport.repositoryRoot + "/Fixtures/prima/tiny-prima.h5"
    static let escape = "\u{1B}[2J"

    static func crafted(_ arguments: String...) throws -> String {
        let output = RuntimeTestSupport.temporaryDirectory() + "/crafted.h5"
        let result = try RuntimeTestSupport.run("/usr/bin/python3", [craft, fixture, output] + arguments)
        try #require(result.status == 0, "\(result.stderr)")
        return output
    }

    /// Label names, the metadata text, architecture attributes and problems from the file are escaped on stdout
    /// too, and `--labels` refuses control characters outright.
    @Test func namesFromFilesReachStdoutEscaped() throws {
        let labels = try Self.crafted("file", "prima", "labels.json",
                                      #"[{"code":"ACK","name":"evil\n\u001b[2Jx"},{"code":"BCC","name":"b"},{"code":"MEL","name":"m"},{"code":"NEV","name":"n"},{"code":"SCC","name":"s"},{"code":"SEK","name":"k"}]"#)
        let diagnosed = try RuntimeTestSupport.run(Self.diagnose, ["--checkpoint", labels, "--image", HostileConfigTests.image,
                                                                   "--metadata", try HostileConfigTests.metadata()])
        #expect(diagnosed.status == 0, "\(diagnosed.stderr)")
        #expect(!diagnosed.stdout.contains(Self.escape) && diagnosed.stdout.contains(#"evil\n\u{1B}[2Jx"#), "\(diagnosed.stdout)")

        let architecture = try Self.crafted("attr", "decoder", "architecture", #""qwen3\n\u001b[31mEVIL""#)
        let verified = try RuntimeTestSupport.run(Self.verify, [architecture])
        #expect(verified.status != 0 && !verified.stdout.contains("\u{1B}") && !verified.stdout.contains("\nEVIL"), "\(verified.stdout)")
        // inspect refuses the unknown architecture (every tool validates what it opens), naming it escaped.
        let inspected = try RuntimeTestSupport.run(Self.convert, ["inspect", architecture, "--no-tensors"])
        #expect(!(inspected.stdout + inspected.stderr).contains("\u{1B}")
                && (inspected.stdout + inspected.stderr).contains(#"qwen3\n\u{1B}[31mEVIL"#), "\(inspected.stdout)\(inspected.stderr)")

        let model = RuntimeTestSupport.model
        let imported = try RuntimeTestSupport.run(Self.convert, [
            "import", "--image-encoder", model("dinov3-mlp-reg4-f32"), "--text-encoder", model("bert-mlm-f32"),
            "--decoder", model("qwen3-prima-f32"), "--labels", "ACK=a\nb,BCC=\(Self.escape)", "-o",
            RuntimeTestSupport.temporaryDirectory() + "/p.h5", "--no-progress"])
        #expect(imported.status == 2 && imported.stderr.contains("--labels: entry 1 holds a control character"), "\(imported.stderr)")
    }

    /// `--repeat` and `--max-shard-size` are bounded usage errors, not traps or huge allocations; ArgumentParser's
    /// messages are not prefixed twice.
    @Test func numericFlagsAreBounded() throws {
        let repeated = try RuntimeTestSupport.run(Self.diagnose, ["--checkpoint", Self.fixture, "--image", HostileConfigTests.image,
                                                                  "--metadata", try HostileConfigTests.metadata(), "--repeat", "9999999999999"])
        #expect(repeated.status == 2 && repeated.stderr.contains("--repeat must be in 1...10000"), "\(repeated.stderr)")
        #expect(!repeated.stderr.contains("error: Error:"), "\(repeated.stderr)")
        // A negative value is a value (not a missing one), and a usage error is one line.
        let negative = try RuntimeTestSupport.run(Self.diagnose, ["--checkpoint", Self.fixture, "--repeat", "-1"])
        #expect(negative.status == 2 && negative.stderr == "prima-diagnose: error: --repeat must be in 1...10000 (see prima-diagnose --help)\n",
                "\(negative.stderr)")
        let verified = try RuntimeTestSupport.run(Self.verify, [Self.fixture, "--trace", RuntimeTestSupport.trace("prima-tiny-bert"),
                                                                "--repeat", "100000"])
        #expect(verified.status == 2 && verified.stderr.contains("--repeat must be in 1...10000"), "\(verified.stderr)")
        // An output directory that cannot hold files is a bad request (exit 2), not a failed job.
        let unwritable = try RuntimeTestSupport.run(RuntimeTestSupport.binary("prima-quantize"), ["--int8", Self.fixture, "-o", "/proc/self/x.h5"])
        #expect(unwritable.status == 2 && unwritable.stderr.contains("cannot create a temporary directory in /proc/self"), "\(unwritable.stderr)")
        let sharded = try RuntimeTestSupport.run(Self.convert, ["export", Self.fixture, "--component", "decoder", "-o",
                                                                RuntimeTestSupport.temporaryDirectory() + "/x",
                                                                "--max-shard-size", "99999999999999999999GB"])
        #expect(sharded.status == 2 && sharded.stderr.contains("--max-shard-size"), "\(sharded.stderr)")
    }

    /// A model directory whose auxiliary file is a symlink to /proc/self/environ: the read length differs from the
    /// file's size, so it is refused instead of storing the process environment in the checkpoint.
    @Test func kernelPseudoFilesAreNotStored() throws {
        let directory = RuntimeTestSupport.temporaryDirectory() + "/model"
        try FileManager.default.copyItem(atPath: RuntimeTestSupport.model("qwen3-tied-f32"), toPath: directory)
        try FileManager.default.createSymbolicLink(atPath: directory + "/vocab.txt", withDestinationPath: "/proc/self/environ")
        let output = RuntimeTestSupport.temporaryDirectory() + "/p.h5"
        let result = try RuntimeTestSupport.run(Self.convert, ["import", directory, "-o", output, "--no-progress"])
        #expect(result.status == 2 && result.stderr.contains("vocab.txt: read") && result.stderr.contains("pseudo-file"), "\(result.stderr)")
        #expect(!FileManager.default.fileExists(atPath: output))
    }

    /// A weights file that is a symbolic-link loop is named as one, and an index whose shard is the index itself or
    /// config.json is refused from the shard's name rather than from a nonsensical header.
    @Test func weightFilesSayWhatIsWrongWithThem() throws {
        let looped = RuntimeTestSupport.temporaryDirectory() + "/model"
        try FileManager.default.createDirectory(atPath: looped, withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: RuntimeTestSupport.model("qwen3-tied-f32") + "/config.json", toPath: looped + "/config.json")
        try FileManager.default.createSymbolicLink(atPath: looped + "/model.safetensors", withDestinationPath: looped + "/model.safetensors")
        let loop = try RuntimeTestSupport.run(Self.convert, ["import", looped, "-o", looped + ".h5", "--no-progress"])
        #expect(loop.status == 2 && loop.stderr.lowercased().contains("too many levels of symbolic links"), "\(loop.stderr)")

        let sharded = RuntimeTestSupport.temporaryDirectory() + "/sharded"
        try FileManager.default.copyItem(atPath: RuntimeTestSupport.model("qwen3-untied-f16-sharded"), toPath: sharded)
        let indexPath = sharded + "/model.safetensors.index.json"
        let index = try String(contentsOfFile: indexPath, encoding: .utf8)
        let shard = try #require(index.range(of: #"model-[0-9]+-of-[0-9]+\.safetensors"#, options: .regularExpression))
        try index.replacingOccurrences(of: String(index[shard]), with: "config.json").write(toFile: indexPath, atomically: true, encoding: .utf8)
        let wrong = try RuntimeTestSupport.run(Self.convert, ["import", sharded, "-o", sharded + ".h5", "--no-progress"])
        #expect(wrong.status == 2 && wrong.stderr.contains("shard \"config.json\" is not a .safetensors file"), "\(wrong.stderr)")
    }

    /// import refuses, writing nothing, a checkpoint every reader would refuse: here a decoder tokenizer with an
    /// added token whose id is past vocab_size.
    @Test func importRefusesWhatEveryReaderRefuses() throws {
        let directory = RuntimeTestSupport.temporaryDirectory() + "/decoder"
        try FileManager.default.copyItem(atPath: RuntimeTestSupport.model("qwen3-tied-f32"), toPath: directory)
        let path = directory + "/tokenizer.json"
        var tokenizer = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as? [String: Any])
        var added = tokenizer["added_tokens"] as? [[String: Any]] ?? []
        added.append(["id": 100_000, "content": "<|far|>", "single_word": false, "lstrip": false, "rstrip": false,
                      "normalized": false, "special": true])
        tokenizer["added_tokens"] = added
        try JSONSerialization.data(withJSONObject: tokenizer).write(to: URL(fileURLWithPath: path))
        let output = RuntimeTestSupport.temporaryDirectory() + "/out.h5"
        let result = try RuntimeTestSupport.run(Self.convert, ["import", directory, "-o", output, "--no-progress"])
        #expect(result.status == 2 && result.stderr.contains("at or above vocab_size") && result.stderr.contains("nothing was written"),
                "\(result.stderr)")
        #expect(!FileManager.default.fileExists(atPath: output))
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: (output as NSString).deletingLastPathComponent)
        #expect(!leftovers.contains { $0.contains(".prima-tmp-") }, "\(leftovers)")
    }

    /// Groups the format does not define under a component or /prima (an adapter put in /prima/lora would silently
    /// not apply) are refused by every tool that loads them.
    @Test func undefinedChildGroupsAreRefused() throws {
        for (group, message) in [("prima/lora", "prima: lora is not a child of a /prima group (§8)"),
                                  ("decoder/extra", "decoder: extra is not a child of a component group (§3.2)")] {
            let crafted = RuntimeTestSupport.temporaryDirectory() + "/child.h5"
            let script = "import shutil, sys, h5py\nshutil.copyfile(sys.argv[1], sys.argv[2])\nwith h5py.File(sys.argv[2], 'r+') as f:\n    f.create_group(sys.argv[3])\n"
            #expect(try RuntimeTestSupport.run("/usr/bin/python3", ["-c", script, Self.fixture, crafted, group]).status == 0)
            let diagnosed = try RuntimeTestSupport.run(Self.diagnose, ["--checkpoint", crafted, "--image", HostileConfigTests.image,
                                                                       "--metadata", try HostileConfigTests.metadata()])
            #expect(diagnosed.status == 2 && diagnosed.stderr.contains(message), "\(diagnosed.stderr)")
            let inspected = try RuntimeTestSupport.run(Self.convert, ["inspect", crafted])
            #expect(inspected.status == 2 && inspected.stderr.contains(message), "\(inspected.stderr)")
        }
    }

    /// A 60-byte PNG declaring a 2 GiB text chunk is refused from the chunk walk, under a 1 GB address-space limit.
    @Test func pngChunkLengthsAreCheckedBeforeAllocation() throws {
        var png = InputLimitTests.pngHeader(width: 8, height: 8, bitDepth: 8, colorType: 2)
        png.removeLast(12)  // the empty IEND
        png.append(contentsOf: [0x7F, 0xFF, 0xFF, 0xFF] + Array("tEXt".utf8) + Array(repeating: 0, count: 20))
        let path = RuntimeTestSupport.temporaryDirectory() + "/chunk.png"
        try png.write(to: URL(fileURLWithPath: path))
        try InputLimitTests.expectRefusal(Self.diagnose, ["--checkpoint", Self.fixture, "--image", path, "--metadata", try HostileConfigTests.metadata()],
                                          contains: [path, "truncated PNG: the file ends after \(png.count) bytes"], seconds: 15)
    }
}
