import Foundation
import PrimaImage
import PrimaJSON
import PrimaTestSupport
import Testing
@testable import PrimaTrain

/// Formats/prima-training.md §3.4: the augmented views reproduce the numpy reference's fixture.
@Suite struct AugmentationTests {
    /// Largest |Swift − numpy| accepted per pixel value. Both sides run the same float32 operations in the same
    /// order (the resize is torch's scalar kernel, which the numpy port matches bit for bit, checked against
    /// torch when the fixture was written), so the views are identical: measured worst 0 on all seven views.
    static let pixelTolerance: Float = 0

    @Test func reproducesTheNumpyReference() throws {
        let root = TestProcess.repositoryRoot
        let directory = root + "/Fixtures/train/augmentation"
        let manifest = try #require(try JSON.parse(String(contentsOfFile: directory + "/augmentation.json", encoding: .utf8)).object)
        let views = try #require(manifest["views"]?.array)
        #expect(views.count == 7)
        var worst: Float = 0
        for entry in views {
            let view = try #require(entry.object)
            let name = try Self.string(view, "name")
            let image = try PNGDecoder.decode(contentsOf: root + "/" + (try Self.string(view, "source")))
            let settings = try #require(view["preprocessing"]?.object)
            var preprocessing = ImagePreprocessing.dinov3
            preprocessing.height = try Self.int(settings, "height")
            preprocessing.width = try Self.int(settings, "width")
            let resample = ImageResample(rawValue: try Self.string(settings, "resample"))
            preprocessing.resample = try #require(resample)
            guard let normalise = settings["do_normalize"]?.bool else { throw MissingMember(key: "do_normalize") }
            preprocessing.doNormalize = normalise
            let seed = UInt64(try Self.int(view, "seed"))
            let epoch = try Self.int(view, "epoch"), index = try Self.int(view, "index"), part = try Self.int(view, "view")

            let drawn = Augmentation.draw(height: image.height, width: image.width, seed: seed, epoch: epoch, index: index, view: part)
            let expected = try #require(view["draw"]?.object)
            let box = [try Self.int(expected, "top"), try Self.int(expected, "left"), try Self.int(expected, "height"), try Self.int(expected, "width")]
            #expect([drawn.top, drawn.left, drawn.height, drawn.width] == box, "\(name)")
            let flip: Bool? = expected["flip"]?.bool
            #expect(drawn.flip == flip, "\(name)")
            let factors = [try Self.double(expected, "brightness"), try Self.double(expected, "contrast"), try Self.double(expected, "saturation")]
            #expect([drawn.brightness, drawn.contrast, drawn.saturation] == factors.map { Float($0) }, "\(name)")

            let pixels = try Augmentation.view(of: image, preprocessing: preprocessing, seed: seed, epoch: epoch, index: index, view: part)
            #expect(pixels.shape == [1, 3, preprocessing.height, preprocessing.width])
            let data = try Data(contentsOf: URL(fileURLWithPath: directory + "/" + (try Self.string(view, "file"))))
            let reference: [Float] = data.withUnsafeBytes { raw in
                (0..<(data.count / 4)).map { Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: $0 * 4, as: UInt32.self))) }
            }
            let actual = pixels.float32Values()
            #expect(actual.count == reference.count)
            let difference = zip(actual, reference).map { abs($0 - $1) }.max() ?? .infinity
            if difference > Self.pixelTolerance, let first = zip(actual, reference).enumerated().first(where: { abs($1.0 - $1.1) > Self.pixelTolerance }) {
                Issue.record("\(name): value \(first.offset): \(first.element.0) vs numpy \(first.element.1); max difference \(difference)")
            }
            worst = max(worst, difference)
        }
        #expect(worst <= Self.pixelTolerance)
    }

    struct MissingMember: Error, CustomStringConvertible {
        let key: String
        var description: String { "augmentation.json: missing or mistyped \"\(key)\"" }
    }

    static func int(_ object: JSONObject, _ key: String) throws -> Int {
        guard let value = object[key]?.int else { throw MissingMember(key: key) }
        return value
    }

    static func double(_ object: JSONObject, _ key: String) throws -> Double {
        guard let value = object[key]?.double else { throw MissingMember(key: key) }
        return value
    }

    static func string(_ object: JSONObject, _ key: String) throws -> String {
        guard let value = object[key]?.string else { throw MissingMember(key: key) }
        return value
    }

    /// Over 2,000 draws on a 300×200 image: crop area within scale 0.6–1.0 (up to the rounding of the sides),
    /// aspect within 3/4–4/3 (likewise), boxes inside the image, flips and jitter factors near their rates.
    @Test func drawStatistics() {
        var flips = 0
        var brightness = 0.0
        for index in 0..<2000 {
            let d = Augmentation.draw(height: 200, width: 300, seed: 4, epoch: 0, index: index, view: index % 2)
            #expect(d.top >= 0 && d.left >= 0 && d.top + d.height <= 200 && d.left + d.width <= 300)
            let scale = Double(d.height * d.width) / 60_000
            #expect(scale >= 0.59 && scale <= 1.0, "scale \(scale)")
            let ratio = Double(d.width) / Double(d.height)
            #expect(ratio >= 0.74 && ratio <= 1.35, "ratio \(ratio)")
            for factor in [d.brightness, d.contrast, d.saturation] { #expect(factor >= 0.8 && factor <= 1.2) }
            if d.flip { flips += 1 }
            brightness += Double(d.brightness)
        }
        // Binomial(2000, 0.5): sd ≈ 22.4; 4.5 sd ≈ 101.
        #expect(abs(flips - 1000) <= 101, "\(flips) flips")
        #expect(abs(brightness / 2000 - 1) < 0.01)
    }

    /// The two views of one example differ, and a view depends only on its stream numbers.
    @Test func viewsAreKeyed() throws {
        let image = try PNGDecoder.decode(contentsOf: TestProcess.repositoryRoot + "/Fixtures/images/preprocess/scene_rgb8.png")
        var preprocessing = ImagePreprocessing.dinov3
        preprocessing.height = 16
        preprocessing.width = 16
        let a = try Augmentation.view(of: image, preprocessing: preprocessing, seed: 1, epoch: 2, index: 3, view: 0)
        let b = try Augmentation.view(of: image, preprocessing: preprocessing, seed: 1, epoch: 2, index: 3, view: 1)
        let again = try Augmentation.view(of: image, preprocessing: preprocessing, seed: 1, epoch: 2, index: 3, view: 0)
        #expect(a.float32Values() == again.float32Values())
        #expect(a.float32Values() != b.float32Values())
        preprocessing.doResize = false
        expectError("do_resize") { _ = try Augmentation.view(of: image, preprocessing: preprocessing, seed: 1, epoch: 2, index: 3, view: 0) }
    }
}
