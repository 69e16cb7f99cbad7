import CHDF5
import Foundation
import PrimaIO
import PrimaTensor

// The toolkit's only door to libhdf5. Debian's HDF5 is the serial, non-thread-safe build, so every call
// into the library goes through `HDF5.locked`, and handles close in `deinit` under the same lock.
// Errors from HDF5 become `HDF5Error`s naming the file and the object; HDF5's own stderr printing is off.

/// An HDF5 failure: the file, the object path inside it, what was attempted and HDF5's innermost message.
public struct HDF5Error: Error, CustomStringConvertible, Sendable {
    /// The file's path.
    public let file: String
    /// What went wrong, naming the object inside the file.
    public let message: String
    public var description: String { "\(file): \(message)" }
}

/// The bounds every HDF5 file opened for reading is held to before anything in it is trusted
/// (Formats/prima-checkpoint.md, "Untrusted files"). Checking them is O(number of objects): no data is read.
public enum HDF5Limits {
    /// Deepest group nesting below the root (checkpoints use 4: `/ROLE/lora/NAME/tensors`, §6).
    public static let maxGroupDepth = 16
    /// Links in the whole file.
    public static let maxLinks = 1 << 20
    /// Attributes in the whole file.
    public static let maxAttributes = 1 << 20
    /// Bytes of one link or attribute name.
    public static let maxNameBytes = 1024
    /// Bytes of one attribute's fixed-size data (a variable-length string counts its pointer; its text lies in
    /// the file, so the file bounds it).
    public static let maxAttributeBytes = 16 << 20
    /// Largest dataset stored compact (inside its object header): HDF5's own bound, 64 KiB.
    public static let maxCompactBytes = 65_536
    /// Largest element of a dataset, in bytes (float64/int64 are 8).
    public static let maxElementBytes = 16
}

/// The serialising layer and small helpers shared by the HDF5 handle types.
enum HDF5 {
    private static let lock = NSRecursiveLock()
    private static let initialised: Bool = {
        _ = H5open()
        _ = prima_H5_silence_errors()
        return true
    }()

    /// Runs `body` holding the process-wide HDF5 lock (HDF5's serial build is not thread-safe).
    @discardableResult
    static func locked<R>(_ body: () throws -> R) rethrows -> R {
        lock.lock()
        defer { lock.unlock() }
        _ = initialised
        return try body()
    }

    /// The innermost HDF5 error description on the current error stack, cleared afterwards.
    static func lastErrorDescription() -> String {
        var messages: [String] = []
        _ = withUnsafeMutablePointer(to: &messages) { pointer in
            H5Ewalk2(prima_H5E_DEFAULT(), H5E_WALK_UPWARD, { _, error, data in
                guard let error, let data else { return 0 }
                let list = data.assumingMemoryBound(to: [String].self)
                if let desc = error.pointee.desc { list.pointee.append(String(cString: desc)) }
                return 0
            }, pointer)
        }
        H5Eclear2(prima_H5E_DEFAULT())
        return messages.first ?? "unknown HDF5 error"
    }

    /// Throws an `HDF5Error` if `status` is negative.
    @discardableResult
    static func check<T: BinaryInteger>(_ status: T, _ file: String, _ what: @autoclosure () -> String) throws -> T {
        if status < 0 { throw HDF5Error(file: file, message: "\(what()): \(lastErrorDescription())") }
        return status
    }

    /// `name` as it may appear in a one-line message: control characters (newlines, terminal escapes) escaped.
    static func printable(_ name: String) -> String {
        var out = ""
        for scalar in name.unicodeScalars {
            if scalar.value < 0x20 || scalar.value == 0x7F || (0x80..<0xA0).contains(scalar.value) {
                out += "\\u{" + String(scalar.value, radix: 16) + "}"
            } else {
                out.unicodeScalars.append(scalar)
            }
        }
        return out
    }

    /// Creates a property list of `cls`, or throws.
    static func propertyList(_ cls: hid_t, _ file: String) throws -> hid_t {
        try check(H5Pcreate(cls), file, "cannot create an HDF5 property list")
    }
}

/// An owned HDF5 identifier, closed with the matching H5*close function in `deinit`.
final class HDF5Handle: @unchecked Sendable {
    let id: hid_t
    private let closeFunction: (hid_t) -> herr_t
    private var isOpen = true

    init(_ id: hid_t, close: @escaping (hid_t) -> herr_t) {
        self.id = id
        self.closeFunction = close
    }

    /// Closes now (the caller holds the lock); `deinit` then does nothing.
    func close() -> herr_t {
        guard isOpen else { return 0 }
        isOpen = false
        return closeFunction(id)
    }

    deinit { HDF5.locked { _ = close() } }
}

/// The HDF5 file type of each dtype (Formats/prima-checkpoint.md §5.2). Caller holds the lock; the returned
/// handle owns a copied type where one was created.
func hdf5FileType(for dtype: DType) -> HDF5Handle {
    switch dtype {
    case .f32: return HDF5Handle(H5Tcopy(prima_H5T_IEEE_F32LE()), close: H5Tclose)
    case .f64: return HDF5Handle(H5Tcopy(prima_H5T_IEEE_F64LE()), close: H5Tclose)
    case .f16:
        // IEEE binary16 built from binary32: sign bit 15, exponent bits 10-14 (bias 15), mantissa bits 0-9.
        let type = H5Tcopy(prima_H5T_IEEE_F32LE())
        H5Tset_fields(type, 15, 10, 5, 0, 10)
        H5Tset_size(type, 2)
        H5Tset_precision(type, 16)
        H5Tset_ebias(type, 15)
        return HDF5Handle(type, close: H5Tclose)
    case .bf16: return HDF5Handle(H5Tcopy(prima_H5T_STD_U16LE()), close: H5Tclose)
    case .i64: return HDF5Handle(H5Tcopy(prima_H5T_STD_I64LE()), close: H5Tclose)
    case .i32: return HDF5Handle(H5Tcopy(prima_H5T_STD_I32LE()), close: H5Tclose)
    case .i16: return HDF5Handle(H5Tcopy(prima_H5T_STD_I16LE()), close: H5Tclose)
    case .i8: return HDF5Handle(H5Tcopy(prima_H5T_STD_I8LE()), close: H5Tclose)
    case .u8, .bool: return HDF5Handle(H5Tcopy(prima_H5T_STD_U8LE()), close: H5Tclose)
    }
}

/// Whether an HDF5 type stored in a file is the one the spec requires for `dtype` (class, size, sign, layout).
func hdf5Type(_ type: hid_t, matches dtype: DType) -> Bool {
    let expected = hdf5FileType(for: dtype)
    return H5Tequal(type, expected.id) > 0
}

