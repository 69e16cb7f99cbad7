import Foundation
import PrimaConvert
import PrimaTensor
import PrimaTestSupport

/// Paths and helpers for the runtime tests.
enum RuntimeTestSupport {
    /// The repository root.
    static let repositoryRoot = TestProcess.repositoryRoot

    static let models = repositoryRoot + "/Fixtures/models"
    static let traces = repositoryRoot + "/Fixtures/traces"
    static func model(_ name: String) -> String { models + "/" + name }
    static func trace(_ name: String) -> String { traces + "/" + name + ".h5" }

    /// Trace files whose name starts with `prefix`, sorted.
    static func traces(prefix: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: traces)) ?? [])
            .filter { $0.hasPrefix(prefix) && $0.hasSuffix(".h5") }.sorted()
    }

    /// The fixture model a trace belongs to: the longest fixture name equal to the trace's stem or followed in it by
    /// "-" (`dinov3-mlp-reg4-f32-nonsquare.h5` → `dinov3-mlp-reg4-f32`).
    static func fixture(forTrace file: String) -> String? {
        let stem = String(file.dropLast(3))
        let names = (try? FileManager.default.contentsOfDirectory(atPath: models)) ?? []
        return names.filter { stem == $0 || stem.hasPrefix($0 + "-") }.max { $0.count < $1.count }
    }

    /// A fresh temporary directory.
    static func temporaryDirectory() -> String { TestProcess.temporaryDirectory("prima-runtime-tests") }

    /// Imports a fixture model into a new checkpoint and returns its path.
    static func importFixture(_ name: String) throws -> String {
        let path = temporaryDirectory() + "/\(name).h5"
        _ = try Importer.run([ImportSource(directory: model(name), role: nil)], output: path, overwrite: false,
                             showProgress: false, warn: { _ in })
        return path
    }

    /// The built tool `name`.
    static func binary(_ name: String) -> String { TestProcess.binary(name) }

    /// Runs a tool, capturing its output.
    static func run(_ executable: String, _ arguments: [String], environment: [String: String]? = nil) throws -> TestProcess.Result {
        try TestProcess.run(executable, arguments, environment: environment)
    }

    /// A seeded tensor of uniform values in [-1, 1).
    static func random(_ shape: [Int], seed: UInt64) -> Tensor {
        var generator = SplitMix64(seed: seed)
        return generator.tensor(shape)
    }

    /// Max |a − b| over two tensors of equal element count.
    static func maxDifference(_ a: Tensor, _ b: Tensor) -> Float {
        zip(a.float32Values(), b.float32Values()).reduce(0) { max($0, abs($1.0 - $1.1)) }
    }
}
