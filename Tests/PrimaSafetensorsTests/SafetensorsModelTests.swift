import Foundation
import PrimaJSON
import PrimaTensor
import Testing
@testable import PrimaSafetensors

@Suite struct SafetensorsShardingTests {
    let directory: TemporaryDirectory
    init() throws { directory = try TemporaryDirectory() }

    /// 40, 40, 40, 100 and 8 bytes.
    static let specs = [
        SafetensorsTensorSpec(name: "layers.0.w", dtype: .f32, shape: [10]),
        SafetensorsTensorSpec(name: "layers.1.w", dtype: .f32, shape: [10]),
        SafetensorsTensorSpec(name: "embed", dtype: .f16, shape: [4, 5]),
        SafetensorsTensorSpec(name: "head", dtype: .f32, shape: [25]),
        SafetensorsTensorSpec(name: "bias", dtype: .i64, shape: [1]),
    ]

    /// Writes the planned shards (data: `patternBytes`, offset by each tensor's position) and the index.
    func writeModel(_ plan: SafetensorsShardPlan, metadata: [String: String]? = ["format": "pt"]) throws {
        for shard in plan.shards {
            let writer = try SafetensorsWriter(path: directory.file(shard.fileName), tensors: shard.tensors, metadata: metadata)
            for tensor in shard.tensors {
                try patternBytes(tensor.byteCount, start: UInt8(tensor.name.utf8.count)).withUnsafeBytes { try writer.append($0) }
            }
            try writer.finish()
        }
        if let index = plan.indexJSON() { try directory.write(SafetensorsModel.indexFileName, Array(index.utf8)) }
    }

    /// Rewrites the index through `edit`.
    func editIndex(_ edit: (inout JSONObject) -> Void) throws {
        let path = directory.file(SafetensorsModel.indexFileName)
        var root = try #require(JSON.parse(Data(contentsOf: URL(fileURLWithPath: path))).object)
        edit(&root)
        try directory.write(SafetensorsModel.indexFileName, Array(JSONValue.object(root).serialized().utf8))
    }

    func editWeightMap(_ edit: (inout JSONObject) -> Void) throws {
        try editIndex { root in
            guard var map = root["weight_map"]?.object else { return }
            edit(&map)
            root["weight_map"] = .object(map)
        }
    }

    var indexPath: String { directory.file(SafetensorsModel.indexFileName) }

    func expectModelFailure(path: String, tensor: String? = nil, _ fragment: String, sourceLocation: SourceLocation = #_sourceLocation) {
        expectFailure(path: path, tensor: tensor, fragment, sourceLocation: sourceLocation) {
            _ = try SafetensorsModel(directory: directory.path)
        }
    }

    @Test func planSplitsAsTransformersDoes() throws {
        let plan = SafetensorsShardPlan(tensors: Self.specs, maxShardBytes: 96)
        // What huggingface_hub's split_state_dict_into_shards_factory gives for these sizes: "head" is over the
        // limit and gets a shard at once; "embed" and "bias" share the shard left open.
        #expect(plan.shards.map(\.fileName) == (1...3).map { "model-0000\($0)-of-00003.safetensors" })
        #expect(plan.shards.map { $0.tensors.map(\.name) } == [["layers.0.w", "layers.1.w"], ["head"], ["embed", "bias"]])
        #expect(plan.shards.map(\.byteCount) == [80, 100, 48])
        #expect(plan.totalSize == 228)
        // Python: json.dumps({"metadata": {"total_parameters": 57, "total_size": 228}, "weight_map": …},
        // indent=2, sort_keys=True) + "\n".
        let expected = "{\n  \"metadata\": {\n    \"total_parameters\": 57,\n    \"total_size\": 228\n  },\n  \"weight_map\": {\n    \"bias\": \"model-00003-of-00003.safetensors\",\n    \"embed\": \"model-00003-of-00003.safetensors\",\n    \"head\": \"model-00002-of-00003.safetensors\",\n    \"layers.0.w\": \"model-00001-of-00003.safetensors\",\n    \"layers.1.w\": \"model-00001-of-00003.safetensors\"\n  }\n}\n"
        #expect(plan.indexJSON(totalParameters: 57) == expected)
        #expect(plan.indexJSON()?.hasPrefix("{\n  \"metadata\": {\n    \"total_size\": 228\n  },") == true)

        let exact = SafetensorsShardPlan(tensors: Self.specs, maxShardBytes: 80)
        #expect(exact.shards.map { $0.tensors.map(\.name) } == [["layers.0.w", "layers.1.w"], ["head"], ["embed", "bias"]])

        let single = SafetensorsShardPlan(tensors: Self.specs, maxShardBytes: 1 << 30)
        #expect(single.shards.map(\.fileName) == ["model.safetensors"])
        #expect(single.indexJSON() == nil)
        #expect(SafetensorsShardPlan(tensors: [], maxShardBytes: 10).shards.map(\.fileName) == ["model.safetensors"])
        let oversized = SafetensorsShardPlan(tensors: [Self.specs[3]], maxShardBytes: 10)
        #expect(oversized.shards.map(\.fileName) == ["model.safetensors"])
    }