/// An open HDF5 file.
public final class HDF5File: @unchecked Sendable {
    /// The path it was opened or created with.
    public let path: String
    let handle: HDF5Handle
    /// For a file opened (not created) by this process: its size on disk when opened, the bound every
    /// dataset's storage must lie within. Nil for a file this process is writing.
    let sizeOnDisk: Int?

    private init(path: String, id: hid_t, sizeOnDisk: Int? = nil) {
        self.path = path
        self.handle = HDF5Handle(id, close: H5Fclose)
        self.sizeOnDisk = sizeOnDisk
    }

    /// Creates (truncating) a file with the format's pinned settings: library-version bounds 1.8–1.10,
    /// creation order tracked on the root group, 64-byte alignment of objects of 4 KiB or more.
    public static func create(path: String) throws -> HDF5File {
        try HDF5.locked {
            let fapl = HDF5Handle(try HDF5.propertyList(prima_H5P_FILE_ACCESS(), path), close: H5Pclose)
            try HDF5.check(H5Pset_libver_bounds(fapl.id, H5F_LIBVER_V18, H5F_LIBVER_V110), path,
                           "cannot pin HDF5 library-version bounds")
            try HDF5.check(H5Pset_alignment(fapl.id, 4096, 64), path, "cannot set HDF5 alignment")
            // Closing with objects still open is a bug in the writer, reported by close() rather than deferred.
            try HDF5.check(H5Pset_fclose_degree(fapl.id, H5F_CLOSE_SEMI), path, "cannot set the close degree")
            try HDF5.check(H5Pset_file_locking(fapl.id, false, true), path, "cannot turn off HDF5 file locking")
            let fcpl = HDF5Handle(try HDF5.propertyList(prima_H5P_FILE_CREATE(), path), close: H5Pclose)
            try HDF5.check(H5Pset_link_creation_order(fcpl.id, UInt32(H5P_CRT_ORDER_TRACKED | H5P_CRT_ORDER_INDEXED)),
                           path, "cannot track link creation order")
            let id = try HDF5.check(H5Fcreate(path, prima_H5F_ACC_TRUNC(), fcpl.id, fapl.id), path,
                                    "cannot create HDF5 file")
            return HDF5File(path: path, id: id)
        }
    }

    /// Opens an existing file read-only (or read-write). A file that is not HDF5 or is truncated throws.
    ///
    /// Nothing in an opened file is trusted: before returning, the whole object tree is checked
    /// (``validateTree()``: a tree of plain links within the bounds of ``HDF5Limits``, every dataset stored
    /// contiguously or compact inside the file with exactly the bytes its shape needs, every attribute
    /// readable within bounds). In the tools, ``HDF5Probe`` first walks the file the same way in a child
    /// process, so that libhdf5 crashing on corrupted metadata becomes an error instead of a crash.
    public static func open(path: String, writable: Bool = false) throws -> HDF5File {
        let file = try HDF5.locked { () throws -> HDF5File in
            // Only a regular file (a FIFO, device or directory gets a one-line message, never a hang).
            try InputFile.check(path)
            try HDF5Probe.probeIfEnabled(path)
            if H5Fis_hdf5(path) <= 0 {
                H5Eclear2(prima_H5E_DEFAULT())
                throw HDF5Error(file: path, message: "not an HDF5 file")
            }
            let flags = writable ? prima_H5F_ACC_RDWR() : prima_H5F_ACC_RDONLY()
            // No flock: libhdf5 opens without O_CLOEXEC, so a process spawned meanwhile (by another thread) inherits
            // the descriptor and keeps the lock after we close it; the next open of the file then fails with
            // EAGAIN. Outputs are private temporaries until renamed, so the lock protects nothing here.
            let fapl = HDF5Handle(try HDF5.propertyList(prima_H5P_FILE_ACCESS(), path), close: H5Pclose)
            try HDF5.check(H5Pset_file_locking(fapl.id, false, true), path, "cannot turn off HDF5 file locking")
            let id = H5Fopen(path, flags, fapl.id)
            if id < 0 {
                throw HDF5Error(file: path, message: "cannot open HDF5 file (truncated or damaged?): "
                                + HDF5.lastErrorDescription())
            }
            // The size of the very file HDF5 has open (its descriptor), not of whatever the path names now.
            var size: Int? = nil
            var descriptor: UnsafeMutableRawPointer? = nil
            if H5Fget_vfd_handle(id, prima_H5P_DEFAULT(), &descriptor) >= 0, let descriptor {
                var status = stat()
                if fstat(descriptor.load(as: Int32.self), &status) == 0 { size = Int(status.st_size) }
            }
            H5Eclear2(prima_H5E_DEFAULT())
            guard let size else {
                _ = H5Fclose(id)
                throw HDF5Error(file: path, message: "cannot determine the size of the file")
            }
            return HDF5File(path: path, id: id, sizeOnDisk: size)
        }
        try file.validateTree()
        return file
    }

    /// The superblock version (0 or 1: written without library-version bounds, no metadata checksums;
    /// 2 or 3: HDF5 1.8+ bounds, superblock and object headers checksummed).
    public func superblockVersion() throws -> Int {
        try HDF5.locked {
            var info = H5F_info2_t()
            try HDF5.check(H5Fget_info2(handle.id, &info), path, "cannot read the superblock information")
            return Int(info.super.version)
        }
    }

    /// The root group.
    public func root() throws -> HDF5Group { try HDF5Group(file: self, path: "/") }

    /// Flushes HDF5's buffers to the file.
    public func flush() throws {
        try HDF5.locked { try HDF5.check(H5Fflush(handle.id, H5F_SCOPE_GLOBAL), path, "cannot flush") }
    }

    /// Closes the file now. A file this toolkit created refuses to close while groups or datasets of it are
    /// still referenced (drop them first).
    public func close() throws {
        try HDF5.locked { try HDF5.check(handle.close(), path, "cannot close (objects still open?)") }
    }
}

extension HDF5File {
    /// Checks the file's whole object tree, opening nothing through a soft link and reading no dataset:
    /// - every object is reached by exactly one chain of hard links from the root (a tree: no cycle, no second
    ///   link to an object), at most ``HDF5Limits/maxGroupDepth`` groups deep, with at most
    ///   ``HDF5Limits/maxLinks`` links and ``HDF5Limits/maxAttributes`` attributes in all;
    /// - names are plain (no `/`, no control characters, at most ``HDF5Limits/maxNameBytes`` bytes);
    /// - a soft link lies in a group named `tensors` and names a dataset of that group by its absolute path
    ///   (tied tensors, Formats/prima-checkpoint.md §5.3); external and user-defined links are refused;
    /// - every object is a group or a dataset, every dataset passes ``HDF5Dataset/validateForReading()``, and
    ///   every attribute can be read within ``HDF5Limits/maxAttributeBytes``.
    /// Throws the first problem, naming the object. O(number of objects and attributes).
    func validateTree() throws {
        var walk = TreeWalk(file: self)
        let root = try self.root()
        try HDF5.locked {
            var info = H5O_info_t()
            try root.check(H5Oget_info2(root.handle.id, &info, UInt32(H5O_INFO_BASIC)), "cannot inspect the root group")
            walk.reached[info.addr] = "/"
        }
        try walk.group(root, depth: 0)
    }
}

