import PrimaJSON

/// Why a safetensors file, index or model directory was rejected, or why reading or writing one failed.
///
/// The description is one line, `<path>: <what is wrong>`, or `<path>: tensor <name>: <what is wrong>` when one
/// tensor is at fault, so a converter can print it as is. Names taken from a file are shown JSON-escaped if they
/// hold control characters, which keeps a hostile name from breaking the line.
public struct SafetensorsError: Error, CustomStringConvertible, Sendable {
    /// The file (or directory) at fault, as the caller spelled it.
    public let path: String
    /// The tensor at fault, if one is.
    public let tensor: String?
    /// What is wrong, without the path and tensor prefix.
    public let message: String

    /// An error about `path` and, if given, its tensor `tensor`.
    public init(path: String, tensor: String? = nil, _ message: String) {
        self.path = path
        self.tensor = tensor
        self.message = message
    }

    /// `<path>: [tensor <name>: ]<message>`, on one line.
    public var description: String {
        let prefix = displayName(path) + ": "
        guard let tensor else { return prefix + message }
        return prefix + "tensor " + displayName(tensor) + ": " + message
    }
}

/// `name` as is, or JSON-quoted (which escapes every C0 control character) if it contains one: a line break
/// in a name would split a one-line message.
func displayName(_ name: String) -> String {
    name.utf8.contains { $0 < 0x20 } ? JSON.quoted(name) : name
}
