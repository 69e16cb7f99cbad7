import CJSONC
import Foundation

// The only file that imports json-c. tokenizer.json files are large (10 MB for a 150k vocabulary, mostly the vocab
// object and the merges array), so they are parsed by json-c in one pass and read through borrowed views; nothing
// is converted into Swift collections except what the pipeline keeps.

/// A parsed JSON document owned by json-c. Every `JSONNode` read from it is valid while the document lives.
final class JSONDocument {
    private var root: OpaquePointer?
    /// The file (or label) named in error messages.
    let source: String

    /// Parses `bytes` as one JSON value (strict syntax, UTF-8 validated, nothing but whitespace after it).
    init(bytes: UnsafeRawBufferPointer, source: String) throws {
        self.source = source
        guard let tokener = json_tokener_new_ex(64) else {
            throw TokenizerError.malformedJSON(source, "json-c could not allocate a parser")
        }
        defer { json_tokener_free(tokener) }
        json_tokener_set_flags(tokener, Int32(JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8))
        let base = bytes.baseAddress?.assumingMemoryBound(to: CChar.self)
        let object = base.flatMap { json_tokener_parse_ex(tokener, $0, Int32(clamping: bytes.count)) }
        let error = json_tokener_get_error(tokener)
        guard error == json_tokener_success else {
            json_object_put(object)
            let offset = json_tokener_get_parse_end(tokener)
            let detail = error == json_tokener_continue || bytes.isEmpty
                ? "unexpected end of file" : String(cString: json_tokener_error_desc(error))
            throw TokenizerError.malformedJSON(source, "\(detail) (at byte \(offset))")
        }
        let end = json_tokener_get_parse_end(tokener)
        if end < bytes.count, bytes[end...].contains(where: { ![0x20, 0x09, 0x0A, 0x0D].contains($0) }) {
            json_object_put(object)
            throw TokenizerError.malformedJSON(source, "unexpected data after the JSON value (at byte \(end))")
        }
        root = object
    }

    deinit { json_object_put(root) }

    /// Frees the parsed tree on a background thread; the document must not be read afterwards. Freeing the
    /// hundreds of thousands of json-c objects of a large vocabulary takes about a fifth of the load time, which
    /// need not be waited for.
    func freeInBackground() {
        struct Tree: @unchecked Sendable { let root: OpaquePointer? }
        let tree = Tree(root: root)
        root = nil
        DispatchQueue.global(qos: .utility).async { json_object_put(tree.root) }
    }

    /// The top-level value.
    var rootNode: JSONNode { JSONNode(object: root, path: "", document: self) }
}

/// A borrowed view of one JSON value inside a `JSONDocument`, with its path for error messages.
struct JSONNode {
    /// The json-c object; nil for JSON null.
    let object: OpaquePointer?
    /// Where the value is, as `model.vocab` or `added_tokens[3].content` ("" for the root).
    let path: String
    let document: JSONDocument

    var isNull: Bool { object == nil }
    var isObject: Bool { object != nil && json_object_get_type(object) == json_type_object }
    var isArray: Bool { object != nil && json_object_get_type(object) == json_type_array }
    var isString: Bool { object != nil && json_object_get_type(object) == json_type_string }

    private var kind: String {
        guard let object else { return "null" }
        switch json_object_get_type(object) {
        case json_type_boolean: return "a boolean"
        case json_type_double, json_type_int: return "a number"
        case json_type_object: return "an object"
        case json_type_array: return "an array"
        case json_type_string: return "a string"
        default: return "null"
        }
    }

    /// Where the value is, for messages: `<file>: <path>`.
    var place: String { path.isEmpty ? document.source : "\(document.source): \(path)" }

    /// An error about this value: `<file>: <path>: <message>`.
    func error(_ message: String) -> TokenizerError {
        .invalid(document.source, path.isEmpty ? message : "\(path): \(message)")
    }

    private func expected(_ what: String) -> TokenizerError { error("expected \(what), found \(kind)") }

    private func child(_ key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }

    /// The member `key` of this object: nil when the key is absent; a node with `isNull` when it is JSON null.
    func member(_ key: String) throws -> JSONNode? {
        guard isObject else { throw expected("an object") }
        var value: OpaquePointer? = nil
        guard json_object_object_get_ex(object, key, &value) != 0 else { return nil }
        return JSONNode(object: value, path: child(key), document: document)
    }

