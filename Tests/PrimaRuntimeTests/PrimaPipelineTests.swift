import Foundation
import PrimaCheckpoint
import PrimaConvert
import PrimaJSON
import PrimaModels
import PrimaSafetensors
import PrimaTensor
import PrimaTestSupport
import Testing

/// Assembly of PRIMA checkpoints (Formats/prima-checkpoint.md §8) and the heads' forward passes.
@Suite struct PrimaPipelineTests {
    /// Four PAD-UFES-20 classes whose first tokens differ with the qwen3 fixture tokenizer (MEL/NEV and SCC/SEK clash).
    static let labels = "ACK,BCC,MEL,SCC"

    /// Assembles the tiny BERT-text PRIMA checkpoint with `--labels` (and optionally a heads file).
    static func assemble(heads: String? = nil, labels: String = labels, seed: Int = 0, decoder: String = "qwen3-tied-f32") throws -> String {
        let path = RuntimeTestSupport.temporaryDirectory() + "/prima.h5"
        let options = PrimaAssemblyOptions(labels: try PrimaAssemblyOptions.parseLabels(labels), headsFile: heads, initSeed: seed)
        _ = try Importer.run([ImportSource(directory: RuntimeTestSupport.model("dinov3-mlp-reg4-f32"), role: .imageEncoder),
                              ImportSource(directory: RuntimeTestSupport.model("bert-mlm-f32"), role: .textEncoder),
                              ImportSource(directory: RuntimeTestSupport.model(decoder), role: .decoder)],
                             output: path, overwrite: false, showProgress: false, prima: options, warn: { _ in })
        return path
    }

    /// Writes `tensors` (f32) to a safetensors file.
    static func writeHeads(_ tensors: [(String, Tensor)], to path: String) throws {
        let writer = try SafetensorsWriter(path: path, tensors: tensors.map { SafetensorsTensorSpec(name: $0.0, dtype: .f32, shape: $0.1.shape) })
        for (_, tensor) in tensors { try tensor.withUnsafeBytes { try writer.append($0) } }
        try writer.finish()
    }

    @Test func seededInitialisationFollowsTheSpecification() throws {
        let checkpoint = try Checkpoint(path: try Self.assemble())
        let group = try checkpoint.group("prima")
        #expect(try group.group.intAttribute("heads_trained") == 0)
        #expect(try group.group.intAttribute("d_image") == 32 && group.group.intAttribute("d_llm") == 32)
        let initialised = try JSON.parse(try group.attribute("initialised_tensors")).array?.compactMap(\.string) ?? []
        #expect(initialised.count == 23 && initialised.first == "alignment.image_proj.weight")

        // SplitMix64 from state 0 first outputs 0xE220A8397B1DCDAF: u = 0xE220A8 · 2⁻²⁴, value (2u − 1) / √32.
        let weights = try ModelWeights(component: group, excluding: [PrimaHeadsConfig.classTokenIdsName])
        let first = try weights("alignment.image_proj.weight").float32Values()[0]
        let u = Float(0xE2_20A8) * 0x1p-24
        #expect(first == (2 * u - 1) * (1 / Float(32).squareRoot()))
        // Every layer tensor stays inside ±1/√fan_in; the conv's fan-in is channels × kernel.
        let conv = try weights("fusion.image_seq_projector.conv.weight").float32Values()
        #expect(conv.allSatisfy { abs($0) <= 1 / Float(128).squareRoot() } && conv.contains { abs($0) > 0.05 })

        // Special tokens: the decoder's embedding of " image" (one token, 380) and " text" (594), twice each.
        let decoder = try ModelWeights(component: try checkpoint.component(.decoder))
        let image = try decoder.embeddingRows("embed.tokens", [380]).float32Values()
        let text = try decoder.embeddingRows("embed.tokens", [594]).float32Values()
        #expect(try weights(PrimaHeadsConfig.specialTokensName).float32Values() == image + image + text + text)

        // Class tokens: the first token of " " + code.
        let heads = try PrimaHeads(checkpoint: checkpoint)
        #expect(heads.classTokenIds == [423, 424, 220, 349])
        #expect(heads.labels.map(\.name) == ["Actinic keratosis", "Basal cell carcinoma", "Melanoma", "Squamous cell carcinoma"])
        #expect(!heads.trained)
        #expect(heads.prompt == PrimaAssemblyOptions.defaultPrompt && heads.answerPrefix == " Diagnosis:")

        // The same seed gives the same heads; another seed other ones.
        let again = try ModelWeights(component: try Checkpoint(path: try Self.assemble()).group("prima"), excluding: [PrimaHeadsConfig.classTokenIdsName])
        let other = try ModelWeights(component: try Checkpoint(path: try Self.assemble(seed: 7)).group("prima"), excluding: [PrimaHeadsConfig.classTokenIdsName])
        #expect(try again("fusion.text_seq_projector.fc.weight").float32Values() == weights("fusion.text_seq_projector.fc.weight").float32Values())
        #expect(try other("fusion.text_seq_projector.fc.weight").float32Values() != weights("fusion.text_seq_projector.fc.weight").float32Values())
    }

