import Foundation
import PrimaJSON
import PrimaTestSupport
@testable import PrimaTokenizers

/// Paths and the goldens file shared by the tokenizer tests.
enum Goldens {
    static let repositoryRoot = TestProcess.repositoryRoot
    static let directory = repositoryRoot + "/Fixtures/tokenizers"

    /// Fixtures/tokenizers/goldens.json, written by Fixtures/tokenizers/make_goldens.py.
    static let root: JSONObject = {
        guard let data = FileManager.default.contents(atPath: directory + "/goldens.json"),
              let object = try? JSON.parse([UInt8](data)).object else {
            fatalError("cannot read Fixtures/tokenizers/goldens.json")
        }
        return object
    }()

    /// The tokenizers the goldens cover, by name.
    static var tokenizerNames: [String] { root["tokenizers"]?.object?.keys ?? [] }

    static func tokenizerEntry(_ name: String) -> JSONObject { root["tokenizers"]!.object![name]!.object! }

    static func path(_ name: String) -> String { repositoryRoot + "/" + tokenizerEntry(name)["path"]!.string! }

    static func load(_ name: String) throws -> Tokenizer { try Tokenizer(contentsOfFile: path(name)) }

    static let components: JSONObject = root["components"]!.object!
}

extension JSONValue {
    var ints: [Int] { array?.compactMap(\.int) ?? [] }
    var strings: [String] { array?.compactMap(\.string) ?? [] }
}

/// A component's JSON as a node the factories read.
func jsonNode(_ text: String) throws -> JSONNode {
    let bytes = Array(text.utf8)
    let document = try bytes.withUnsafeBytes { try JSONDocument(bytes: $0, source: "test") }
    return document.rootNode
}

/// "ids differ at index 3: expected … got …" for a failure message.
func firstDifference(_ expected: [Int], _ actual: [Int]) -> String {
    let index = zip(expected, actual).enumerated().first { $0.element.0 != $0.element.1 }?.offset
        ?? min(expected.count, actual.count)
    func window(_ values: [Int]) -> String {
        values[max(0, index - 2)..<min(values.count, index + 4)].map(String.init).joined(separator: ", ")
    }
    return "first difference at index \(index) (lengths \(expected.count) vs \(actual.count)): expected [\(window(expected))], got [\(window(actual))]"
}

func scalars(_ text: String) -> [Unicode.Scalar] { Array(text.unicodeScalars) }
