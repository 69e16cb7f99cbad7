import Foundation
import PrimaTestSupport
import Testing

/// What is inside an HDF5 file is never trusted (Formats/prima-checkpoint.md, "Untrusted files"): crafted
/// checkpoints and traces from Fixtures/hostile/make_hdf5_cases.py, each with one defect, go through every tool
/// that opens them; byte-flipped copies of a checkpoint and of an h5py-default trace never crash a tool.
@Suite struct HostileHDF5Tests {
    static let python = "/usr/bin/python3"
    static let image = RuntimeTestSupport.repositoryRoot + "/Fixtures/images/preprocess/scene_rgb8.png"
    static let goodTrace = RuntimeTestSupport.trace("prima-tiny-bert")
    static let marker = "OUTSIDE-SECRET!!"

    /// The generated cases (once per test run), or why they could not be made.
    static let cases: Result<String, GenerationError> = {
        let directory = RuntimeTestSupport.temporaryDirectory() + "/cases"
        let script = RuntimeTestSupport.repositoryRoot + "/Fixtures/hostile/make_hdf5_cases.py"
        guard let result = try? RuntimeTestSupport.run(python, [script, RuntimeTestSupport.repositoryRoot + "/Fixtures/prima/tiny-prima.h5",
                                                                goodTrace, directory]),
              result.status == 0 else {
            return .failure(GenerationError(message: "\(script) failed (needs /usr/bin/python3 with h5py, CI's python3-h5py)"))
        }
        return .success(directory)
    }()

    struct GenerationError: Error, CustomStringConvertible { let message: String; var description: String { message } }

    /// One crafted checkpoint and what the error line must say about it.
    struct Case: Sendable, CustomStringConvertible {
        let file: String
        let message: String
        /// The component `export` is asked for (the one holding the defect).
        var component = "decoder"
        var description: String { file }
    }

    static let checkpointCases: [Case] = [
        Case(file: "external-tensor.h5", message: "/decoder/tensors/embed.tokens: stored outside the file (external storage)"),
        Case(file: "external-config.h5", message: "/text_encoder/files/config.json: stored outside the file (external storage)",
             component: "text_encoder"),
        Case(file: "virtual-tensor.h5", message: "/decoder/tensors/embed.tokens: virtual dataset"),
        Case(file: "chunked-tensor.h5", message: "/decoder/tensors/embed.tokens: chunked storage is not read"),
        Case(file: "compressed-tensor.h5", message: "/decoder/tensors/embed.tokens: filtered storage"),
        Case(file: "huge-tensor.h5", message: "/decoder/tensors/embed.tokens: declares 3298534883328 bytes (shape [786432, 1048576]), more than the whole file"),
        Case(file: "unallocated-tensor.h5", message: "/decoder/tensors/embed.tokens: declares 122880 bytes (shape [640, 48]) but has no data in the file"),
        Case(file: "hardlink-cycle.h5", message: "/decoder/config/loop: a second hard link to /decoder/config (a cycle)"),
        Case(file: "second-hardlink.h5", message: "/decoder/files/second.json: a second hard link to /text_encoder/files/config.json"),
        Case(file: "external-link.h5", message: "/decoder/tensors/extra.weight: external link"),
        Case(file: "softlink-outside.h5", message: "/decoder/tensors/extra.weight: soft link to \"/image_encoder/tensors/embed.cls_token\": soft links are allowed only in a tensors/ group"),
        Case(file: "softlink-files.h5", message: "/text_encoder/files/config.json: soft link to \"/decoder/files/config.json\""),
        Case(file: "truncated.h5", message: "cannot open HDF5 file (truncated or damaged?)", component: "text_encoder"),
    ]

    static let record = #"{"age": 62, "gender": "MALE", "smoke": false, "region": "FACE", "diameter_1": 12, "bleed": true, "itch": "UNK"}"#