    @Test func headsFromAFileReplaceTheInitialisationOfThoseTensorsOnly() throws {
        let directory = RuntimeTestSupport.temporaryDirectory()
        let given = RuntimeTestSupport.random([256, 32], seed: 3)
        try Self.writeHeads([("alignment.text_proj.weight", given)], to: directory + "/partial.safetensors")
        let partial = try Checkpoint(path: try Self.assemble(heads: directory + "/partial.safetensors"))
        let seeded = try Checkpoint(path: try Self.assemble())
        let ignored: Set<String> = [PrimaHeadsConfig.classTokenIdsName]
        let a = try ModelWeights(component: try partial.group("prima"), excluding: ignored)
        let b = try ModelWeights(component: try seeded.group("prima"), excluding: ignored)
        #expect(try a("alignment.text_proj.weight").float32Values() == given.float32Values())
        // The stream advanced over the given tensor, so every other one is as without the file.
        for spec in PrimaHeadsConfig(classCount: 4, imageWidth: 32, textWidth: 32, decoderWidth: 32).floatTensors
        where spec.name != "alignment.text_proj.weight" {
            #expect(try a(spec.name).float32Values() == b(spec.name).float32Values(), "\(spec.name)")
        }
        #expect(try partial.group("prima").group.intAttribute("heads_trained") == 0)

        // All of them given: trained, nothing initialised, the file's digest recorded.
        let config = PrimaHeadsConfig(classCount: 4, imageWidth: 32, textWidth: 32, decoderWidth: 32)
        let all = config.floatTensors.enumerated().map { ($0.element.name, RuntimeTestSupport.random($0.element.shape, seed: UInt64($0.offset))) }
        try Self.writeHeads(all, to: directory + "/all.safetensors")
        let full = try Checkpoint(path: try Self.assemble(heads: directory + "/all.safetensors")).group("prima")
        #expect(try full.group.intAttribute("heads_trained") == 1)
        #expect(try full.attribute("initialised_tensors") == "[]")
        #expect(try full.attribute("heads_file").contains("\"sha256\""))
    }

    @Test func convolutionProjectorsEqualPlainConvolutions() throws {
        let heads = try PrimaHeads(checkpoint: try Checkpoint(path: try Self.assemble()))
        let weights = try ModelWeights(component: try Checkpoint(path: try Self.assemble()).group("prima"),
                                       excluding: [PrimaHeadsConfig.classTokenIdsName])
        let c = 32, d = 32
        // Image: a 5 × 3 grid; the odd last row and column are dropped → 2 × 1 outputs.
        let (h, w) = (5, 3)
        let patches = RuntimeTestSupport.random([h * w, c], seed: 11)
        let kernel = try weights("fusion.image_seq_projector.conv.weight").float32Values()     // [d, c, 2, 2]
        let bias = try weights("fusion.image_seq_projector.conv.bias").float32Values()
        let x = patches.float32Values()
        var conv: [Float] = []
        for i in 0..<(h / 2) { for j in 0..<(w / 2) { for o in 0..<d {
            var sum = Double(bias[o])
            for ch in 0..<c { for ky in 0..<2 { for kx in 0..<2 {
                sum += Double(kernel[((o * c + ch) * 2 + ky) * 2 + kx]) * Double(x[((2 * i + ky) * w + 2 * j + kx) * c + ch])
            } } }
            conv.append(Float(sum))
        } } }
        let expected = Linear.reference(Elementwise.apply(.gelu, Tensor(shape: [2, d], float32: conv)),
                                        weight: try weights("fusion.image_seq_projector.fc.weight"),
                                        bias: try weights("fusion.image_seq_projector.fc.bias"))
        let ours = try heads.projectImageSequence(patches, gridHeight: h, gridWidth: w)
        #expect(ours.shape == [2, d])
        #expect(RuntimeTestSupport.maxDifference(ours, expected) < 1e-5)

        // Text: 5 tokens → 2 outputs (the last token dropped); 1 token → none.
        let tokens = RuntimeTestSupport.random([5, c], seed: 12)
        let tKernel = try weights("fusion.text_seq_projector.conv.weight").float32Values()    // [d, c, 2]
        let tBias = try weights("fusion.text_seq_projector.conv.bias").float32Values()
        let t = tokens.float32Values()
        var tConv: [Float] = []
        for j in 0..<2 { for o in 0..<d {
            var sum = Double(tBias[o])
            for ch in 0..<c { for k in 0..<2 { sum += Double(tKernel[(o * c + ch) * 2 + k]) * Double(t[(2 * j + k) * c + ch]) } }
            tConv.append(Float(sum))
        } }
        let tExpected = Linear.reference(Elementwise.apply(.gelu, Tensor(shape: [2, d], float32: tConv)),
                                         weight: try weights("fusion.text_seq_projector.fc.weight"),
                                         bias: try weights("fusion.text_seq_projector.fc.bias"))
        #expect(RuntimeTestSupport.maxDifference(try heads.projectTextSequence(tokens), tExpected) < 1e-5)
        #expect(try heads.projectTextSequence(RuntimeTestSupport.random([1, c], seed: 13)).shape == [0, d])
    }