/// The state of one ``HDF5File/validateTree()``.
private struct TreeWalk {
    let file: HDF5File
    /// Object address → the path it was first reached by.
    var reached: [haddr_t: String] = [:]
    var links = 0
    var attributes = 0

    init(file: HDF5File) { self.file = file }

    func fail(_ path: String, _ what: String) -> HDF5Error {
        HDF5Error(file: file.path, message: "\(HDF5.printable(path)): \(what)")
    }

    /// Refuses a name that is empty, not UTF-8, holds `/` or a control character, or is too long.
    func checkName(_ name: String, in path: String, kind: String) throws {
        let bytes = Array(name.utf8)
        guard !bytes.isEmpty, bytes.count <= HDF5Limits.maxNameBytes,
              name.unicodeScalars.allSatisfy({ $0.value >= 0x20 && $0.value != 0x7F && !(0x80..<0xA0).contains($0.value) }),
              !name.unicodeScalars.contains("\u{FFFD}"), name != ".", !name.contains("/") else {
            throw fail(path, "\(kind) name \"\(HDF5.printable(String(name.prefix(64))))\" is not a plain name of at most \(HDF5Limits.maxNameBytes) bytes")
        }
    }

    /// Reads every attribute of `object` in its stored type.
    mutating func attributes(of object: HDF5Object) throws {
        let names = try object.attributeNames()
        attributes += names.count
        guard attributes <= HDF5Limits.maxAttributes else {
            throw fail(object.path, "more than \(HDF5Limits.maxAttributes) attributes in the file")
        }
        for name in names {
            try checkName(name, in: object.path, kind: "attribute")
            try HDF5.locked {
                try object.withRawAttribute(name) { type, _, _ in
                    // A reference points at an object or region of this file: no reader follows one, and a copy
                    // (prima-quantize) could not carry it into another file.
                    guard H5Tdetect_class(type, H5T_REFERENCE) <= 0 else {
                        throw fail(object.path, "attribute \(HDF5.printable(name)) holds HDF5 references (not part of the format)")
                    }
                }
            }
        }
    }

    mutating func group(_ group: HDF5Group, depth: Int) throws {
        try attributes(of: group)
        let names = try group.linkNames()
        links += names.count
        guard links <= HDF5Limits.maxLinks else { throw fail(group.path, "more than \(HDF5Limits.maxLinks) links in the file") }
        for name in names {
            try checkName(name, in: group.path, kind: "link")
            let path = group.childPath(name)
            let (type, address, objectType) = try HDF5.locked { () throws -> (H5L_type_t, haddr_t, H5O_type_t) in
                var info = H5L_info_t()
                try group.check(H5Lget_info(group.handle.id, name, &info, prima_H5P_DEFAULT()), "cannot inspect link \(name)")
                guard info.type == H5L_TYPE_HARD else { return (info.type, prima_HADDR_UNDEF(), H5O_TYPE_UNKNOWN) }
                var object = H5O_info_t()
                try group.check(H5Oget_info_by_name2(group.handle.id, name, &object, UInt32(H5O_INFO_BASIC), prima_H5P_DEFAULT()),
                                "cannot inspect \(name)")
                return (info.type, object.addr, object.type)
            }
            switch type {
            case H5L_TYPE_HARD:
                if let first = reached[address] {
                    throw fail(path, "a second hard link to \(HDF5.printable(first))\(first == "/" || path.hasPrefix(first + "/") ? " (a cycle)" : ""): the file must be a tree")
                }
                reached[address] = path
                switch objectType {
                case H5O_TYPE_GROUP:
                    guard depth < HDF5Limits.maxGroupDepth else {
                        throw fail(path, "groups nested deeper than \(HDF5Limits.maxGroupDepth)")
                    }
                    try self.group(try HDF5Group(file: file, path: path), depth: depth + 1)
                case H5O_TYPE_DATASET:
                    let dataset = try HDF5Dataset(file: file, path: path)
                    try dataset.validateForReading()
                    try attributes(of: dataset)
                default:
                    throw fail(path, "not a group or a dataset (committed datatypes and other objects are not read)")
                }
            case H5L_TYPE_SOFT:
                guard case .softLink(let target) = try group.linkKind(name) else { throw fail(path, "unreadable soft link") }
                let prefix = group.path + "/"
                let targetName = target.hasPrefix(prefix) ? String(target.dropFirst(prefix.count)) : ""
                guard (group.path as NSString).lastPathComponent == "tensors", !targetName.isEmpty, !targetName.contains("/"),
                      targetName != name, group.contains(targetName), case .dataset = try group.linkKind(targetName) else {
                    throw fail(path, "soft link to \"\(HDF5.printable(String(target.prefix(256))))\": soft links are allowed only in a tensors/ group, naming a dataset of that group (tied tensors)")
                }
            case H5L_TYPE_EXTERNAL:
                throw fail(path, "external link (to an object in another file)")
            default:
                throw fail(path, "user-defined link type \(type.rawValue)")
            }
        }
    }
}

/// The kind of a link inside a group.
public enum HDF5LinkKind: Sendable, Equatable {
    case group, dataset, softLink(target: String), other
}

/// Shared attribute reading and writing for groups and datasets.
public class HDF5Object: @unchecked Sendable {
    /// The file that holds the object.
    public let file: HDF5File
    /// The object's absolute path in the file.
    public let path: String
    let handle: HDF5Handle

    init(file: HDF5File, path: String, handle: HDF5Handle) {
        self.file = file
        self.path = path
        self.handle = handle
    }

    func fail(_ what: String) -> HDF5Error {
        HDF5Error(file: file.path, message: "\(HDF5.printable(path)): \(what)")
    }

    @discardableResult
    func check<T: BinaryInteger>(_ status: T, _ what: @autoclosure () -> String) throws -> T {
        if status < 0 { throw fail("\(what()): \(HDF5.lastErrorDescription())") }
        return status
    }

    /// Whether the object has an attribute `name`.
    public func hasAttribute(_ name: String) -> Bool {
        HDF5.locked {
            let exists = H5Aexists(handle.id, name)
            if exists < 0 { H5Eclear2(prima_H5E_DEFAULT()) }
            return exists > 0
        }
    }

