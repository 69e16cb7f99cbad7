import Foundation
import PrimaCheckpoint
import PrimaModels
import PrimaTensor

/// A reference trace (Formats/prima-trace.md): a component's inputs and its named activations in forward order.
public struct Trace: Sendable {
    /// The newest trace version this build reads.
    public static let version = 1

    /// `image_encoder`, `text_encoder` or `decoder`.
    public let component: ComponentRole
    /// The inputs the activations were computed from.
    public let inputs: ModelInputs
    /// Activations in forward order (by their `order` attribute), each float32 with its stored shape.
    public let activations: [(name: String, tensor: Tensor)]

    /// The attention mask [B][T] for token inputs, nil for images.
    public var attentionMask: [[Int]]? {
        if case .tokens(_, let mask) = inputs { return mask }
        return nil
    }

    public init(component: ComponentRole, inputs: ModelInputs, activations: [(name: String, tensor: Tensor)]) {
        self.component = component
        self.inputs = inputs
        self.activations = activations
    }

    /// Reads and validates a trace file; every problem is an error naming the file and the object.
    public init(path: String) throws {
        let file: HDF5File
        do { file = try HDF5File.open(path: path) } catch { throw VerifyError.input("\(error)") }
        func fail(_ what: String) -> VerifyError { .input("\(path): \(what)") }
        do {
            let root = try file.root()
            guard root.hasAttribute("prima_trace_version"), let version = try? root.intAttribute("prima_trace_version") else {
                throw fail("not a PRIMA trace (no integer root attribute prima_trace_version)")
            }
            guard version >= 1, version <= Trace.version else {
                throw fail("prima_trace_version \(version) is not supported (this build reads up to \(Trace.version))")
            }
            let componentName = try root.stringAttribute("component")
            guard let role = ComponentRole(rawValue: componentName) else { throw fail("unknown component \"\(componentName)\"") }
            component = role
            let inputs = try root.group("inputs")
            if role == .imageEncoder {
                let pixels = try Self.readFloat32(inputs, "pixel_values", path: path)
                guard pixels.shape.count == 4, pixels.shape[1] == 3, pixels.shape[0] > 0 else {
                    throw fail("inputs/pixel_values must be float32 (B, 3, H, W), found \(ShapeMath.describe(pixels.shape))")
                }
                self.inputs = .pixels(pixels)
            } else {
                let ids = try Self.readInt64Matrix(inputs, "input_ids", path: path)
                let mask = try Self.readInt64Matrix(inputs, "attention_mask", path: path)
                guard ids.count == mask.count, zip(ids, mask).allSatisfy({ $0.count == $1.count }) else {
                    throw fail("inputs/input_ids and inputs/attention_mask differ in shape")
                }
                self.inputs = .tokens(ids: ids, mask: mask)
            }
            var found: [(order: Int, name: String, tensor: Tensor)] = []
            if root.contains("activations") {
                let group = try root.group("activations")
                for name in try group.linkNames() {
                    let dataset = try group.dataset(name)
                    guard dataset.hasAttribute("order"), let order = try? dataset.intAttribute("order") else {
                        throw fail("activations/\(name) has no integer order attribute")
                    }
                    found.append((order, name, try Self.readFloat32(group, name, path: path)))
                }
            }
            let orders = found.map(\.order).sorted()
            guard orders == Array(0..<found.count) else { throw fail("activation order attributes are not 0..<\(found.count)") }
            activations = found.sorted { $0.order < $1.order }.map { ($0.name, $0.tensor) }
        } catch let error as VerifyError {
            throw error
        } catch {
            throw fail("\(error)")
        }
    }

    static func readFloat32(_ group: HDF5Group, _ name: String, path: String) throws -> Tensor {
        guard group.contains(name) else { throw VerifyError.input("\(path): \(group.path)/\(name) is missing") }
        let dataset = try group.dataset(name)
        guard dataset.storedTypeMatches(.f32) else { throw VerifyError.input("\(path): \(group.path)/\(name) is not float32") }
        guard let bytes = ShapeMath.byteCount(dataset.shape, .f32), bytes < 1 << 34 else {
            throw VerifyError.input("\(path): \(group.path)/\(name) has an impossible shape")
        }
        let tensor = Tensor(zeros: dataset.shape, dtype: .f32)
        if bytes > 0 {
            try dataset.readRows(start: 0, count: dataset.shape.first ?? 1,
                                 into: UnsafeMutableRawBufferPointer(rebasing: tensor.storage.bytes[0..<bytes]))
        }
        return tensor
    }

