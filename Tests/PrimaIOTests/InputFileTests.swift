import Foundation
import PrimaTestSupport
import Testing

/// Only regular files are inputs: a FIFO, a device, a directory or a symbolic link loop gets one line saying what it
/// is, at once (exit 2), from every tool and for every kind of input.
@Suite struct InputFileTests {
    /// A work directory with a FIFO, a symbolic link loop and a directory named like checkpoints.
    static func hostileNames() -> (work: String, fifo: String, loop: String, directory: String) {
        let work = IOSupport.work()
        IOSupport.mkfifo(work + "/fifo.h5")
        IOSupport.symlink(work + "/loop-b.h5", work + "/loop-a.h5")
        IOSupport.symlink(work + "/loop-a.h5", work + "/loop-b.h5")
        try? FileManager.default.createDirectory(atPath: work + "/dir.h5", withIntermediateDirectories: false)
        return (work, work + "/fifo.h5", work + "/loop-a.h5", work + "/dir.h5")
    }

    @Test func checkpointsThatAreNotRegularFiles() throws {
        let (work, fifo, loop, directory) = Self.hostileNames()
        defer { try? FileManager.default.removeItem(atPath: work) }
        let cases: [(String, String)] = [(fifo, "is a FIFO, not a regular file"), (loop, "too many levels of symbolic links"),
                                         (directory, "is a directory, not a regular file")]
        for (path, message) in cases {
            IOSupport.expectRefusal(try IOSupport.run("prima-verify", [path]), [path + ": " + message])
            IOSupport.expectRefusal(try IOSupport.run("prima-convert", ["inspect", path]), [path + ": " + message])
            IOSupport.expectRefusal(try IOSupport.run("prima-convert", ["export", path, "--component", "decoder", "-o", work + "/out"]),
                                    [path + ": " + message])
            IOSupport.expectRefusal(try IOSupport.run("prima-quantize", ["--int8", path, "-o", work + "/q.h5"]), [path + ": " + message])
            IOSupport.expectRefusal(try IOSupport.run("prima-diagnose", ["--checkpoint", path, "--folder", IOSupport.cases, "--no-progress"]),
                                    [path + ": " + message])
        }
        #expect(!FileManager.default.fileExists(atPath: work + "/out") && !FileManager.default.fileExists(atPath: work + "/q.h5"))
        #expect(IOSupport.temporaries(in: work).isEmpty)
    }

    @Test func traceThatIsAFIFO() throws {
        let (work, fifo, _, _) = Self.hostileNames()
        defer { try? FileManager.default.removeItem(atPath: work) }
        let result = try IOSupport.run("prima-verify", [IOSupport.tinyPrima, "--trace", fifo])
        IOSupport.expectRefusal(result, [fifo + ": is a FIFO, not a regular file"])
    }

    /// A case folder whose metadata.csv is `replace`d (a FIFO, /dev/zero).
    static func caseFolder(in work: String, metadata replace: (String) -> Void) throws -> String {
        let folder = work + "/cases"
        try IOSupport.copy(IOSupport.cases, folder)
        try FileManager.default.removeItem(atPath: folder + "/metadata.csv")
        replace(folder + "/metadata.csv")
        return folder
    }

    @Test func metadataCSVThatIsAFIFOOrADevice() throws {
        let work = IOSupport.work()
        defer { try? FileManager.default.removeItem(atPath: work) }
        let fifoFolder = try Self.caseFolder(in: work + "/a", metadata: IOSupport.mkfifo) 
        let fifoRun = try IOSupport.run("prima-diagnose", ["--checkpoint", IOSupport.tinyPrima, "--folder", fifoFolder,
                                                            "-o", work + "/r.csv", "--no-progress"])
        IOSupport.expectRefusal(fifoRun, [fifoFolder + "/metadata.csv: is a FIFO, not a regular file"])
        let zeroFolder = try Self.caseFolder(in: work + "/b") { IOSupport.symlink("/dev/zero", $0) }
        let zeroRun = try IOSupport.run("prima-diagnose", ["--checkpoint", IOSupport.tinyPrima, "--folder", zeroFolder,
                                                            "-o", work + "/r.csv", "--no-progress"])
        IOSupport.expectRefusal(zeroRun, [zeroFolder + "/metadata.csv: is a character device, not a regular file"])
        #expect(!FileManager.default.fileExists(atPath: work + "/r.csv"))
        IOSupport.symlink(work + "/loop", work + "/loop")
        let loopRun = try IOSupport.run("prima-diagnose", ["--checkpoint", IOSupport.tinyPrima, "--folder", work + "/loop", "--no-progress"])
        IOSupport.expectRefusal(loopRun, [work + "/loop: too many levels of symbolic links"])
    }