    /// Names of all attributes, in name order.
    public func attributeNames() throws -> [String] {
        try HDF5.locked {
            var names: [String] = []
            var index: hsize_t = 0
            try withUnsafeMutablePointer(to: &names) { pointer in
                _ = try check(H5Aiterate2(handle.id, H5_INDEX_NAME, H5_ITER_INC, &index, { _, name, _, data in
                    guard let name, let data else { return -1 }
                    data.assumingMemoryBound(to: [String].self).pointee.append(String(cString: name))
                    return 0
                }, pointer), "cannot list attributes")
            }
            return names
        }
    }

    private func writeAttribute(_ name: String, type: hid_t, space: hid_t, _ buffer: UnsafeRawPointer) throws {
        if H5Aexists(handle.id, name) > 0 { try check(H5Adelete(handle.id, name), "cannot replace attribute \(name)") }
        H5Eclear2(prima_H5E_DEFAULT())
        let attribute = HDF5Handle(try check(H5Acreate2(handle.id, name, type, space, prima_H5P_DEFAULT(),
                                                        prima_H5P_DEFAULT()), "cannot create attribute \(name)"),
                                   close: H5Aclose)
        try check(H5Awrite(attribute.id, type, buffer), "cannot write attribute \(name)")
    }

    /// Writes a UTF-8 variable-length string attribute (replacing any existing one).
    public func setAttribute(_ name: String, string value: String) throws {
        try HDF5.locked {
            let type = HDF5Handle(H5Tcopy(prima_H5T_C_S1()), close: H5Tclose)
            H5Tset_size(type.id, prima_H5T_VARIABLE())
            H5Tset_cset(type.id, H5T_CSET_UTF8)
            let space = HDF5Handle(H5Screate(H5S_SCALAR), close: H5Sclose)
            try value.withCString { cString in
                var pointer: UnsafePointer<CChar>? = cString
                try writeAttribute(name, type: type.id, space: space.id, &pointer)
            }
        }
    }

    /// Writes a scalar int64 attribute.
    public func setAttribute(_ name: String, int value: Int) throws {
        try HDF5.locked {
            let space = HDF5Handle(H5Screate(H5S_SCALAR), close: H5Sclose)
            var value = Int64(value)
            try writeAttribute(name, type: prima_H5T_STD_I64LE(), space: space.id, &value)
        }
    }

    /// Writes a scalar float64 attribute.
    public func setAttribute(_ name: String, double value: Double) throws {
        try HDF5.locked {
            let space = HDF5Handle(H5Screate(H5S_SCALAR), close: H5Sclose)
            var value = value
            try writeAttribute(name, type: prima_H5T_IEEE_F64LE(), space: space.id, &value)
        }
    }

    /// Writes a 1-D float64 attribute.
    public func setAttribute(_ name: String, doubles values: [Double]) throws {
        try HDF5.locked {
            var dims = [hsize_t(values.count)]
            let space = HDF5Handle(H5Screate_simple(1, &dims, nil), close: H5Sclose)
            try values.withUnsafeBytes { try writeAttribute(name, type: prima_H5T_IEEE_F64LE(), space: space.id, $0.baseAddress!) }
        }
    }

    func openAttribute(_ name: String) throws -> HDF5Handle {
        guard H5Aexists(handle.id, name) > 0 else {
            H5Eclear2(prima_H5E_DEFAULT())
            throw fail("missing attribute \(name)")
        }
        return HDF5Handle(try check(H5Aopen(handle.id, name, prima_H5P_DEFAULT()), "cannot open attribute \(name)"),
                          close: H5Aclose)
    }

    /// Copies the attributes of `source` (possibly in another file) onto this object, each with its own HDF5
    /// type and dataspace and its bytes unchanged, except those named in `excluding`; an attribute of the same
    /// name here is replaced. Variable-length strings are copied as strings. Attributes holding references
    /// (meaningless in another file) are refused.
    public func copyAttributes(from source: HDF5Object, excluding: Set<String> = []) throws {
        for name in try source.attributeNames() where !excluding.contains(name) {
            try HDF5.locked {
                try source.withRawAttribute(name) { type, space, buffer in
                    guard H5Tdetect_class(type, H5T_REFERENCE) <= 0 else {
                        throw source.fail("attribute \(HDF5.printable(name)) holds references and cannot be copied")
                    }
                    try writeAttribute(name, type: type, space: space, UnsafeRawPointer(buffer.baseAddress!))
                }
            }
        }
    }

