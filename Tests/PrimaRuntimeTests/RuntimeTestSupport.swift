import Foundation
import PrimaConvert
import PrimaTensor
import PrimaTestSupport

/// Paths and helpers for the runtime tests.
enum RuntimeTestSupport {
    /// The repository root.
    static let repositoryRoot = TestProcess.repositoryRoot

    static func model(_ name: String) -> String { repositoryRoot + "/Fixtures/models/" + name }
    static func trace(_ name: String) -> String { repositoryRoot + "/Fixtures/traces/" + name + ".h5" }

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
        var state = seed &* 6364136223846793005 &+ 1442695040888963407
        let count = shape.reduce(1, *)
        let values = (0..<count).map { _ -> Float in
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return Float(Int64(bitPattern: state >> 11) % 2_000_000) / 1_000_000 - 1
        }
        return Tensor(shape: shape, float32: values)
    }

    /// Max |a − b| over two tensors of equal element count.
    static func maxDifference(_ a: Tensor, _ b: Tensor) -> Float {
        zip(a.float32Values(), b.float32Values()).reduce(0) { max($0, abs($1.0 - $1.1)) }
    }
}