    /// Every tool that opens a checkpoint, on `checkpoint` (for `--against`, as the reference of `control`),
    /// writing any output into `work`.
    static func toolRuns(_ checkpoint: String, control: String, component: String, work: String) throws -> [(String, TestProcess.Result)] {
        let metadata = work + "/case.json"
        try record.write(toFile: metadata, atomically: true, encoding: .utf8)
        let verify = RuntimeTestSupport.binary("prima-verify"), convert = RuntimeTestSupport.binary("prima-convert")
        let runs: [(String, String, [String])] = [
            ("verify", verify, [checkpoint]),
            ("verify --trace", verify, [checkpoint, "--trace", goodTrace]),
            ("verify --against", verify, [control, "--against", checkpoint, "--component", component == "decoder" ? "decoder" : "text_encoder"]),
            ("inspect", convert, ["inspect", checkpoint]),
            ("export", convert, ["export", checkpoint, "--component", component, "-o", work + "/export", "--no-progress"]),
            ("quantize", RuntimeTestSupport.binary("prima-quantize"), ["--int8", checkpoint, "-o", work + "/int8.h5"]),
            ("diagnose", RuntimeTestSupport.binary("prima-diagnose"), ["--checkpoint", checkpoint, "--image", image, "--metadata", metadata]),
        ]
        return try runs.map { ($0.0, try RuntimeTestSupport.run($0.1, $0.2)) }
    }