    @Test func shardedRoundTrip() throws {
        let plan = SafetensorsShardPlan(tensors: Self.specs, maxShardBytes: 96)
        try writeModel(plan)
        let model = try SafetensorsModel(directory: directory.path)
        #expect(model.files.map(\.path) == plan.shards.map { directory.file($0.fileName) })
        #expect(model.weights.map(\.entry.name) == ["layers.0.w", "layers.1.w", "head", "embed", "bias"])
        #expect(model.index?.totalSize == 228)
        #expect(model.index?.shardFileNames == plan.shards.map(\.fileName))
        for spec in Self.specs {
            let weight = try #require(model.weight(named: spec.name))
            #expect(weight.entry.shape == spec.shape && weight.entry.dtype == spec.dtype)
            #expect(try readBytes(weight.file, weight.entry) == patternBytes(spec.byteCount, start: UInt8(spec.name.utf8.count)))
        }
        #expect(model.weight(named: "absent") == nil)
        #expect(model.files.allSatisfy { $0.metadata == ["format": "pt"] })
    }

    @Test func singleFileModel() throws {
        try writeModel(SafetensorsShardPlan(tensors: Self.specs, maxShardBytes: 1000))
        let model = try SafetensorsModel(directory: directory.path + "/")
        #expect(model.index == nil)
        #expect(model.files.map(\.path) == [directory.file("model.safetensors")])
        #expect(model.weights.map(\.entry.name) == Self.specs.map(\.name))
    }

    @Test func ambiguousOrMissingWeights() throws {
        expectModelFailure(path: directory.path, "no model.safetensors or model.safetensors.index.json")
        try writeModel(SafetensorsShardPlan(tensors: Self.specs, maxShardBytes: 96))
        try directory.write("model.safetensors", safetensorsBytes(header: "{}", data: []))
        expectModelFailure(path: directory.path,
                           "both model.safetensors and model.safetensors.index.json exist, so which holds the weights is ambiguous")
    }

    @Test func missingShard() throws {
        try writeModel(SafetensorsShardPlan(tensors: Self.specs, maxShardBytes: 96))
        try FileManager.default.removeItem(atPath: directory.file("model-00002-of-00003.safetensors"))
        expectModelFailure(path: indexPath, "shard model-00002-of-00003.safetensors is listed in weight_map but does not exist")
    }

    @Test func tensorInWrongShard() throws {
        try writeModel(SafetensorsShardPlan(tensors: Self.specs, maxShardBytes: 96))
        try editWeightMap { $0["layers.1.w"] = "model-00002-of-00003.safetensors" }
        expectModelFailure(path: indexPath, tensor: "layers.1.w",
                           "weight_map names shard model-00002-of-00003.safetensors, but the tensor is in model-00001-of-00003.safetensors")
        // Listed in a shard that does not hold it, while the shard that does is not listed at all.
        try editWeightMap { $0["layers.1.w"] = "model-00001-of-00003.safetensors"; $0["head"] = "model-00001-of-00003.safetensors" }
        expectModelFailure(path: indexPath, tensor: "head",
                           "listed in weight_map for shard model-00001-of-00003.safetensors, which does not contain it")
    }

    @Test func unlistedTensor() throws {
        try writeModel(SafetensorsShardPlan(tensors: Self.specs, maxShardBytes: 96))
        try editWeightMap { $0["layers.1.w"] = nil }
        expectModelFailure(path: directory.file("model-00001-of-00003.safetensors"), tensor: "layers.1.w", "not listed in the index's weight_map")
    }

