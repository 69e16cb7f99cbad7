import Foundation
import PrimaJSON
import PrimaTestSupport

/// Paths and helpers shared by the converter tests.
enum TestSupport {
    /// The repository root.
    static let repositoryRoot = TestProcess.repositoryRoot

    /// The fixture models directory.
    static let fixtures = repositoryRoot + "/Fixtures/models"

    /// One fixture's manifest entry.
    struct Fixture: Sendable, CustomStringConvertible {
        let name: String
        let modelType: String
        let dtype: String
        let sharded: Bool
        let tensorNames: [String]
        var directory: String { TestSupport.fixtures + "/" + name }
        var description: String { name }
    }

    /// Every fixture in Fixtures/models/manifest.json.
    static let manifest: [Fixture] = {
        guard let data = FileManager.default.contents(atPath: fixtures + "/manifest.json"),
              let list = try? JSON.parse([UInt8](data)).array else { return [] }
        return list.compactMap { item in
            guard let object = item.object, let name = object["name"]?.string, let type = object["model_type"]?.string,
                  let dtype = object["dtype"]?.string else { return nil }
            return Fixture(name: name, modelType: type, dtype: dtype, sharded: object["sharded"]?.bool ?? false,
                           tensorNames: object["tensor_names"]?.array?.compactMap(\.string) ?? [])
        }
    }()

    static func fixture(_ name: String) -> Fixture { manifest.first { $0.name == name }! }

    /// A fresh temporary directory.
    static func temporaryDirectory() -> String { TestProcess.temporaryDirectory("prima-convert-tests") }

    /// Copies a fixture directory to a temporary place for corruption.
    static func copyFixture(_ name: String) throws -> String {
        let destination = temporaryDirectory() + "/" + name
        try FileManager.default.copyItem(atPath: fixtures + "/" + name, toPath: destination)
        return destination
    }

    /// The built `prima-convert` binary.
    static let convertBinary = TestProcess.binary("prima-convert")

    /// Runs a tool, capturing its output.
    static func run(_ executable: String, _ arguments: [String], environment: [String: String]? = nil) throws -> TestProcess.Result {
        try TestProcess.run(executable, arguments, environment: environment)
    }

    /// Runs prima-convert.
    static func convert(_ arguments: String...) throws -> TestProcess.Result { try run(convertBinary, arguments) }

    /// A Python with the named modules, if the machine has one (tests that need it say so when skipping).
    static func python(with modules: [String]) -> String? {
        var candidates = [String]()
        if let configured = ProcessInfo.processInfo.environment["PRIMA_PYTHON"] { candidates.append(configured) }
        candidates += ["/work/venv-ref/bin/python", "/usr/bin/python3"]
        for candidate in candidates where FileManager.default.isExecutableFile(atPath: candidate) {
            let check = try? run(candidate, ["-c", "import " + modules.joined(separator: ", ")])
            if check?.status == 0 { return candidate }
        }
        return nil
    }

    /// Writes a safetensors file from a header text and data bytes (no validation: for hostile cases).
    static func writeRawSafetensors(_ path: String, header: String, data: [UInt8], declaredLength: UInt64? = nil) throws {
        var bytes = [UInt8]()
        var length = (declaredLength ?? UInt64(header.utf8.count)).littleEndian
        withUnsafeBytes(of: &length) { bytes.append(contentsOf: $0) }
        bytes.append(contentsOf: header.utf8)
        bytes.append(contentsOf: data)
        try Data(bytes).write(to: URL(fileURLWithPath: path))
    }
}
