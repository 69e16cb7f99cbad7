import Foundation
import PrimaCheckpoint
import PrimaJSON
import PrimaQuantize
import PrimaTensor
import PrimaTestSupport
import Testing

/// Fixtures, tools and checkpoint comparisons shared by the quantiser's tool tests.
enum Support {
    static let repositoryRoot = TestProcess.repositoryRoot
    static let fixtures = repositoryRoot + "/Fixtures/models"

    /// The fixture names of Fixtures/models/manifest.json.
    static let fixtureNames: [String] = {
        guard let data = FileManager.default.contents(atPath: fixtures + "/manifest.json"),
              let list = try? JSON.parse([UInt8](data)).array else { return [] }
        return list.compactMap { $0.object?["name"]?.string }
    }()

    static func temporaryDirectory() -> String { TestProcess.temporaryDirectory("prima-quantize-tests") }

    static func quantize(_ arguments: String...) throws -> TestProcess.Result {
        try TestProcess.run(TestProcess.binary("prima-quantize"), arguments)
    }

    static func convert(_ arguments: String...) throws -> TestProcess.Result {
        try TestProcess.run(TestProcess.binary("prima-convert"), arguments)
    }

    /// Imports fixture `name` into `work/name.h5` with prima-convert and returns the path.
    static func imported(_ name: String, in work: String) throws -> String {
        let path = work + "/\(name).h5"
        let result = try convert("import", fixtures + "/" + name, "-o", path, "--no-progress")
        #expect(result.status == 0, "import \(name): \(result.stderr)")
        return path
    }

    /// A Python with the named modules, if the machine has one (tests that need it say so when skipping).
    static func python(with modules: [String]) -> String? {
        var candidates = [String]()
        if let configured = ProcessInfo.processInfo.environment["PRIMA_PYTHON"] { candidates.append(configured) }
        candidates += ["/work/venv-ref/bin/python", "/usr/bin/python3"]
        for candidate in candidates where FileManager.default.isExecutableFile(atPath: candidate) {
            let check = try? TestProcess.run(candidate, ["-c", "import " + modules.joined(separator: ", ")])
            if check?.status == 0 { return candidate }
        }
        return nil
    }

    /// Every attribute of an object as comparable text (strings verbatim, integers, reals by bit pattern).
    static func attributes(_ object: HDF5Object) throws -> [String: String] {
        var result: [String: String] = [:]
        for name in try object.attributeNames() {
            if let string = try? object.stringAttribute(name) {
                result[name] = "string " + string
            } else if let int = try? object.intAttribute(name) {
                result[name] = "int \(int)"
            } else if let doubles = try? object.doublesAttribute(name) {
                result[name] = "reals " + doubles.map { String($0.bitPattern, radix: 16) }.joined(separator: ",")
            } else {
                result[name] = "unreadable"
            }
        }
        return result
    }

    /// Checks that the object `name` of `b` is an exact copy of the one in `a`: same link kinds and soft-link
    /// values, same attributes, same dataset bytes, recursively and in the same creation order.
    static func expectIdenticalTrees(_ a: HDF5Group, _ b: HDF5Group, _ name: String,
                                     sourceLocation: SourceLocation = #_sourceLocation) throws {
        let kind = try a.linkKind(name)
        #expect(try b.linkKind(name) == kind, "\(a.path)/\(name): link kind differs", sourceLocation: sourceLocation)
        switch kind {
        case .dataset:
            let (x, y) = (try a.dataset(name), try b.dataset(name))
            #expect(x.shape == y.shape && x.elementSize == y.elementSize, "\(x.path): shape or type differs", sourceLocation: sourceLocation)
            #expect(try x.readAllBytes() == y.readAllBytes(), "\(x.path): bytes differ", sourceLocation: sourceLocation)
            #expect(try attributes(x) == attributes(y), "\(x.path): attributes differ", sourceLocation: sourceLocation)
            #expect(y.isContiguousUnfiltered, sourceLocation: sourceLocation)
        case .group:
            let (x, y) = (try a.group(name), try b.group(name))
            #expect(try attributes(x) == attributes(y), "\(x.path): attributes differ", sourceLocation: sourceLocation)
            let names = try x.linkNames()
            #expect(try y.linkNames() == names, "\(x.path): children differ", sourceLocation: sourceLocation)
            for child in names { try expectIdenticalTrees(x, y, child, sourceLocation: sourceLocation) }
        default:
            break
        }
    }

