import PrimaJSON

/// The `model.safetensors.index.json` of a sharded checkpoint, as transformers writes it:
/// `{"metadata": {"total_size": <bytes>, …}, "weight_map": {<tensor>: <shard file name>, …}}`.
///
/// Parsing checks the JSON's shape and that every shard name is a plain file name, so the index cannot point
/// outside its directory. Checking the index against the shards themselves is ``SafetensorsModel``'s job.
public struct SafetensorsIndex: Sendable {
    /// The index file's path.
    public let path: String
    /// `metadata.total_size`, the sum of all tensors' byte counts, if the index states it.
    public let totalSize: Int?
    /// Tensor name → shard file name.
    public let weightMap: [String: String]
    /// The distinct shard file names, sorted (for `model-0000k-of-0000n` names, that is shard order).
    public let shardFileNames: [String]

    /// Indexes larger than this are refused before being read. Real ones are at most a few MB; the limit is the
    /// safetensors header limit, as an index names the same tensors.
    public static let maxFileSize = SafetensorsFile.maxHeaderLength

    /// Reads and checks the index at `path`.
    public init(path: String) throws(SafetensorsError) {
        let bytes = try readSmallFile(path, limit: SafetensorsIndex.maxFileSize)
        let root: JSONValue
        do {
            root = try JSON.parse(bytes)
        } catch {
            throw SafetensorsError(path: path, "not valid JSON: \(error)")
        }
        guard case .object(let object) = root else { throw SafetensorsError(path: path, "not a JSON object (it is \(article(root)))") }

        var totalSize: Int?
        if let metadata = object["metadata"] {
            guard case .object(let fields) = metadata else {
                throw SafetensorsError(path: path, "\"metadata\" is \(article(metadata)), expected an object")
            }
            if let value = fields["total_size"] {
                guard let size = value.number.flatMap(SafetensorsIndex.byteCount) else {
                    throw SafetensorsError(path: path, "\"metadata.total_size\" is \(excerpt(value)), expected a non-negative integer")
                }
                totalSize = size
            }
        }

        guard let mapValue = object["weight_map"] else { throw SafetensorsError(path: path, "missing \"weight_map\"") }
        guard case .object(let map) = mapValue else {
            throw SafetensorsError(path: path, "\"weight_map\" is \(article(mapValue)), expected an object mapping tensor names to shard files")
        }
        var weightMap: [String: String] = [:]
        weightMap.reserveCapacity(map.count)
        var shards = Set<String>()
        for (tensor, value) in map {
            guard case .string(let shard) = value else {
                throw SafetensorsError(path: path, tensor: tensor, "shard is \(article(value)), expected a file name")
            }
            guard SafetensorsIndex.isPlainFileName(shard) else {
                throw SafetensorsError(path: path, tensor: tensor,
                                       "shard \(JSON.quoted(shard)) is not a plain file name in the index's directory")
            }
            // A shard is a .safetensors file: not the index itself, config.json or another file of the directory.
            guard shard.hasSuffix(".safetensors") else {
                throw SafetensorsError(path: path, tensor: tensor, "shard \(JSON.quoted(shard)) is not a .safetensors file")
            }
            weightMap[tensor] = shard
            shards.insert(shard)
        }
        self.path = path
        self.totalSize = totalSize
        self.weightMap = weightMap
        self.shardFileNames = shards.sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }
    }

    /// `number` as a byte count: a non-negative integer that fits `Int`. Some writers store `total_size` as a
    /// float (`1234.0`), so an integral value written with a fraction or exponent counts too.
    private static func byteCount(_ number: JSONNumber) -> Int? {
        if let exact = number.uint64 { return Int(exactly: exact) }
        let value = number.double
        return value >= 0 && value.rounded() == value ? Int(exactly: value) : nil
    }

    /// True for a name that stays in the directory: not empty, not `.` or `..`, no `/` (so not absolute), and
    /// no `\` or NUL, which some systems treat as separators or terminators.
    static func isPlainFileName(_ name: String) -> Bool {
        !name.isEmpty && name != "." && name != ".." && !name.utf8.contains { $0 == UInt8(ascii: "/") || $0 == UInt8(ascii: "\\") || $0 == 0 }
    }
}

/// The safetensors weights of a model directory: either one `model.safetensors`, or a
/// `model.safetensors.index.json` and the shards it names.
///
/// Opening validates every file and, for a sharded model, the index against the shards: each shard exists, each
/// tensor is in exactly one shard and it is the one the index names, the index lists every tensor, and
/// `total_size` (if given) is the sum of the tensors' sizes. Having both a single file and an index is an error,
/// because which one holds the weights would be a guess.
public struct SafetensorsModel: Sendable {
    /// A tensor and the file holding it.
    public struct Weight: Sendable {
        /// The tensor's entry in `file`.
        public let entry: SafetensorsEntry
        /// The file to read it from.
        public let file: SafetensorsFile
    }