    @Test func imageAndMetadataRecordThatAreFIFOs() throws {
        let work = IOSupport.work()
        defer { try? FileManager.default.removeItem(atPath: work) }
        IOSupport.mkfifo(work + "/image.png")
        IOSupport.mkfifo(work + "/record.json")
        let image = IOSupport.cases + "/sample.png", record = IOSupport.cases + "/sample.json"
        let badImage = try IOSupport.run("prima-diagnose", ["--checkpoint", IOSupport.tinyPrima, "--image", work + "/image.png",
                                                             "--metadata", record])
        IOSupport.expectRefusal(badImage, [work + "/image.png: ", "is a FIFO, not a regular file"])
        let badRecord = try IOSupport.run("prima-diagnose", ["--checkpoint", IOSupport.tinyPrima, "--image", image,
                                                              "--metadata", work + "/record.json"])
        IOSupport.expectRefusal(badRecord, [work + "/record.json: is a FIFO, not a regular file"])
        let directoryImage = try IOSupport.run("prima-diagnose", ["--checkpoint", IOSupport.tinyPrima, "--image", work,
                                                                   "--metadata", record])
        IOSupport.expectRefusal(directoryImage, [work + ": ", "is a directory, not a regular file"])
    }

    /// In a batch, a case whose image is a FIFO is skipped with the reason, like any unreadable image.
    @Test func batchImageThatIsAFIFO() throws {
        let work = IOSupport.work()
        defer { try? FileManager.default.removeItem(atPath: work) }
        let folder = work + "/cases"
        try IOSupport.copy(IOSupport.cases, folder)
        let image = folder + "/imgs/PAT_1260_1103_421.png"
        try FileManager.default.removeItem(atPath: image)
        IOSupport.mkfifo(image)
        let result = try IOSupport.run("prima-diagnose", ["--checkpoint", IOSupport.tinyPrima, "--folder", folder, "--no-progress",
                                                          "-o", work + "/r.csv"], deadline: 60)
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stderr.contains("skipped: \(image): cannot read the file (is a FIFO, not a regular file)"), "\(result.stderr)")
        #expect(result.stdout.contains("failed 1"))
    }

    @Test func tokenizerThatIsAFIFOOrALoop() throws {
        let (work, fifo, loop, _) = Self.hostileNames()
        defer { try? FileManager.default.removeItem(atPath: work) }
        IOSupport.expectRefusal(try IOSupport.run("prima-convert", ["tokenize", fifo]), [fifo + ": ", "is a FIFO, not a regular file"])
        IOSupport.expectRefusal(try IOSupport.run("prima-convert", ["tokenize", loop]), [loop + ": ", "too many levels of symbolic links"])
    }

    /// Files read from a Hugging Face directory: a FIFO as config.json, tokenizer.json or the weights.
    @Test func modelDirectoryFilesThatAreFIFOs() throws {
        let work = IOSupport.work()
        defer { try? FileManager.default.removeItem(atPath: work) }
        for name in ["config.json", "tokenizer.json", "model.safetensors"] {
            let directory = work + "/" + name.replacingOccurrences(of: ".", with: "-")
            try IOSupport.copy(IOSupport.models + "/bert-pooler-f32", directory)
            try FileManager.default.removeItem(atPath: directory + "/" + name)
            IOSupport.mkfifo(directory + "/" + name)
            let result = try IOSupport.run("prima-convert", ["import", directory, "-o", work + "/m.h5", "--no-progress"])
            IOSupport.expectRefusal(result, [directory + "/" + name + ": ", "is a FIFO, not a regular file"])
        }
        #expect(!FileManager.default.fileExists(atPath: work + "/m.h5"))
    }

    /// A PRIMA import's heads file and metadata schema as FIFOs.
    @Test func headsFileAndSchemaThatAreFIFOs() throws {
        let work = IOSupport.work()
        defer { try? FileManager.default.removeItem(atPath: work) }
        IOSupport.mkfifo(work + "/heads.safetensors")
        IOSupport.mkfifo(work + "/schema.json")
        let prima = ["import", "--image-encoder", IOSupport.models + "/dinov3-mlp-reg4-f32", "--text-encoder", IOSupport.models + "/bert-mlm-f32",
                     "--decoder", IOSupport.models + "/qwen3-prima-f32", "--labels", "ACK,BCC,MEL,NEV,SCC,SEK", "-o", work + "/p.h5", "--no-progress"]
        IOSupport.expectRefusal(try IOSupport.run("prima-convert", prima + ["--heads", work + "/heads.safetensors"]),
                                [work + "/heads.safetensors: is a FIFO, not a regular file"])
        IOSupport.expectRefusal(try IOSupport.run("prima-convert", prima + ["--metadata-schema", work + "/schema.json"]),
                                [work + "/schema.json: is a FIFO, not a regular file"])
        #expect(!FileManager.default.fileExists(atPath: work + "/p.h5"))
    }
}