    /// The member `key`, which must be present and not null.
    func required(_ key: String) throws -> JSONNode {
        guard let value = try member(key) else { throw error("missing \"\(key)\"") }
        guard !value.isNull else { throw value.error("must not be null") }
        return value
    }

    /// The member `key` unless it is absent or null.
    func optional(_ key: String) throws -> JSONNode? {
        guard let value = try member(key), !value.isNull else { return nil }
        return value
    }

    func string() throws -> String {
        guard isString, let pointer = json_object_get_string(object) else { throw expected("a string") }
        let count = Int(json_object_get_string_len(object))
        return String(decoding: UnsafeRawBufferPointer(start: pointer, count: count), as: UTF8.self)
    }

    func bool() throws -> Bool {
        guard let object, json_object_get_type(object) == json_type_boolean else { throw expected("a boolean") }
        return json_object_get_boolean(object) != 0
    }

    /// An integer; a double with an integral value is accepted too.
    func int() throws -> Int {
        guard let object else { throw expected("an integer") }
        switch json_object_get_type(object) {
        case json_type_int:
            return Int(json_object_get_int64(object))
        case json_type_double:
            let value = json_object_get_double(object)
            guard value.rounded() == value, abs(value) < 9e15 else { throw expected("an integer") }
            return Int(value)
        default:
            throw expected("an integer")
        }
    }

    func double() throws -> Double {
        guard let object else { throw expected("a number") }
        let type = json_object_get_type(object)
        guard type == json_type_int || type == json_type_double else { throw expected("a number") }
        return json_object_get_double(object)
    }

    /// The elements of an array.
    func array() throws -> [JSONNode] {
        guard isArray else { throw expected("an array") }
        let count = json_object_array_length(object)
        return (0..<count).map { JSONNode(object: json_object_array_get_idx(object, $0), path: "\(path)[\($0)]",
                                          document: document) }
    }

    var count: Int { isArray ? json_object_array_length(object) : 0 }

    /// The number of members of an object (0 for anything else).
    var memberCount: Int { isObject ? Int(json_object_object_length(object)) : 0 }

    /// Calls `body` with the raw json-c object of each array element, without building paths (for arrays of
    /// hundreds of thousands of elements: merges).
    func forEachElement(_ body: (Int, OpaquePointer?) throws -> Void) throws {
        guard isArray else { throw expected("an array") }
        for index in 0..<json_object_array_length(object) {
            try body(index, json_object_array_get_idx(object, index))
        }
    }

    /// Calls `body` with each member's key and raw json-c value, in file order (for the vocab object).
    func forEachMember(_ body: (UnsafePointer<CChar>, OpaquePointer?) throws -> Void) throws {
        guard isObject else { throw expected("an object") }
        var iterator = json_object_iter_begin(object)
        var end = json_object_iter_end(object)
        while json_object_iter_equal(&iterator, &end) == 0 {
            if let name = json_object_iter_peek_name(&iterator) {
                try body(name, json_object_iter_peek_value(&iterator))
            }
            json_object_iter_next(&iterator)
        }
    }

    /// The member names of an object, in file order.
    func keys() throws -> [String] {
        var names: [String] = []
        try forEachMember { name, _ in names.append(String(cString: name)) }
        return names
    }

    /// The node for a raw json-c value met while iterating (for error messages and typed reads).
    func node(_ object: OpaquePointer?, path suffix: String) -> JSONNode {
        JSONNode(object: object, path: path + suffix, document: document)
    }
}

/// Raw reads used on hot loading paths, where building a `JSONNode` per element would cost too much.
enum RawJSON {
    /// The bytes of a string value, in json-c's buffer (valid while the document lives), or nil if `object` is not a
    /// string.
    static func bytes(_ object: OpaquePointer?) -> UnsafeRawBufferPointer? {
        guard let object, json_object_get_type(object) == json_type_string,
              let pointer = json_object_get_string(object) else { return nil }
        return UnsafeRawBufferPointer(start: pointer, count: Int(json_object_get_string_len(object)))
    }

    /// The integer value, or nil if `object` is not an integer.
    static func int(_ object: OpaquePointer?) -> Int? {
        guard let object, json_object_get_type(object) == json_type_int else { return nil }
        return Int(json_object_get_int64(object))
    }

    static func arrayCount(_ object: OpaquePointer?) -> Int? {
        guard let object, json_object_get_type(object) == json_type_array else { return nil }
        return json_object_array_length(object)
    }

    static func element(_ object: OpaquePointer?, _ index: Int) -> OpaquePointer? {
        json_object_array_get_idx(object, index)
    }
}