    /// The single-file weights' name.
    public static let singleFileName = "model.safetensors"
    /// The index's name in a sharded checkpoint.
    public static let indexFileName = "model.safetensors.index.json"

    /// The model directory.
    public let directory: String
    /// The index, for a sharded checkpoint.
    public let index: SafetensorsIndex?
    /// The open files: the single file, or the shards in ``SafetensorsIndex/shardFileNames`` order.
    public let files: [SafetensorsFile]
    /// Every tensor, in file order and then data order within each file.
    public let weights: [Weight]
    private let positions: [String: Int]

    /// Opens the weights in `directory`.
    public init(directory: String) throws(SafetensorsError) {
        let singlePath = joinPath(directory, SafetensorsModel.singleFileName)
        let indexPath = joinPath(directory, SafetensorsModel.indexFileName)
        let hasSingle = pathExists(singlePath)
        let hasIndex = pathExists(indexPath)
        if hasSingle && hasIndex {
            throw SafetensorsError(path: directory,
                                   "both \(SafetensorsModel.singleFileName) and \(SafetensorsModel.indexFileName) exist, so which holds the weights is ambiguous")
        }
        var files: [SafetensorsFile] = []
        var index: SafetensorsIndex?
        if hasSingle {
            files = [try SafetensorsFile(path: singlePath)]
        } else if hasIndex {
            let shardIndex = try SafetensorsIndex(path: indexPath)
            for shard in shardIndex.shardFileNames {
                let shardPath = joinPath(directory, shard)
                guard pathExists(shardPath) else {
                    throw SafetensorsError(path: indexPath, "shard \(displayName(shard)) is listed in weight_map but does not exist")
                }
                files.append(try SafetensorsFile(path: shardPath))
            }
            try SafetensorsModel.check(shardIndex, against: files)
            index = shardIndex
        } else {
            throw SafetensorsError(path: directory, "no \(SafetensorsModel.singleFileName) or \(SafetensorsModel.indexFileName)")
        }

        var weights: [Weight] = []
        var positions: [String: Int] = [:]
        for file in files {
            for entry in file.entries {
                // Names are unique within a file, and check(_:against:) made them unique across shards.
                positions[entry.name] = weights.count
                weights.append(Weight(entry: entry, file: file))
            }
        }
        self.directory = directory
        self.index = index
        self.files = files
        self.weights = weights
        self.positions = positions
    }

    /// The tensor named `name`, or nil.
    public func weight(named name: String) -> Weight? { positions[name].map { weights[$0] } }

    /// Checks the index against the opened shards, which are in `index.shardFileNames` order.
    private static func check(_ index: SafetensorsIndex, against shards: [SafetensorsFile]) throws(SafetensorsError) {
        // Where each tensor actually is, found first, so a tensor in two shards is reported as that rather than
        // as a disagreement with the index.
        var location: [String: String] = [:]
        var totalBytes = 0
        for (shardName, shard) in zip(index.shardFileNames, shards) {
            for entry in shard.entries {
                if let other = location.updateValue(shardName, forKey: entry.name) {
                    throw SafetensorsError(path: shard.path, tensor: entry.name,
                                           "also in shard \(displayName(other)); a tensor must be in exactly one shard")
                }
                totalBytes += entry.byteCount
            }
        }
        for (shardName, shard) in zip(index.shardFileNames, shards) {
            for entry in shard.entries {
                guard let listed = index.weightMap[entry.name] else {
                    throw SafetensorsError(path: shard.path, tensor: entry.name, "not listed in the index's weight_map")
                }
                guard listed == shardName else {
                    throw SafetensorsError(path: index.path, tensor: entry.name,
                                           "weight_map names shard \(displayName(listed)), but the tensor is in \(displayName(shardName))")
                }
            }
        }
        // Every listed tensor is now known to be where it is listed, or absent from all shards.
        for tensor in index.weightMap.keys.sorted() where location[tensor] == nil {
            throw SafetensorsError(path: index.path, tensor: tensor,
                                   "listed in weight_map for shard \(displayName(index.weightMap[tensor] ?? "")), which does not contain it")
        }
        if let totalSize = index.totalSize, totalSize != totalBytes {
            throw SafetensorsError(path: index.path,
                                   "metadata.total_size is \(totalSize) bytes but the shards hold \(totalBytes) bytes of tensor data")
        }
    }
}