    @Test(arguments: checkpointCases)
    func everyToolRefusesTheCraftedCheckpoint(_ item: Case) throws {
        let directory = try Self.cases.get()
        let checkpoint = directory + "/" + item.file
        let work = RuntimeTestSupport.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: work) }
        for (tool, result) in try Self.toolRuns(checkpoint, control: directory + "/control.h5", component: item.component, work: work) {
            #expect(result.status == 2, "\(tool): \(result.status) \(result.stderr)")
            let lines = result.stderr.split(separator: "\n")
            #expect(lines.count == 1, "\(tool): \(result.stderr)")
            #expect(result.stderr.contains(checkpoint + ": ") && result.stderr.contains(item.message), "\(tool): \(result.stderr)")
            #expect(!(result.stdout + result.stderr).contains(Self.marker), "\(tool) printed bytes of a file outside the checkpoint")
        }
        // Nothing left behind: only the metadata record the diagnosis read.
        #expect(try FileManager.default.contentsOfDirectory(atPath: work) == ["case.json"])
    }

    /// The unmodified copy passes the same tools, so each crafted file fails for its one defect.
    @Test func theControlCopyPasses() throws {
        let control = try Self.cases.get() + "/control.h5"
        let work = RuntimeTestSupport.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: work) }
        for (tool, result) in try Self.toolRuns(control, control: control, component: "decoder", work: work) {
            // --trace compares seeded heads with the trace's trained ones: a numerical FAIL (1), not bad input.
            #expect(result.status == (tool == "verify --trace" ? 1 : 0), "\(tool): \(result.stderr)")
        }
    }

    @Test func aTraceWithAnActivationStoredOutsideIsRefused() throws {
        let directory = try Self.cases.get()
        let trace = directory + "/external-activation.h5"
        let result = try RuntimeTestSupport.run(RuntimeTestSupport.binary("prima-verify"), [directory + "/control.h5", "--trace", trace])
        #expect(result.status == 2)
        #expect(result.stderr == "prima-verify: error: \(trace): /activations/image_encoder.embeddings: stored outside the file (external storage)\n")
        #expect(!result.stdout.contains(Self.marker))
    }

    /// Storage that runs past the end of the file, or does not match the shape, edited into the layout message
    /// of an h5py-default trace (libhdf5 itself accepts both at open).
    @Test func aTraceWhoseStorageIsNotWhereItsShapeSaysIsRefused() throws {
        let directory = try Self.cases.get()
        for (file, message) in [("trace-past-eof.h5", "/activations/image_encoder.embeddings: data at offset "),
                                ("trace-storage-size.h5", "/activations/image_encoder.embeddings: stores ")] {
            let trace = directory + "/" + file
            let result = try RuntimeTestSupport.run(RuntimeTestSupport.binary("prima-verify"), [directory + "/control.h5", "--trace", trace])
            #expect(result.status == 2, "\(file): \(result.stderr)")
            #expect(result.stderr.hasPrefix("prima-verify: error: \(trace): \(message)") && result.stderr.split(separator: "\n").count == 1,
                    "\(file): \(result.stderr)")
        }
    }

    /// libhdf5 loops forever on this flipped trace: the probe child is killed after the timeout (shortened here
    /// through PRIMA_HDF5_PROBE_TIMEOUT) and the tool stops with one line.
    @Test func aTraceOnWhichTheLibraryHangsTimesOut() throws {
        let directory = try Self.cases.get()
        let trace = directory + "/trace-hang.h5"
        let start = Date()
        var environment = ProcessInfo.processInfo.environment
        environment["PRIMA_HDF5_PROBE_TIMEOUT"] = "2"
        let result = try RuntimeTestSupport.run(RuntimeTestSupport.binary("prima-verify"), [directory + "/control.h5", "--trace", trace],
                                                environment: environment)
        #expect(result.status == 2)
        #expect(result.stderr == "prima-verify: error: \(trace): corrupted HDF5 metadata (the HDF5 library timed out reading it)\n")
        #expect(Date().timeIntervalSince(start) < 30)
    }

    /// Flipped bits in the metadata (never in dataset data, where HDF5 reads nothing structural) of our own
    /// checkpoint and of a trace in h5py's default format (no metadata checksums): every run ends with status
    /// 0, 1 or 2 and at most one stderr line, never a signal. libhdf5 does crash on some of these files; the
    /// probe child turns that into the "crashed reading it" line, which the seed below reaches (24 times).
    /// A corrupted global-heap index, whose out-of-bounds read crashed only the tool until the child ran with
    /// no slack at the top of its malloc heap (HDF5Probe), was found this way.
    @Test func flippedBytesNeverCrashATool() throws {
        let directory = try Self.cases.get()
        let rangesData = try Data(contentsOf: URL(fileURLWithPath: directory + "/metadata-ranges.json"))
        let ranges = try #require(try JSONSerialization.jsonObject(with: rangesData) as? [String: [[Int]]])
        let verify = RuntimeTestSupport.binary("prima-verify"), convert = RuntimeTestSupport.binary("prima-convert")
        let control = directory + "/control.h5"
        // (base file, variants, the runs of one variant)
        let plans: [(String, Int, (String) -> [(String, [String])])] = [
            ("control.h5", 100, { [(verify, [$0]), (convert, ["inspect", $0])] }),
            ("trace-h5py-default.h5", 140, { [(verify, [control, "--trace", $0]), (convert, ["inspect", $0])] }),
        ]
        struct Outcome: Sendable { let variant: String; let run: String; let status: Int32; let stderr: String }
        var jobs: [(path: String, bytes: Data, runs: [(String, [String])])] = []
        var generator = SplitMix64(seed: 0x5EED_0009)
        let work = RuntimeTestSupport.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: work) }
        for (base, count, runs) in plans {
            let original = try Data(contentsOf: URL(fileURLWithPath: directory + "/" + base))
            let free = try #require(ranges[base])
            let total = free.reduce(0) { $0 + $1[1] - $1[0] }
            for index in 0..<count {
                var position = Int(generator.next() % UInt64(total))
                let range = free.first { range in
                    if position < range[1] - range[0] { return true }
                    position -= range[1] - range[0]
                    return false
                }!
                var bytes = original
                bytes[range[0] + position] ^= UInt8(1) << UInt8(generator.next() % 8)
                let path = work + "/\(index)-" + base
                jobs.append((path, bytes, runs(path)))
            }
        }
        let outcomes = Locked<[Outcome]>([])
        let allJobs = jobs
        DispatchQueue.concurrentPerform(iterations: 4) { worker in
            for job in stride(from: worker, to: allJobs.count, by: 4).map({ allJobs[$0] }) {
                try? job.bytes.write(to: URL(fileURLWithPath: job.path))
                for (tool, arguments) in job.runs {
                    let result = try? RuntimeTestSupport.run(tool, arguments)
                    outcomes.update { $0.append(Outcome(variant: job.path, run: (tool as NSString).lastPathComponent + " " + arguments.joined(separator: " "),
                                                        status: result?.status ?? -1, stderr: result?.stderr ?? "not run")) }
                }
                try? FileManager.default.removeItem(atPath: job.path)
            }
        }
        let all = outcomes.value
        #expect(all.count == jobs.reduce(0) { $0 + $1.runs.count })
        let contained = all.filter { $0.stderr.contains("corrupted HDF5 metadata (the HDF5 library crashed reading it)") }
        let signalled = all.filter { ![0, 1, 2].contains($0.status) }
        print("flipped bytes: \(all.count) runs, \(contained.count) libhdf5 crashes contained by the probe, \(signalled.count) signals")
        for outcome in all {
            #expect([0, 1, 2].contains(outcome.status), "\(outcome.run): status \(outcome.status) \(outcome.stderr.prefix(300))")
            #expect(outcome.stderr.split(separator: "\n").count <= 1, "\(outcome.run): \(outcome.stderr.prefix(300))")
        }
        #expect(!contained.isEmpty)
    }
}

/// A value shared between the workers of a concurrent loop.
final class Locked<Value>: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: Value
    init(_ value: Value) { stored = value }
    var value: Value { lock.withLock { stored } }
    func update(_ body: (inout Value) -> Void) { lock.withLock { body(&stored) } }
}
