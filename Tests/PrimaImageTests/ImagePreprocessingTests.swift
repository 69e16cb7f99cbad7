import Foundation
import PrimaImage
import PrimaJSON
import PrimaTensor
import Testing

/// Largest |difference| accepted between our `pixel_values` and transformers' (numerics contract of the brief;
/// the measured difference is printed by `matchesTransformersGolden`).
let goldenTolerance: Float = 1e-5

/// goldens/goldens.json: which source, which parameters, which file.
enum Goldens {
    static let entries: [JSONObject] = {
        (try? ImageFixtures.json("goldens/goldens.json").object?["goldens"]?.array?.compactMap { $0.object }) ?? []
    }()
    static var names: [String] { entries.compactMap { $0["name"]?.string } }

    static func parameters(_ entry: JSONObject) throws -> ImagePreprocessing {
        func doubles(_ key: String) throws -> [Double] {
            let values = entry[key]?.array?.compactMap { $0.double } ?? []
            try #require(values.count == 3, "\(key) in goldens.json")
            return values
        }
        func flag(_ key: String) throws -> Bool {
            let value: Bool? = entry[key]?.bool
            return try #require(value as Bool?, "\(key) in goldens.json")
        }
        let resample: ImageResample? = ImageResample(rawValue: entry["resample"]?.string ?? "")
        return ImagePreprocessing(
            height: try #require(entry["height"]?.int), width: try #require(entry["width"]?.int),
            resample: try #require(resample),
            doResize: try flag("do_resize"), doRescale: try flag("do_rescale"), doNormalize: try flag("do_normalize"),
            rescaleFactor: try #require(entry["rescale_factor"]?.double),
            imageMean: try doubles("image_mean"), imageStd: try doubles("image_std"))
    }

    static func values(_ file: String) throws -> [Float] {
        let data = try Data(contentsOf: URL(fileURLWithPath: ImageFixtures.root + "/goldens/" + file))
        return data.withUnsafeBytes { raw in
            (0..<(data.count / 4)).map { Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: $0 * 4, as: UInt32.self))) }
        }
    }
}