    /// Reads attribute `name` in its stored type (no conversion; at most ``HDF5Limits/maxAttributeBytes``)
    /// and passes its type, dataspace and bytes to `body`; variable-length data read with it is freed
    /// afterwards. The caller holds the lock.
    func withRawAttribute<R>(_ name: String,
                                         _ body: (hid_t, hid_t, UnsafeMutableRawBufferPointer) throws -> R) throws -> R {
        let attribute = try openAttribute(name)
        let type = HDF5Handle(H5Aget_type(attribute.id), close: H5Tclose)
        let space = HDF5Handle(H5Aget_space(attribute.id), close: H5Sclose)
        guard type.id >= 0, space.id >= 0 else { throw fail("cannot read attribute \(HDF5.printable(name)): \(HDF5.lastErrorDescription())") }
        let count = Int(H5Sget_simple_extent_npoints(space.id))
        let size = H5Tget_size(type.id)
        guard count >= 0, size > 0, count <= HDF5Limits.maxAttributeBytes / size else {
            throw fail("attribute \(HDF5.printable(name)) has an implausible size (\(count) elements of \(size) bytes)")
        }
        // Variable-length data comes back as pointers that H5Dvlen_reclaim frees once `body` is done.
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: max(count * size, 1), alignment: 16)
        defer { buffer.deallocate() }
        buffer.initializeMemory(as: UInt8.self, repeating: 0)
        try check(H5Aread(attribute.id, type.id, buffer.baseAddress), "cannot read attribute \(HDF5.printable(name))")
        let variable = H5Tis_variable_str(type.id) > 0 || H5Tdetect_class(type.id, H5T_VLEN) > 0
        defer { if variable { H5Dvlen_reclaim(type.id, space.id, prima_H5P_DEFAULT(), buffer.baseAddress) } }
        return try body(type.id, space.id, buffer)
    }

    /// Reads a string attribute (variable- or fixed-length). Throws if missing or not a scalar string.
    public func stringAttribute(_ name: String) throws -> String {
        try HDF5.locked {
            let attribute = try openAttribute(name)
            let type = HDF5Handle(H5Aget_type(attribute.id), close: H5Tclose)
            let space = HDF5Handle(H5Aget_space(attribute.id), close: H5Sclose)
            guard H5Tget_class(type.id) == H5T_STRING, H5Sget_simple_extent_npoints(space.id) == 1 else {
                throw fail("attribute \(name) is not a string")
            }
            if H5Tis_variable_str(type.id) > 0 {
                let memType = HDF5Handle(H5Tcopy(prima_H5T_C_S1()), close: H5Tclose)
                H5Tset_size(memType.id, prima_H5T_VARIABLE())
                H5Tset_cset(memType.id, H5Tget_cset(type.id))
                var pointer: UnsafeMutablePointer<CChar>? = nil
                try check(H5Aread(attribute.id, memType.id, &pointer), "cannot read attribute \(name)")
                defer { if let pointer { H5free_memory(pointer) } }
                return pointer.map { String(cString: $0) } ?? ""
            }
            let size = H5Tget_size(type.id)
            guard size > 0, size <= HDF5Limits.maxAttributeBytes else { throw fail("attribute \(name) has an implausible size \(size)") }
            var bytes = [UInt8](repeating: 0, count: size + 1)
            try check(H5Aread(attribute.id, type.id, &bytes), "cannot read attribute \(name)")
            let end = bytes.firstIndex(of: 0) ?? size
            return String(decoding: bytes[0..<end], as: UTF8.self)
        }
    }

    /// Reads a scalar integer attribute (any HDF5 integer type, converted to Int64).
    public func intAttribute(_ name: String) throws -> Int {
        try HDF5.locked {
            let attribute = try openAttribute(name)
            let type = HDF5Handle(H5Aget_type(attribute.id), close: H5Tclose)
            let space = HDF5Handle(H5Aget_space(attribute.id), close: H5Sclose)
            guard H5Tget_class(type.id) == H5T_INTEGER, H5Sget_simple_extent_npoints(space.id) == 1 else {
                throw fail("attribute \(name) is not a scalar integer")
            }
            var value: Int64 = 0
            try check(H5Aread(attribute.id, prima_H5T_NATIVE_INT64(), &value), "cannot read attribute \(name)")
            return Int(value)
        }
    }

    /// Reads a float attribute (scalar or 1-D; integer or float types are converted to Double).
    public func doublesAttribute(_ name: String) throws -> [Double] {
        try HDF5.locked {
            let attribute = try openAttribute(name)
            let type = HDF5Handle(H5Aget_type(attribute.id), close: H5Tclose)
            let space = HDF5Handle(H5Aget_space(attribute.id), close: H5Sclose)
            let typeClass = H5Tget_class(type.id)
            guard typeClass == H5T_FLOAT || typeClass == H5T_INTEGER else { throw fail("attribute \(name) is not numeric") }
            let count = Int(H5Sget_simple_extent_npoints(space.id))
            guard count >= 0, count < 1 << 20 else { throw fail("attribute \(name) has \(count) elements") }
            var values = [Double](repeating: 0, count: count)
            try check(H5Aread(attribute.id, prima_H5T_NATIVE_DOUBLE(), &values), "cannot read attribute \(name)")
            return values
        }
    }

    /// Whether attribute `name` exists and is stored with exactly the file type `type` (one value, or a 1-D list
    /// for ``HDF5AttributeType/float64List``). The readers above convert any integer or float type; the format
    /// fixes one type per field (Formats/prima-checkpoint.md, conventions and §3.3), which this checks.
    public func attribute(_ name: String, isStoredAs type: HDF5AttributeType) -> Bool {
        HDF5.locked {
            guard H5Aexists(handle.id, name) > 0 else {
                H5Eclear2(prima_H5E_DEFAULT())
                return false
            }
            let attribute = HDF5Handle(H5Aopen(handle.id, name, prima_H5P_DEFAULT()), close: H5Aclose)
            let stored = HDF5Handle(H5Aget_type(attribute.id), close: H5Tclose)
            let space = HDF5Handle(H5Aget_space(attribute.id), close: H5Sclose)
            guard attribute.id >= 0, stored.id >= 0, space.id >= 0 else {
                H5Eclear2(prima_H5E_DEFAULT())
                return false
            }
            let count = H5Sget_simple_extent_npoints(space.id), rank = H5Sget_simple_extent_ndims(space.id)
            switch type {
            case .int64: return count == 1 && H5Tequal(stored.id, prima_H5T_STD_I64LE()) > 0
            case .float64: return count == 1 && H5Tequal(stored.id, prima_H5T_IEEE_F64LE()) > 0
            case .float64List: return rank == 1 && H5Tequal(stored.id, prima_H5T_IEEE_F64LE()) > 0
            case .string: return count == 1 && H5Tget_class(stored.id) == H5T_STRING
            }
        }
    }

    /// How attribute `name` is stored, for messages: `a 32-bit signed integer`, `a 64-bit float`, `a string`, ….
    public func attributeTypeDescription(_ name: String) -> String {
        HDF5.locked {
            let attribute = HDF5Handle(H5Aopen(handle.id, name, prima_H5P_DEFAULT()), close: H5Aclose)
            let stored = HDF5Handle(H5Aget_type(attribute.id), close: H5Tclose)
            let space = HDF5Handle(H5Aget_space(attribute.id), close: H5Sclose)
            guard attribute.id >= 0, stored.id >= 0, space.id >= 0 else {
                H5Eclear2(prima_H5E_DEFAULT())
                return "unreadable"
            }
            let bits = H5Tget_size(stored.id) * 8
            let order = H5Tget_order(stored.id) == H5T_ORDER_BE ? " big-endian" : ""
            let kind: String
            switch H5Tget_class(stored.id) {
            case H5T_INTEGER: kind = "a \(bits)-bit\(order) \(H5Tget_sign(stored.id) == H5T_SGN_NONE ? "unsigned" : "signed") integer"
            case H5T_FLOAT: kind = "a \(bits)-bit\(order) float"
            case H5T_STRING: kind = "a string"
            default: kind = "a non-numeric, non-string value"
            }
            let count = H5Sget_simple_extent_npoints(space.id)
            return count == 1 ? kind : "\(kind) array of \(count) elements"
        }
    }

    /// Reads a scalar float attribute.
    public func doubleAttribute(_ name: String) throws -> Double {
        let values = try doublesAttribute(name)
        guard values.count == 1 else { throw fail("attribute \(name) is not a scalar") }
        return values[0]
    }
}

/// An HDF5 group.
public final class HDF5Group: HDF5Object, @unchecked Sendable {
    init(file: HDF5File, path: String) throws {
        let id = try HDF5.locked {
            try HDF5.check(H5Gopen2(file.handle.id, path, prima_H5P_DEFAULT()), file.path, "\(path): cannot open group")
        }
        super.init(file: file, path: path, handle: HDF5Handle(id, close: H5Gclose))
    }

    func childPath(_ name: String) -> String { path == "/" ? "/" + name : path + "/" + name }

