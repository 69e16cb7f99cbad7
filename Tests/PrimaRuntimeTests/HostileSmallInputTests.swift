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