    static func readInt64Matrix(_ group: HDF5Group, _ name: String, path: String) throws -> [[Int]] {
        guard group.contains(name) else { throw VerifyError.input("\(path): \(group.path)/\(name) is missing") }
        let dataset = try group.dataset(name)
        guard dataset.storedTypeMatches(.i64), dataset.shape.count == 2, dataset.shape.allSatisfy({ $0 > 0 }),
              dataset.elementCount < 1 << 26 else {
            throw VerifyError.input("\(path): \(group.path)/\(name) must be a non-empty int64 (B, T) array")
        }
        let bytes = try dataset.readAllBytes()
        let values = bytes.withUnsafeBytes { Array($0.bindMemory(to: Int64.self)) }
        let columns = dataset.shape[1]
        return (0..<dataset.shape[0]).map { row in values[(row * columns)..<((row + 1) * columns)].map { Int($0) } }
    }

    /// Writes this trace to `path` (temporary file, renamed into place) as a non-PyTorch writer.
    public func write(to path: String, source: String) throws {
        let temporary = path + ".tmp-\(getpid())"
        defer { unlink(temporary) }
        do {
            let file = try HDF5File.create(path: temporary)
            try writeContents(into: file.root(), source: source)
            try file.close()
        } catch {
            throw VerifyError.failed("\(path): cannot write trace: \(error)")
        }
        guard rename(temporary, path) == 0 else {
            throw VerifyError.failed("\(path): cannot rename the trace into place: \(String(cString: strerror(errno)))")
        }
    }

    /// Fills a new trace file's root group (kept apart so every group is closed before the file).
    private func writeContents(into root: HDF5Group, source: String) throws {
            try root.setAttribute("prima_trace_version", int: Trace.version)
            try root.setAttribute("component", string: component.rawValue)
            try root.setAttribute("source", string: source)
            try root.setAttribute("torch_version", string: "")
            try root.setAttribute("transformers_version", string: "")
            try root.setAttribute("attn_implementation", string: "eager")
            try root.setAttribute("dtype", string: "float32")
            try root.setAttribute("producer", string: CheckpointFormat.tool)
            let inputGroup = try root.createGroup("inputs")
            switch inputs {
            case .pixels(let pixels):
                try Self.writeTensor(inputGroup, "pixel_values", pixels)
            case .tokens(let ids, let mask):
                for (name, matrix) in [("input_ids", ids), ("attention_mask", mask)] {
                    let dataset = try inputGroup.createDataset(name, dtype: .i64, shape: [matrix.count, matrix.first?.count ?? 0])
                    let flat = matrix.flatMap { $0.map(Int64.init) }
                    try flat.withUnsafeBytes { try dataset.writeAll($0) }
                }
            }
            let activationGroup = try root.createGroup("activations")
            for (order, activation) in activations.enumerated() {
                try Self.writeTensor(activationGroup, activation.name, activation.tensor)
                try activationGroup.dataset(activation.name).setAttribute("order", int: order)
            }
    }

    static func writeTensor(_ group: HDF5Group, _ name: String, _ tensor: Tensor) throws {
        let dataset = try group.createDataset(name, dtype: .f32, shape: tensor.shape)
        if tensor.elementCount > 0 { try tensor.withUnsafeBytes { try dataset.writeAll($0) } }
    }
}

/// A verification failure, as one line, with its exit status (2: bad input or usage, 1: the check failed).
public struct VerifyError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public let exitCode: Int32

    /// Bad input (exit 2).
    public static func input(_ message: String) -> VerifyError { VerifyError(description: message, exitCode: 2) }
    /// A failed job (exit 1).
    public static func failed(_ message: String) -> VerifyError { VerifyError(description: message, exitCode: 1) }
}