    @Test func listedTensorMissingFromItsShard() throws {
        try writeModel(SafetensorsShardPlan(tensors: Self.specs, maxShardBytes: 96))
        try editWeightMap { $0["ghost"] = "model-00003-of-00003.safetensors" }
        expectModelFailure(path: indexPath, tensor: "ghost",
                           "listed in weight_map for shard model-00003-of-00003.safetensors, which does not contain it")
    }

    @Test func tensorInTwoShards() throws {
        try writeModel(SafetensorsShardPlan(tensors: Self.specs, maxShardBytes: 96))
        // Shard 3 gets a second copy of "head" (besides "embed" and "bias").
        let writer = try SafetensorsWriter(path: directory.file("model-00003-of-00003.safetensors"), tensors: [
            SafetensorsTensorSpec(name: "embed", dtype: .f16, shape: [4, 5]), SafetensorsTensorSpec(name: "bias", dtype: .i64, shape: [1]),
            SafetensorsTensorSpec(name: "head", dtype: .f32, shape: [25]),
        ])
        try patternBytes(148).withUnsafeBytes { try writer.append($0) }
        try writer.finish()
        expectModelFailure(path: directory.file("model-00003-of-00003.safetensors"), tensor: "head",
                           "also in shard model-00002-of-00003.safetensors; a tensor must be in exactly one shard")
    }

    @Test func shardNamesMustStayInTheDirectory() throws {
        try writeModel(SafetensorsShardPlan(tensors: Self.specs, maxShardBytes: 96))
        for hostile in ["../model-00001-of-00003.safetensors", "/etc/passwd", "sub/model.safetensors", "..", ".", "", "a\\b"] {
            try editWeightMap { $0["bias"] = .string(hostile) }
            expectModelFailure(path: indexPath, tensor: "bias", "shard \(JSON.quoted(hostile)) is not a plain file name in the index's directory")
        }
    }

    @Test func totalSizeMustMatch() throws {
        try writeModel(SafetensorsShardPlan(tensors: Self.specs, maxShardBytes: 96))
        try editIndex { $0["metadata"] = ["total_size": 999] }
        expectModelFailure(path: indexPath, "metadata.total_size is 999 bytes but the shards hold 228 bytes of tensor data")

        // Some writers store it as a float; an exact integer value is fine, and so is leaving it out.
        try editIndex { $0["metadata"] = ["total_size": .number(JSONNumber("228.0")!)] }
        #expect(try SafetensorsModel(directory: directory.path).index?.totalSize == 228)
        try editIndex { $0["metadata"] = [:] }
        #expect(try SafetensorsModel(directory: directory.path).index?.totalSize == nil)

        try editIndex { $0["metadata"] = ["total_size": -1] }
        expectModelFailure(path: indexPath, #""metadata.total_size" is -1, expected a non-negative integer"#)
        try editIndex { $0["metadata"] = ["total_size": "228"] }
        expectModelFailure(path: indexPath, #""metadata.total_size" is "228", expected a non-negative integer"#)
    }

    @Test func malformedIndex() throws {
        try writeModel(SafetensorsShardPlan(tensors: Self.specs, maxShardBytes: 96))
        try editIndex { $0["metadata"] = "none" }
        expectModelFailure(path: indexPath, #""metadata" is a string, expected an object"#)
        try editIndex { $0["metadata"] = nil; $0["weight_map"] = nil }
        expectModelFailure(path: indexPath, #"missing "weight_map""#)
        try editIndex { $0["weight_map"] = ["a", "b"] }
        expectModelFailure(path: indexPath, #""weight_map" is an array, expected an object mapping tensor names to shard files"#)
        try editIndex { $0["weight_map"] = ["bias": 4] }
        expectModelFailure(path: indexPath, tensor: "bias", "shard is a number, expected a file name")
        try directory.write(SafetensorsModel.indexFileName, Array(#"{"weight_map":{"a":"x","a":"y"}}"#.utf8))
        expectModelFailure(path: indexPath, #"not valid JSON: duplicate key "a" at byte 23"#)
        try directory.write(SafetensorsModel.indexFileName, Array("[]".utf8))
        expectModelFailure(path: indexPath, "not a JSON object (it is an array)")
    }
}