    /// The float32 values of a stored float tensor.
    static func floats(_ component: ComponentReader, _ record: TensorRecord) throws -> [Float] {
        let tensor = try component.readTensor(record)
        var values = [Float](repeating: 0, count: tensor.elementCount)
        tensor.withUnsafeBytes { raw in values.withUnsafeMutableBufferPointer { WeightConversion.widen(raw, dtype: record.dtype, into: $0) } }
        return values
    }

    /// The raw bytes of a stored tensor.
    static func bytes(_ component: ComponentReader, _ name: String) throws -> [UInt8] {
        try component.dataset(forTensor: name).readAllBytes()
    }

    /// What a quantised checkpoint holds compared with its input, checked in full (returns the names quantised,
    /// per component): every float tensor, soft link, group and attribute copied exactly; every quantised
    /// tensor equal, bit for bit, to the reference quantiser run on the input, with the §7.1 attributes, a right
    /// CRC-32 and its SQNR; counts recomputed; datasets of 4 KiB or more 64-byte aligned.
    @discardableResult
    static func expectFaithfulQuantization(input: String, output: String, scheme: Int8Scheme,
                                           sourceLocation: SourceLocation = #_sourceLocation) throws -> [String: [String]] {
        let a = try Checkpoint(path: input), b = try Checkpoint(path: output)
        #expect(a.roles == b.roles && a.extraGroups == b.extraGroups, sourceLocation: sourceLocation)
        let (rootA, rootB) = (try HDF5File.open(path: input).root(), try HDF5File.open(path: output).root())
        var rootAttributesA = try attributes(rootA), rootAttributesB = try attributes(rootB)
        let record = try #require(try JSON.parse(try rootB.stringAttribute("quantization")).object)
        #expect(record["scheme"]?.string == scheme.rawValue, sourceLocation: sourceLocation)
        for key in ["tool", "created", "quantization"] { rootAttributesA[key] = nil; rootAttributesB[key] = nil }
        #expect(rootAttributesA == rootAttributesB, sourceLocation: sourceLocation)
        if a.extraGroups.contains("prima") { try expectIdenticalTrees(rootA, rootB, "prima", sourceLocation: sourceLocation) }

        var quantized: [String: [String]] = [:]
        var bytesBefore = 0, bytesAfter = 0
        for role in a.roles {
            let (x, y) = (try a.component(role), try b.component(role))
            // Children other than tensors/: exact copies.
            let children = try x.group.linkNames()
            #expect(Set(try y.group.linkNames()) == Set(children), sourceLocation: sourceLocation)
            for child in children where child != "tensors" {
                try expectIdenticalTrees(x.group, y.group, child, sourceLocation: sourceLocation)
            }
            var attributesX = try attributes(x.group), attributesY = try attributes(y.group)
            for key in ["tensor_count", "parameter_count"] { attributesX[key] = nil; attributesY[key] = nil }
            #expect(attributesX == attributesY, "\(role): component attributes differ", sourceLocation: sourceLocation)

            let recordsX = try x.tensorRecords(), recordsY = try y.tensorRecords()
            let byName = Dictionary(recordsY.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
            var expectedNames: [String] = []
            var names: [String] = []
            for source in recordsX {
                expectedNames.append(source.name)
                let stored = try #require(byName[source.name], "\(role): \(source.name) missing", sourceLocation: sourceLocation)
                if let target = source.aliasOf {
                    #expect(stored.aliasOf == target, sourceLocation: sourceLocation)
                    continue
                }
                bytesBefore += source.byteCount
                if stored.dtype != .i8 {
                    try expectIdenticalTrees(try x.subgroup("tensors"), try y.subgroup("tensors"), source.name, sourceLocation: sourceLocation)
                    bytesAfter += source.byteCount
                    continue
                }
                names.append(source.name)
                expectedNames.append(QuantizedTensorInfo.scalesName(for: source.name))
                let (rows, columns) = (source.shape[0], source.shape[1])
                let dataset = try y.dataset(forTensor: source.name)
                let info = try #require(try QuantizedTensorInfo.read(dataset), sourceLocation: sourceLocation)
                #expect(info.scheme == scheme && info.sourceDType == source.dtype && info.blockSize == scheme.blockSize(columns: columns),
                        sourceLocation: sourceLocation)
                #expect(stored.hfName == source.hfName && stored.shape == source.shape, sourceLocation: sourceLocation)
                let scalesName = QuantizedTensorInfo.scalesName(for: source.name)
                let scales = try #require(byName[scalesName], sourceLocation: sourceLocation)
                #expect(scales.dtype == .f32 && scales.hfName == nil && scales.shape == scheme.scalesShape(rows: rows, columns: columns),
                        sourceLocation: sourceLocation)
                // Bit-exact against the reference run on the input's values.
                let w = try floats(x, source)
                let reference = Int8Reference.quantize(w, rows: rows, columns: columns, scheme: scheme)
                let q = try bytes(y, source.name), s = try bytes(y, scalesName)
                #expect(q == reference.q.map { UInt8(bitPattern: $0) }, "\(role): \(source.name): int8 values differ from the reference",
                        sourceLocation: sourceLocation)
                #expect(s == reference.scales.withUnsafeBytes { [UInt8]($0) }, "\(role): \(source.name): scales differ from the reference",
                        sourceLocation: sourceLocation)
                #expect(stored.crc32 == q.withUnsafeBytes { CRC32.checksum($0) } && scales.crc32 == s.withUnsafeBytes { CRC32.checksum($0) },
                        sourceLocation: sourceLocation)
                var sqnr = SQNR()
                let back = reference.dequantized()
                w.withUnsafeBufferPointer { w in back.withUnsafeBufferPointer { sqnr.add(original: w, dequantized: $0) } }
                #expect(abs(info.sqnrDecibels - sqnr.decibels) <= 1e-9 * abs(sqnr.decibels) || info.sqnrDecibels == sqnr.decibels,
                        sourceLocation: sourceLocation)
                // The readers the runtime will use give the same values.
                let (_, qTensor, sTensor) = try Int8Dequantizer.read(source.name, in: y)
                #expect(qTensor.withUnsafeBytes { [UInt8]($0) } == q && sTensor.withUnsafeBytes { [UInt8]($0) } == s,
                        sourceLocation: sourceLocation)
                #expect(try Int8Dequantizer.dequantized(source.name, in: y).float32Values() == back, sourceLocation: sourceLocation)
                bytesAfter += rows * columns + 4 * scales.shape.reduce(1, *)
            }
            // Scales follow their tensor in creation order; aliases keep their place.
            #expect(recordsY.map(\.name) == expectedNames, "\(role): tensor order", sourceLocation: sourceLocation)
            let datasets = recordsY.filter { $0.aliasOf == nil }
            #expect(try y.group.intAttribute("tensor_count") == datasets.count, sourceLocation: sourceLocation)
            #expect(try y.group.intAttribute("parameter_count") == datasets.reduce(0) { $0 + $1.shape.reduce(1, *) },
                    sourceLocation: sourceLocation)
            for record in datasets where record.byteCount >= 4096 {
                let offset = try #require(try y.dataset(forTensor: record.name).fileOffset, sourceLocation: sourceLocation)
                #expect(offset % 64 == 0, "\(role): \(record.name) at offset \(offset)", sourceLocation: sourceLocation)
            }
            quantized[role.rawValue] = names
        }
        #expect(record["tensor_bytes_before"]?.int == bytesBefore && record["tensor_bytes_after"]?.int == bytesAfter,
                sourceLocation: sourceLocation)
        #expect(record["quantized_tensors"]?.int == quantized.values.reduce(0) { $0 + $1.count }, sourceLocation: sourceLocation)
        return quantized
    }

    /// Checks a refusal: exit 2, one stderr line `prima-quantize: error: …` containing every fragment, no
    /// output and no temporary file left in `work` beyond `keep`.
    static func expectRefusal(_ result: TestProcess.Result, mentioning fragments: [String], work: String, keep: Set<String>,
                              sourceLocation: SourceLocation = #_sourceLocation) throws {
        #expect(result.status == 2, "exit \(result.status): \(result.stderr)", sourceLocation: sourceLocation)
        let lines = result.stderr.split(separator: "\n")
        #expect(lines.count == 1, "expected one error line, got: \(result.stderr)", sourceLocation: sourceLocation)
        let line = String(lines.first ?? "")
        #expect(line.hasPrefix("prima-quantize: error: "), "\(line)", sourceLocation: sourceLocation)
        for fragment in fragments {
            #expect(line.contains(fragment), "\"\(fragment)\" not in: \(line)", sourceLocation: sourceLocation)
        }
        let left = Set(try FileManager.default.contentsOfDirectory(atPath: work))
        #expect(left == keep, "left behind: \(left.subtracting(keep))", sourceLocation: sourceLocation)
    }
}
