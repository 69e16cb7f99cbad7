import Foundation
import PrimaJSON
import Testing

/// The `prima-convert` binary end to end: commands, overwrite rules, exit codes, inspect output, and
/// third-party readers (h5py, transformers) when the machine has them.
@Suite struct ToolTests {
    @Test func importInspectExportThroughTheBinary() throws {
        let work = TestSupport.temporaryDirectory()
        let checkpoint = work + "/prima.h5"
        let imported = try TestSupport.convert(
            "import", "--image-encoder", TestSupport.fixture("dinov3-gated-noreg-f32").directory,
            "--text-encoder", TestSupport.fixture("modernbert-mlm-f32").directory,
            "--decoder", TestSupport.fixture("qwen3-untied-f16-sharded").directory, "-o", checkpoint)
        #expect(imported.status == 0, "\(imported.stderr)")
        #expect(imported.stdout.contains("image_encoder: dinov3_vit"))

        let text = try TestSupport.convert("inspect", checkpoint)
        #expect(text.status == 0)
        #expect(text.stdout.contains("decoder: qwen3"))
        #expect(text.stdout.contains("layers.0.attn.qkv.weight"))
        #expect(text.stdout.contains("mlm.decoder.weight = embed.tokens (not stored in source)"))

        let json = try TestSupport.convert("inspect", checkpoint, "--json")
        #expect(json.status == 0)
        let root = try #require(try JSON.parse(json.stdout).object)
        let components = try #require(root["components"]?.object)
        #expect(components.keys == ["image_encoder", "text_encoder", "decoder"])
        let decoder = try #require(components["decoder"]?.object)
        #expect(decoder["hf_prefix"]?.string == "model.")
        #expect(decoder["config"]?.object?["head_dim"]?.int == 16)
        #expect((decoder["source_files"]?.array?.count ?? 0) >= 5)  // 3 shards, the index, config and tokenizer files

        let exported = try TestSupport.convert("export", checkpoint, "--component", "text_encoder", "-o", work + "/text")
        #expect(exported.status == 0, "\(exported.stderr)")
        #expect(FileManager.default.fileExists(atPath: work + "/text/model.safetensors"))
        #expect(FileManager.default.fileExists(atPath: work + "/text/tokenizer.json"))
    }

    @Test func refusesToOverwriteUnlessForced() throws {
        let work = TestSupport.temporaryDirectory()
        let checkpoint = work + "/m.h5"
        let source = TestSupport.fixture("bert-pooler-f32").directory
        #expect(try TestSupport.convert("import", source, "-o", checkpoint).status == 0)
        let before = try Data(contentsOf: URL(fileURLWithPath: checkpoint))
        let again = try TestSupport.convert("import", source, "-o", checkpoint)
        #expect(again.status == 2)
        #expect(again.stderr.contains("already exists"))
        #expect(try Data(contentsOf: URL(fileURLWithPath: checkpoint)) == before)
        #expect(try TestSupport.convert("import", source, "-o", checkpoint, "--force").status == 0)

        #expect(try TestSupport.convert("export", checkpoint, "--component", "text_encoder", "-o", work + "/out").status == 0)
        let refused = try TestSupport.convert("export", checkpoint, "--component", "text_encoder", "-o", work + "/out")
        #expect(refused.status == 2 && refused.stderr.contains("not empty"))
        #expect(try TestSupport.convert("export", checkpoint, "--component", "text_encoder", "-o", work + "/out", "--force").status == 0)
        #expect(try FileManager.default.contentsOfDirectory(atPath: work).sorted() == ["m.h5", "out"])
    }

    @Test func usageErrorsExitWithTwo() throws {
        #expect(try TestSupport.convert("import").status == 2)
        #expect(try TestSupport.convert("frobnicate").status == 2)
        #expect(try TestSupport.convert("export", "x.h5", "--component", "eyes", "-o", "/tmp/x").status == 2)
        let missing = try TestSupport.convert("inspect", "/nonexistent/file.h5")
        #expect(missing.status == 2 && missing.stderr.contains("/nonexistent/file.h5"))
        let help = try TestSupport.convert("--help")
        #expect(help.status == 0 && help.stdout.contains("import"))
    }

    @Test func missingComponentIsABadInput() throws {
        let work = TestSupport.temporaryDirectory()
        #expect(try TestSupport.convert("import", TestSupport.fixture("qwen3-tied-f32").directory, "-o", work + "/q.h5").status == 0)
        let result = try TestSupport.convert("export", work + "/q.h5", "--component", "image_encoder", "-o", work + "/img")
        #expect(result.status == 2 && result.stderr.contains("no image_encoder component"))
    }

    /// Formats/python/prima_h5.py, written from the spec alone, reads and verifies every tensor of our files.
    @Test func h5pyReaderReadsOurCheckpoints() throws {
        guard let python = TestSupport.python(with: ["h5py", "numpy"]) else {
            print("note: h5py not installed; Formats/python/prima_h5.py was not run (set PRIMA_PYTHON to a Python with h5py)")
            return
        }
        let work = TestSupport.temporaryDirectory()
        for fixture in TestSupport.manifest {
            let path = work + "/\(fixture.name).h5"
            #expect(try TestSupport.convert("import", fixture.directory, "-o", path).status == 0)
            let result = try TestSupport.run(python, [TestSupport.repositoryRoot + "/Formats/python/prima_h5.py", path, "--verify"])
            #expect(result.status == 0, "\(fixture.name): \(result.stderr)")
        }
    }

    /// transformers loads every export and finds every tensor bit-identical to the original (when installed).
    @Test func transformersLoadsEveryExport() throws {
        guard let python = TestSupport.python(with: ["torch", "transformers", "safetensors"]) else {
            print("note: torch/transformers not installed; exports were not loaded with transformers here")
            return
        }
        let work = TestSupport.temporaryDirectory()
        for fixture in TestSupport.manifest {
            let path = work + "/\(fixture.name).h5"
            #expect(try TestSupport.convert("import", fixture.directory, "-o", path).status == 0)
            let role = ["dinov3_vit": "image_encoder", "qwen3": "decoder"][fixture.modelType] ?? "text_encoder"
            #expect(try TestSupport.convert("export", path, "--component", role, "-o", work + "/\(fixture.name)").status == 0)
            let result = try TestSupport.run(python, [TestSupport.repositoryRoot + "/Formats/python/compare_hf_dirs.py",
                                                      fixture.directory, work + "/\(fixture.name)"])
            #expect(result.status == 0, "\(fixture.name): \(result.stdout) \(result.stderr)")
        }
    }
}