    @Test func importNoMetadataStoresWhatTheDecoderReads() throws {
        // Heads trained without the metadata (stage 3 --no-metadata, here or in the reference trainer) come back with
        // decoder_inputs "image" (Formats §8); without the flag the attribute is absent, which reads as the full model.
        let convert = RuntimeTestSupport.binary("prima-convert")
        let directory = RuntimeTestSupport.temporaryDirectory()
        let roles = ["--image-encoder", RuntimeTestSupport.model("dinov3-mlp-reg4-f32"),
                     "--text-encoder", RuntimeTestSupport.model("bert-mlm-f32"),
                     "--decoder", RuntimeTestSupport.model("qwen3-tied-f32"), "--labels", Self.labels]
        for (flags, expected) in [([], PrimaDecoderInputs.imageAndMetadata), (["--no-metadata"], .image)] {
            let output = directory + "/prima\(flags.count).h5"
            let result = try RuntimeTestSupport.run(convert, ["import"] + roles + flags + ["-o", output, "--no-progress"])
            #expect(result.status == 0, "\(result.stderr)")
            let group = try Checkpoint(path: output).group("prima").group
            #expect(group.hasAttribute(PrimaDecoderInputs.attributeName) == !flags.isEmpty)
            #expect(try PrimaDecoderInputs.read(from: group, origin: output) == expected)
        }
    }

    @Test func assemblyRefusesBadRequestsAndLeavesNothing() throws {
        let convert = RuntimeTestSupport.binary("prima-convert")
        let directory = RuntimeTestSupport.temporaryDirectory()
        let output = directory + "/out.h5"
        let roles = ["--image-encoder", RuntimeTestSupport.model("dinov3-mlp-reg4-f32"),
                     "--text-encoder", RuntimeTestSupport.model("bert-mlm-f32"),
                     "--decoder", RuntimeTestSupport.model("qwen3-tied-f32"), "-o", output]
        try Self.writeHeads([("alignment.image_proj.wieght", RuntimeTestSupport.random([256, 32], seed: 1))], to: directory + "/typo.safetensors")
        try Self.writeHeads([("image_classifier.weight", RuntimeTestSupport.random([6, 32], seed: 1))], to: directory + "/shape.safetensors")
        let cases: [([String], String)] = [
            (roles + ["--labels", "ACK,BCC,MEL,NEV,SCC,SEK"], "classes MEL and NEV share their first token 220"),
            (roles + ["--labels", "ACK,ACK"], "class ACK is given twice"),
            (roles + ["--labels", "ACK"], "at least two classes"),
            (roles + ["--labels", Self.labels, "--heads", directory + "/typo.safetensors"], "alignment.image_proj.wieght is not a PRIMA head"),
            (roles + ["--labels", Self.labels, "--heads", directory + "/shape.safetensors"], "image_classifier.weight has shape [6, 32], expected [4, 32]"),
            (roles + ["--labels", Self.labels, "--heads", directory + "/missing.safetensors"], "missing.safetensors"),
            (Array(roles[2...]) + ["--labels", Self.labels], "give --image-encoder, --text-encoder and --decoder"),
            (roles + ["--heads", directory + "/typo.safetensors"], "--heads needs --labels"),
            (roles + ["--no-metadata"], "--no-metadata needs --labels"),
        ]
        for (arguments, message) in cases {
            let result = try RuntimeTestSupport.run(convert, ["import"] + arguments)
            #expect(result.status == 2, "\(arguments.suffix(3)): \(result.stderr)")
            #expect(result.stderr.contains(message), "\(result.stderr)")
            #expect(result.stderr.split(separator: "\n").count == 1, "\(result.stderr)")
            #expect(!FileManager.default.fileExists(atPath: output))
            #expect(try FileManager.default.contentsOfDirectory(atPath: directory).allSatisfy { $0.hasSuffix(".safetensors") })
        }
    }
}