    /// Creates a child group with link creation order tracked and indexed.
    public func createGroup(_ name: String) throws -> HDF5Group {
        try HDF5.locked {
            let gcpl = HDF5Handle(try HDF5.propertyList(prima_H5P_GROUP_CREATE(), file.path), close: H5Pclose)
            try check(H5Pset_link_creation_order(gcpl.id, UInt32(H5P_CRT_ORDER_TRACKED | H5P_CRT_ORDER_INDEXED)),
                      "cannot track creation order")
            let id = try check(H5Gcreate2(handle.id, name, prima_H5P_DEFAULT(), gcpl.id, prima_H5P_DEFAULT()),
                               "cannot create group \(name)")
            _ = H5Gclose(id)
        }
        return try HDF5Group(file: file, path: childPath(name))
    }

    /// Opens a child group; throws a message naming it if it is missing or not a group.
    public func group(_ name: String) throws -> HDF5Group {
        guard case .group = try linkKind(name) else { throw fail("\(name) is not a group") }
        return try HDF5Group(file: file, path: childPath(name))
    }

    /// Opens a child dataset (following soft links); throws if missing or not a dataset.
    public func dataset(_ name: String) throws -> HDF5Dataset {
        switch try linkKind(name) {
        case .dataset, .softLink: return try HDF5Dataset(file: file, path: childPath(name))
        default: throw fail("\(name) is not a dataset")
        }
    }

    /// Whether a link `name` exists in this group.
    public func contains(_ name: String) -> Bool {
        HDF5.locked {
            let exists = H5Lexists(handle.id, name, prima_H5P_DEFAULT())
            if exists < 0 { H5Eclear2(prima_H5E_DEFAULT()) }
            return exists > 0
        }
    }

    /// What the link `name` is; throws if it does not exist.
    public func linkKind(_ name: String) throws -> HDF5LinkKind {
        try HDF5.locked {
            guard !name.contains("/"), H5Lexists(handle.id, name, prima_H5P_DEFAULT()) > 0 else {
                H5Eclear2(prima_H5E_DEFAULT())
                throw fail("missing \(name)")
            }
            var info = H5L_info_t()
            try check(H5Lget_info(handle.id, name, &info, prima_H5P_DEFAULT()), "cannot inspect link \(name)")
            switch info.type {
            case H5L_TYPE_SOFT:
                let size = info.u.val_size
                guard size > 0, size < 1 << 16 else { throw fail("soft link \(name) has a bad value size") }
                var buffer = [CChar](repeating: 0, count: size + 1)
                try check(H5Lget_val(handle.id, name, &buffer, size, prima_H5P_DEFAULT()), "cannot read soft link \(name)")
                let bytes = buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }
                return .softLink(target: String(decoding: bytes, as: UTF8.self))
            case H5L_TYPE_HARD:
                var objectInfo = H5O_info_t()
                try check(H5Oget_info_by_name2(handle.id, name, &objectInfo, UInt32(H5O_INFO_BASIC), prima_H5P_DEFAULT()),
                          "cannot inspect \(name)")
                switch objectInfo.type {
                case H5O_TYPE_GROUP: return .group
                case H5O_TYPE_DATASET: return .dataset
                default: return .other
                }
            default:
                return .other
            }
        }
    }

    /// Names of the links in this group, in creation order when the group tracks it (files this toolkit
    /// writes), otherwise in name order (files written by other tools).
    public func linkNames() throws -> [String] {
        try HDF5.locked {
            let gcpl = HDF5Handle(H5Gget_create_plist(handle.id), close: H5Pclose)
            var flags: UInt32 = 0
            H5Pget_link_creation_order(gcpl.id, &flags)
            let indexed = flags & UInt32(H5P_CRT_ORDER_INDEXED) != 0
            var names: [String] = []
            var index: hsize_t = 0
            try withUnsafeMutablePointer(to: &names) { pointer in
                _ = try check(H5Literate(handle.id, indexed ? H5_INDEX_CRT_ORDER : H5_INDEX_NAME, H5_ITER_INC, &index,
                                         { _, name, _, data in
                                             guard let name, let data else { return -1 }
                                             data.assumingMemoryBound(to: [String].self).pointee.append(String(cString: name))
                                             return 0
                                         }, pointer), "cannot list links")
            }
            return names
        }
    }

    /// Creates a soft link `name` → `target` (an absolute path in the file).
    public func createSoftLink(_ name: String, target: String) throws {
        try HDF5.locked {
            try check(H5Lcreate_soft(target, handle.id, name, prima_H5P_DEFAULT(), prima_H5P_DEFAULT()),
                      "cannot create soft link \(name)")
        }
    }

    /// Copies the object `name` of group `source` (possibly in another file) into this group as `newName`:
    /// a dataset with its layout, data and attributes byte for byte; a group with everything under it (soft
    /// links stay soft links with the same value; creation-order tracking is kept).
    ///
    /// H5Ocopy copies the objects without their attributes, which are then copied one by one with
    /// ``HDF5Object/copyAttributes(from:excluding:)``: HDF5 before 1.14.4 dereferences a null pointer when
    /// H5Ocopy copies variable-length string attributes held in dense storage (more than 8 attributes, as in
    /// every `config/` group) — HDFGroup/hdf5 issues #2414 and #3214, fixed by pull request #3967.
    public func copyObject(_ name: String, from source: HDF5Group, as newName: String? = nil) throws {
        let destinationName = newName ?? name
        try HDF5.locked {
            let ocpypl = HDF5Handle(try HDF5.propertyList(prima_H5P_OBJECT_COPY(), file.path), close: H5Pclose)
            try check(H5Pset_copy_object(ocpypl.id, UInt32(H5O_COPY_WITHOUT_ATTR_FLAG)), "cannot set object-copy flags")
            try check(H5Ocopy(source.handle.id, name, handle.id, destinationName, ocpypl.id, prima_H5P_DEFAULT()),
                      "cannot copy \(source.childPath(name)) from \(source.file.path)")
        }
        try Self.copyAttributesRecursively(from: source, name, to: self, destinationName)
    }

    /// Copies the attributes of `source/name` onto `destination/destinationName` and, for a group, of every
    /// group and dataset under it (soft links have no attributes). An opened source file is a tree
    /// (``HDF5File/validateTree()``); `depth` bounds the recursion all the same.
    private static func copyAttributesRecursively(from source: HDF5Group, _ name: String, to destination: HDF5Group,
                                                  _ destinationName: String, depth: Int = 0) throws {
        guard depth <= HDF5Limits.maxGroupDepth else {
            throw source.fail("groups nested deeper than \(HDF5Limits.maxGroupDepth) under \(HDF5.printable(name))")
        }
        switch try source.linkKind(name) {
        case .dataset:
            try destination.dataset(destinationName).copyAttributes(from: try source.dataset(name))
        case .group:
            let sourceGroup = try source.group(name), destinationGroup = try destination.group(destinationName)
            try destinationGroup.copyAttributes(from: sourceGroup)
            for child in try sourceGroup.linkNames() {
                switch try sourceGroup.linkKind(child) {
                case .dataset, .group:
                    try copyAttributesRecursively(from: sourceGroup, child, to: destinationGroup, child, depth: depth + 1)
                default: break
                }
            }
        default:
            break
        }
    }

    /// Creates a contiguous, unfiltered dataset of `dtype` and `shape` whose data will be written later
    /// (fill values are never written: each byte is written exactly once by the caller). Its file space is
    /// allocated at once, so ``HDF5Dataset/fileOffset`` is valid immediately.
    public func createDataset(_ name: String, dtype: DType, shape: [Int]) throws -> HDF5Dataset {
        try HDF5.locked {
            let type = hdf5FileType(for: dtype)
            let space: HDF5Handle
            if shape.isEmpty {
                space = HDF5Handle(H5Screate(H5S_SCALAR), close: H5Sclose)
            } else {
                var dims = shape.map { hsize_t($0) }
                space = HDF5Handle(H5Screate_simple(Int32(dims.count), &dims, nil), close: H5Sclose)
            }
            let dcpl = HDF5Handle(try HDF5.propertyList(prima_H5P_DATASET_CREATE(), file.path), close: H5Pclose)
            try check(H5Pset_layout(dcpl.id, H5D_CONTIGUOUS), "cannot set contiguous layout for \(name)")
            try check(H5Pset_fill_time(dcpl.id, H5D_FILL_TIME_NEVER), "cannot disable fill for \(name)")
            try check(H5Pset_alloc_time(dcpl.id, H5D_ALLOC_TIME_EARLY), "cannot allocate \(name) early")
            let id = try check(H5Dcreate2(handle.id, name, type.id, space.id, prima_H5P_DEFAULT(), dcpl.id,
                                          prima_H5P_DEFAULT()), "cannot create dataset \(name)")
            _ = H5Dclose(id)
        }
        return try HDF5Dataset(file: file, path: childPath(name))
    }

    /// Writes `bytes` as a 1-D uint8 dataset (verbatim files, Formats/prima-checkpoint.md §3.2).
    public func writeBytes(_ name: String, _ bytes: [UInt8]) throws {
        let dataset = try createDataset(name, dtype: .u8, shape: [bytes.count])
        try bytes.withUnsafeBytes { try dataset.writeAll($0) }
    }
}