@Suite struct ImagePreprocessingTests {
    @Test func everyGoldenIsListed() {
        #expect(Set(Goldens.names).isSuperset(of: ["scene_224", "scene_32", "small_224", "small_32", "strip_32", "rgb16_32",
                                                   "same_rgba8_32", "small_40x48_mean05", "scene_32_bicubic", "scene_32_nonormalize"]))
    }

    /// PNG file → our decoder → our preprocessing, against transformers' `pixel_values` for the same file.
    @Test(arguments: Goldens.names)
    func matchesTransformersGolden(name: String) throws {
        let entry = try #require(Goldens.entries.first { $0["name"]?.string == name })
        let source = try #require(entry["source"]?.string)
        let image = try PNGDecoder.decode(contentsOf: ImageFixtures.root + "/preprocess/" + source)
        let parameters = try Goldens.parameters(entry)
        let tensor = try parameters.pixelValues(for: image)
        let shape = entry["shape"]?.array?.compactMap { $0.int } ?? []
        #expect(tensor.shape == shape && tensor.dtype == .f32)

        let want = try Goldens.values(try #require(entry["file"]?.string))
        let got = tensor.float32Values()
        try #require(got.count == want.count)
        var maxDifference: Float = 0, worst = 0
        for i in got.indices where abs(got[i] - want[i]) > maxDifference {
            maxDifference = abs(got[i] - want[i])
            worst = i
        }
        let firstDifferent = got.indices.first { got[$0] != want[$0] }
        print("golden \(name): max |difference| \(maxDifference) at \(worst) (\(got[worst]) vs \(want[worst])); "
              + "bit-identical values \(zip(got, want).filter { $0 == $1 }.count)/\(got.count)"
              + (firstDifferent.map { "; first difference at \($0): \(got[$0]) vs \(want[$0])" } ?? ""))
        #expect(maxDifference <= goldenTolerance,
                "\(name): max |difference| \(maxDifference) at index \(worst): \(got[worst]) vs \(want[worst])")
    }

    /// A hand-computed case: 4 → 2 bilinear (scale 2, support 2). Output 0 has centre 1.0 and covers inputs 0…2
    /// at distances 0.25, 0.25, 0.75 (in output units): triangle weights 0.75, 0.75, 0.25, normalised by 1.75.
    @Test func downscaleWeightsByHand() {
        let taps = AntialiasedResize.axisWeights(inputSize: 4, outputSize: 2, filter: .bilinear)
        #expect(taps.stride == 5 && taps.start == [0, 1] && taps.count == [3, 3])
        #expect(Array(taps.weights[0..<3]) == [Float(0.75) / 1.75, Float(0.75) / 1.75, Float(0.25) / 1.75])
        // Output 1 (centre 3.0) reaches inputs 1…4, but input 4 is outside: weights renormalised over 1…3.
        #expect(Array(taps.weights[5..<8]) == [Float(0.25) / 1.75, Float(0.75) / 1.75, Float(0.75) / 1.75])
    }

    /// Upscaling keeps the plain bilinear footprint (support 1), clamped at the borders.
    @Test func upscaleWeightsByHand() throws {
        let taps = AntialiasedResize.axisWeights(inputSize: 2, outputSize: 4, filter: .bilinear)
        // Centres 0.25, 0.75, 1.25, 1.75; edge outputs see only one in-range input after renormalisation.
        #expect(taps.stride == 3 && taps.start == [0, 0, 0, 1] && taps.count == [1, 2, 2, 1])
        try #require(taps.weights.count == 12)
        #expect(taps.weights[0] == 1 && taps.weights[9] == 1)
        #expect(Array(taps.weights[3..<5]) == [0.75, 0.25] && Array(taps.weights[6..<8]) == [0.25, 0.75])
    }

    @Test(arguments: ImageResample.allCases)
    func weightsSumToOne(filter: ImageResample) {
        for (input, output) in [(320, 224), (240, 224), (20, 224), (300, 32), (7, 3), (1, 5), (5, 1), (1000, 3)] {
            let taps = AntialiasedResize.axisWeights(inputSize: input, outputSize: output, filter: filter)
            for i in 0..<output {
                let sum = (0..<taps.count[i]).reduce(Float(0)) { $0 + taps.weights[i * taps.stride + $1] }
                #expect(abs(sum - 1) < 1e-5, "\(input)->\(output) output \(i) sums to \(sum)")
                #expect(taps.start[i] >= 0 && taps.start[i] + taps.count[i] <= input)
            }
        }
    }

    /// A constant image stays constant through any resize (weights renormalised at the borders).
    @Test func constantImageStaysConstant() throws {
        let image = RGBImage(width: 17, height: 5, samples: .uint8([UInt8](repeating: 200, count: 17 * 5 * 3)))
        let parameters = ImagePreprocessing(height: 9, width: 31, doNormalize: false)
        let values = try parameters.pixelValues(for: image).float32Values()
        let expected = Float(200) * Float(1.0 / 255.0)
        #expect(values.allSatisfy { abs($0 - expected) < 1e-6 })
    }

    @Test func sameSizeSkipsTheResize() throws {
        let samples = (0..<(4 * 3 * 3)).map { UInt8($0 * 7 % 256) }
        let image = RGBImage(width: 4, height: 3, samples: .uint8(samples))
        let values = try ImagePreprocessing(height: 3, width: 4, doNormalize: false).pixelValues(for: image).float32Values()
        // [3, 3, 4] planes of the rescaled interleaved samples.
        for c in 0..<3 { for p in 0..<12 { #expect(values[c * 12 + p] == Float(samples[p * 3 + c]) * Float(1.0 / 255.0)) } }
        let unresized = try ImagePreprocessing(doResize: false).pixelValues(for: image)
        #expect(unresized.shape == [1, 3, 3, 4])
    }

    @Test func refusesParametersWithoutAMeaning() {
        let image = RGBImage(width: 2, height: 2, samples: .uint8([UInt8](repeating: 1, count: 12)))
        #expect(throws: ImagePreprocessingError("preprocessing: output size 0x224 is outside 1...16384")) {
            try ImagePreprocessing(height: 0).pixelValues(for: image)
        }
        #expect(throws: ImagePreprocessingError.self) { try ImagePreprocessing(imageStd: [0.2, 0, 0.2]).pixelValues(for: image) }
        #expect(throws: ImagePreprocessingError.self) { try ImagePreprocessing(imageMean: [0.5]).pixelValues(for: image) }
        #expect(throws: ImagePreprocessingError.self) { try ImagePreprocessing(rescaleFactor: .nan).pixelValues(for: image) }
        #expect(ImageResample(pilCode: 2) == .bilinear && ImageResample(pilCode: 3) == .bicubic && ImageResample(pilCode: 1) == nil)
    }
}
