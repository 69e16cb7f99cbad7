import Foundation
import PrimaCheckpoint
import PrimaIO
import PrimaJSON
import PrimaModels
import PrimaSafetensors

/// A Hugging Face model directory as the importer sees it: config, architecture, weights and auxiliary files.
struct HFModelDirectory {
    let path: String
    let architecture: Architecture
    let modelType: String
    let hfArchitectures: [String]
    let config: any ArchitectureConfig
    /// Auxiliary files present (name, bytes), config.json first.
    let auxiliaryFiles: [(name: String, bytes: [UInt8])]
    let weights: SafetensorsModel

    init(path: String) throws {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw ToolError.input("\(path): not a directory")
        }
        self.path = path
        let configPath = path + "/config.json"
        guard FileManager.default.fileExists(atPath: configPath) else { throw ToolError.input("\(configPath): missing") }
        var files: [(String, [UInt8])] = []
        for name in CheckpointFormat.auxiliaryFileNames {
            let filePath = path + "/" + name
            if FileManager.default.fileExists(atPath: filePath) {
                files.append((name, try InputFile.read(filePath, limit: CheckpointFormat.maxAuxiliaryFileBytes)))
            }
        }
        auxiliaryFiles = files
        let configBytes = files.first { $0.0 == "config.json" }!.1
        let json: JSONObject
        do {
            guard let object = try JSON.parse(configBytes).object else {
                throw ToolError.input("\(configPath): not a JSON object")
            }
            json = object
        } catch let error as JSONError {
            throw ToolError.input("\(configPath): malformed JSON: \(error)")
        }
        guard let modelType = json["model_type"]?.string else {
            throw ToolError.input("\(configPath): no model_type string")
        }
        guard let architecture = Architecture(modelType: modelType) else {
            let known = Architecture.allCases.map(\.rawValue).joined(separator: ", ")
            throw ToolError.input("\(configPath): unknown model_type \"\(modelType)\" (supported: \(known))")
        }
        self.modelType = modelType
        self.architecture = architecture
        hfArchitectures = json["architectures"]?.array?.compactMap(\.string) ?? []
        do {
            config = try architecture.parseConfig(json)
        } catch {
            throw ToolError.input("\(path)/\(error.description)")
        }
        for name in CheckpointFormat.auxiliaryFileNames where name.hasSuffix(".json") && name != "config.json" {
            guard let bytes = files.first(where: { $0.0 == name })?.1 else { continue }
            do { _ = try JSON.parse(bytes) } catch { throw ToolError.input("\(path)/\(name): malformed JSON: \(error)") }
        }
        weights = try ToolError.classify(asInput: true) { try SafetensorsModel(directory: path) }
    }

    /// The image preprocessing attributes (§3.4), from preprocessor_config.json or the DINOv3 defaults.
    func preprocessing() throws -> [(String, ConfigValue)] {
        var height = 224, width = 224, resample = "bilinear"
        var doResize = true, doRescale = true, doNormalize = true
        var rescaleFactor = 1.0 / 255.0
        var mean = [0.485, 0.456, 0.406], std = [0.229, 0.224, 0.225]
        let name = "preprocessor_config.json"
        if let bytes = auxiliaryFiles.first(where: { $0.name == name })?.bytes {
            let where_ = "\(path)/\(name)"
            guard let json = try? JSON.parse(bytes).object else { throw ToolError.input("\(where_): not a JSON object") }
            func flag(_ key: String, _ current: Bool) throws -> Bool {
                guard let value = json[key], !value.isNull else { return current }
                guard let bool = value.bool else { throw ToolError.input("\(where_): field \(key) must be true or false") }
                return bool
            }
            func triple(_ key: String, _ current: [Double]) throws -> [Double] {
                guard let value = json[key], !value.isNull else { return current }
                guard let list = value.array?.compactMap(\.double), list.count == 3 else {
                    throw ToolError.input("\(where_): field \(key) must be a list of 3 numbers")
                }
                return list
            }
            doResize = try flag("do_resize", doResize)
            doRescale = try flag("do_rescale", doRescale)
            doNormalize = try flag("do_normalize", doNormalize)
            mean = try triple("image_mean", mean)
            std = try triple("image_std", std)
            guard std.allSatisfy({ $0 > 0 }) else { throw ToolError.input("\(where_): image_std must be positive") }
            if let value = json["rescale_factor"], !value.isNull {
                guard let factor = value.double, factor > 0 else { throw ToolError.input("\(where_): bad rescale_factor") }
                rescaleFactor = factor
            }
            if let size = json["size"]?.object {
                if let h = size["height"]?.int, let w = size["width"]?.int, h > 0, w > 0 {
                    height = h; width = w
                } else if let edge = size["shortest_edge"]?.int, edge > 0 {
                    height = edge; width = edge
                } else {
                    throw ToolError.input("\(where_): size must have positive height and width (or shortest_edge)")
                }
            }
            if let value = json["resample"], !value.isNull {
                // PIL resampling codes, as transformers stores them.
                switch value.int {
                case 0: resample = "nearest"
                case 2: resample = "bilinear"
                case 3: resample = "bicubic"
                default: throw ToolError.input("\(where_): unsupported resample \(value.serialized())")
                }
            }
        }
        // What every reader refuses (§3.4) is refused here, before the checkpoint is written.
        if doResize, let config = config as? DINOv3ViTConfig,
           let problem = ImageEncoderLimits.problem(height: height, width: width, patchSize: config.patchSize) {
            throw ToolError.input("\(path)/\(name): size \(problem)")
        }
        return [("height", .int(height)), ("width", .int(width)), ("resample", .string(resample)),
                ("do_resize", .bool(doResize)), ("do_rescale", .bool(doRescale)), ("do_normalize", .bool(doNormalize)),
                ("rescale_factor", .double(rescaleFactor)), ("image_mean", .doubles(mean)),
                ("image_std", .doubles(std))]
    }
}