/// An HDF5 dataset.
public final class HDF5Dataset: HDF5Object, @unchecked Sendable {
    /// The dataset's shape (`[]` for a scalar).
    public let shape: [Int]
    /// Number of elements (the product of `shape`; checked not to overflow when the dataset was opened).
    public let elementCount: Int
    /// Whether the storage has been checked (``validateForReading()``); guarded by the HDF5 lock.
    private var storageValidated = false

    init(file: HDF5File, path: String) throws {
        let (id, shape) = try HDF5.locked { () throws -> (hid_t, [Int]) in
            let id = try HDF5.check(H5Dopen2(file.handle.id, path, prima_H5P_DEFAULT()), file.path,
                                    "\(HDF5.printable(path)): cannot open dataset")
            func refuse(_ what: String) -> HDF5Error {
                _ = H5Dclose(id)
                H5Eclear2(prima_H5E_DEFAULT())
                return HDF5Error(file: file.path, message: "\(HDF5.printable(path)): \(what)")
            }
            let space = HDF5Handle(H5Dget_space(id), close: H5Sclose)
            let spaceClass = H5Sget_simple_extent_type(space.id)
            guard spaceClass == H5S_SCALAR || spaceClass == H5S_SIMPLE else {
                throw refuse("unsupported dataspace (not a scalar or an array)")
            }
            let rank = H5Sget_simple_extent_ndims(space.id)
            guard rank >= 0, rank <= 32 else { throw refuse("unsupported dataspace") }
            var dims = [hsize_t](repeating: 0, count: Int(rank))
            guard H5Sget_simple_extent_dims(space.id, &dims, nil) == rank else { throw refuse("cannot read its shape") }
            var shape: [Int] = []
            var count = 1
            for dim in dims {
                guard let value = Int(exactly: dim) else { throw refuse("declares an impossible shape \(dims)") }
                let (product, overflow) = count.multipliedReportingOverflow(by: value)
                guard !overflow else { throw refuse("declares an impossible shape \(dims) (element count overflows)") }
                shape.append(value)
                count = product
            }
            return (id, shape)
        }
        self.shape = shape
        self.elementCount = shape.reduce(1, *)
        super.init(file: file, path: path, handle: HDF5Handle(id, close: H5Dclose))
    }

    /// Checks, before the first read of a file opened for reading, that the dataset's bytes are where and
    /// what they may be (Formats/prima-checkpoint.md, "Untrusted files"): a contiguous layout inside the file,
    /// or compact (inside its object header, at most ``HDF5Limits/maxCompactBytes``); no external storage
    /// (another file, or a FIFO or device), no virtual layout (other datasets or files), no chunks, no filters;
    /// an integer or float element type; storage of exactly shape × element size bytes, all of it inside the
    /// file on disk. Every read path calls it; a file this process created is not checked.
    public func validateForReading() throws {
        guard let fileSize = file.sizeOnDisk else { return }
        try HDF5.locked {
            if storageValidated { return }
            let dcpl = HDF5Handle(H5Dget_create_plist(handle.id), close: H5Pclose)
            guard dcpl.id >= 0 else { throw fail("cannot read its creation properties: \(HDF5.lastErrorDescription())") }
            let layout = H5Pget_layout(dcpl.id)
            if layout == H5D_VIRTUAL { throw fail("virtual dataset (its data would come from other datasets or files)") }
            let external = H5Pget_external_count(dcpl.id)
            if external != 0 { throw fail("stored outside the file (external storage)") }
            if H5Pget_nfilters(dcpl.id) != 0 { throw fail("filtered storage (compression or other HDF5 filters) is not read") }
            guard layout == H5D_CONTIGUOUS || layout == H5D_COMPACT else {
                throw fail(layout == H5D_CHUNKED ? "chunked storage is not read (datasets must be contiguous)"
                                                 : "unknown storage layout")
            }
            let type = HDF5Handle(H5Dget_type(handle.id), close: H5Tclose)
            let typeClass = H5Tget_class(type.id)
            let elementSize = H5Tget_size(type.id)
            guard typeClass == H5T_INTEGER || typeClass == H5T_FLOAT, elementSize > 0,
                  elementSize <= HDF5Limits.maxElementBytes else {
                throw fail("unsupported element type (only integers and floats are read)")
            }
            let (needed, overflow) = elementCount.multipliedReportingOverflow(by: elementSize)
            guard !overflow else { throw fail("declares an impossible shape \(shape)") }
            guard needed <= fileSize else {
                throw fail("declares \(needed) bytes (shape \(shape)), more than the whole file (\(fileSize) bytes)")
            }
            let stored = H5Dget_storage_size(handle.id)
            H5Eclear2(prima_H5E_DEFAULT())
            guard stored == hsize_t(needed) else {
                if stored == 0 { throw fail("declares \(needed) bytes (shape \(shape)) but has no data in the file") }
                throw fail("stores \(stored) bytes, but shape \(shape) × \(elementSize)-byte elements needs \(needed)")
            }
            if layout == H5D_COMPACT {
                guard needed <= HDF5Limits.maxCompactBytes else { throw fail("compact dataset larger than 64 KiB") }
            } else if needed > 0 {
                let address = H5Dget_offset(handle.id)
                H5Eclear2(prima_H5E_DEFAULT())
                guard address != prima_HADDR_UNDEF(), let offset = Int(exactly: address),
                      offset <= fileSize - needed else {
                    throw fail("data at offset \(address == prima_HADDR_UNDEF() ? "(undefined)" : String(address)) + \(needed) bytes lies outside the file (\(fileSize) bytes)")
                }
            }
            storageValidated = true
        }
    }

    /// Whether the stored HDF5 type is the spec's type for `dtype` (§5.2).
    public func storedTypeMatches(_ dtype: DType) -> Bool {
        HDF5.locked {
            let type = HDF5Handle(H5Dget_type(handle.id), close: H5Tclose)
            return hdf5Type(type.id, matches: dtype)
        }
    }

    /// The size in bytes of one stored element.
    public var elementSize: Int {
        HDF5.locked {
            let type = HDF5Handle(H5Dget_type(handle.id), close: H5Tclose)
            return H5Tget_size(type.id)
        }
    }

    /// Whether the dataset is contiguous and unfiltered, as the format requires for tensors.
    public var isContiguousUnfiltered: Bool {
        HDF5.locked {
            let dcpl = HDF5Handle(H5Dget_create_plist(handle.id), close: H5Pclose)
            return H5Pget_layout(dcpl.id) == H5D_CONTIGUOUS && H5Pget_nfilters(dcpl.id) == 0
        }
    }

    /// Selects rows `[start, start+count)` of dimension 0 in the file and a matching memory space.
    private func rowSelection(start: Int, count: Int) throws -> (file: HDF5Handle, memory: HDF5Handle) {
        let fileSpace = HDF5Handle(H5Dget_space(handle.id), close: H5Sclose)
        guard !shape.isEmpty else { return (fileSpace, HDF5Handle(H5Screate(H5S_SCALAR), close: H5Sclose)) }
        precondition(start >= 0 && count >= 0 && start + count <= shape[0], "row range outside \(path)")
        var offset = [hsize_t](repeating: 0, count: shape.count)
        offset[0] = hsize_t(start)
        var counts = shape.map { hsize_t($0) }
        counts[0] = hsize_t(count)
        try check(H5Sselect_hyperslab(fileSpace.id, H5S_SELECT_SET, &offset, nil, &counts, nil), "cannot select rows")
        let memory = HDF5Handle(H5Screate_simple(Int32(counts.count), &counts, nil), close: H5Sclose)
        return (fileSpace, memory)
    }

    /// Writes rows `[start, start+count)` of dimension 0 from `bytes` (raw, stored type; no conversion).
    /// A scalar dataset takes `start == 0, count == 1`.
    public func writeRows(start: Int, count: Int, from bytes: UnsafeRawBufferPointer) throws {
        guard count > 0 else { return }
        try HDF5.locked {
            let type = HDF5Handle(H5Dget_type(handle.id), close: H5Tclose)
            let (fileSpace, memory) = try rowSelection(start: start, count: count)
            try check(H5Dwrite(handle.id, type.id, memory.id, fileSpace.id, prima_H5P_DEFAULT(), bytes.baseAddress),
                      "cannot write rows \(start)..<\(start + count)")
        }
    }

    /// Reads rows `[start, start+count)` of dimension 0 into `bytes` (raw, stored type), after
    /// ``validateForReading()``.
    public func readRows(start: Int, count: Int, into bytes: UnsafeMutableRawBufferPointer) throws {
        guard count > 0 else { return }
        try validateForReading()
        try HDF5.locked {
            let type = HDF5Handle(H5Dget_type(handle.id), close: H5Tclose)
            let (fileSpace, memory) = try rowSelection(start: start, count: count)
            try check(H5Dread(handle.id, type.id, memory.id, fileSpace.id, prima_H5P_DEFAULT(), bytes.baseAddress),
                      "cannot read rows \(start)..<\(start + count)")
        }
    }

    /// The byte offset of the data in the file, for a contiguous dataset whose space is allocated; nil
    /// otherwise (chunked, compact, or not yet allocated), and nil for a dataset of an opened file that fails
    /// ``validateForReading()`` (its reads then throw the reason).
    public var fileOffset: Int? {
        if file.sizeOnDisk != nil, (try? validateForReading()) == nil { return nil }
        return HDF5.locked {
            let address = H5Dget_offset(handle.id)
            H5Eclear2(prima_H5E_DEFAULT())
            return address == prima_HADDR_UNDEF() ? nil : Int(exactly: address)
        }
    }

    /// Writes the whole dataset from `bytes` (raw, stored type).
    public func writeAll(_ bytes: UnsafeRawBufferPointer) throws {
        try writeRows(start: 0, count: shape.first ?? 1, from: bytes)
    }

    /// Reads the whole dataset (raw, stored type). Use for small data: files, attributes-like datasets.
    public func readAllBytes(limit: Int = 1 << 30) throws -> [UInt8] {
        try validateForReading()
        let (byteCount, overflow) = elementCount.multipliedReportingOverflow(by: elementSize)
        guard !overflow, byteCount <= limit else { throw fail("dataset of \(byteCount) bytes exceeds the \(limit)-byte limit") }
        var bytes = [UInt8](repeating: 0, count: byteCount)
        if elementCount > 0 { try bytes.withUnsafeMutableBytes { try readRows(start: 0, count: shape.first ?? 1, into: $0) } }
        return bytes
    }
}

/// The file types the format gives its attributes (Formats/prima-checkpoint.md, conventions): "int" is a 64-bit
/// signed little-endian integer, a real a float64, a list of reals a 1-D float64 array, a string any HDF5 string.
public enum HDF5AttributeType: Sendable {
    case int64, float64, float64List, string
}
