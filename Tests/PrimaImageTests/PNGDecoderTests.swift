import Foundation
import PrimaImage
import PrimaJSON
import PrimaTestSupport
import Testing

/// Fixtures/images/ (written by Fixtures/images/make_images.py).
enum ImageFixtures {
    static let root = TestProcess.repositoryRoot + "/Fixtures/images"

    static func json(_ relativePath: String) throws -> JSONValue {
        let bytes = try Data(contentsOf: URL(fileURLWithPath: root + "/" + relativePath))
        return try JSON.parse(bytes)
    }

    /// decode/expected.json: every decode fixture with the pixels it must decode to.
    static let expected: [(name: String, entry: JSONObject)] = {
        guard let object = try? json("decode/expected.json").object else { return [] }
        return object.entries.compactMap { entry in entry.value.object.map { (entry.key, $0) } }
    }()

    static var decodeNames: [String] { expected.map(\.name) }
}

@Suite struct PNGDecoderTests {
    @Test func fixtureListIsComplete() {
        // Every colour type at every bit depth the brief names, plus interlaced and tRNS variants.
        let names = Set(ImageFixtures.decodeNames)
        for name in ["grey1", "grey2", "grey4", "grey8", "grey16", "greyalpha8", "greyalpha16", "rgb8", "rgb16",
                     "rgba8", "rgba16", "palette1", "palette4_trns", "palette8_trns", "rgb8_adam7", "rgba16_adam7",
                     "palette4_adam7", "grey8_trns", "rgb8_trns"] {
            #expect(names.contains(name), "decode/expected.json has no \(name)")
        }
    }

    /// Each file decodes to exactly the RGB pixels its generator wrote (alpha discarded, grey replicated,
    /// palette looked up, 16-bit samples as v/257), and reports the header the generator wrote.
    @Test(arguments: ImageFixtures.decodeNames)
    func decodesToKnownPixels(name: String) throws {
        let entry = try #require(ImageFixtures.expected.first { $0.name == name }?.entry)
        let file = try #require(entry["file"]?.string)
        let (image, info) = try PNGDecoder.decodeWithInfo(contentsOf: ImageFixtures.root + "/decode/" + file)
        #expect(image.width == entry["width"]?.int && image.height == entry["height"]?.int)
        #expect(info.colorType == entry["color_type"]?.int && info.bitDepth == entry["bit_depth"]?.int)
        #expect(info.interlaced == entry["interlaced"]?.bool)

        let bytes = try #require(hexBytes(entry["rgb_hex"]?.string ?? ""))
        switch image.samples {
        case .uint8(let samples):
            #expect(entry["sample_bits"]?.int == 8)
            let first = zip(samples, bytes).enumerated().first { $0.element.0 != $0.element.1 }
            #expect(samples == bytes, "\(name): first difference at sample \(first?.offset ?? -1): \(first.map { "\($0.element.0) vs \($0.element.1)" } ?? "count \(samples.count) vs \(bytes.count)")")
        case .float32(let samples):
            #expect(entry["sample_bits"]?.int == 16)
            let want = stride(from: 0, to: bytes.count, by: 2).map { Float(UInt16(bytes[$0]) << 8 | UInt16(bytes[$0 + 1])) / 257 }
            let first = zip(samples, want).enumerated().first { $0.element.0 != $0.element.1 }
            #expect(samples == want, "\(name): first difference at sample \(first?.offset ?? -1)")
            #expect(samples.allSatisfy { $0 >= 0 && $0 <= 255 })
        }
    }

    @Test func sixteenBitScaleEndsAtExactly255() {
        #expect(Float(UInt16.max) / 257 == 255)
        #expect(Float(257) / 257 == 1)
    }

    /// Every corrupt file is refused with one line that names the file and says what is wrong.
    @Test(arguments: [
        ("truncated.png", "truncated PNG: the file ends after 145 bytes, before its IEND chunk"),
        ("no_iend.png", "truncated PNG: the file ends after 254 bytes, before its IEND chunk"),
        ("bad_crc_idat.png", "corrupt PNG: IDAT: CRC error"),
        ("bad_crc_text.png", "corrupt PNG: tEXt: CRC error"),
        ("bad_zlib.png", "corrupt PNG: IDAT: incorrect data check"),
        ("bad_signature.png", "not a PNG file: the first bytes are not the PNG signature"),
        ("huge_side.png", "image too large: 100000 x 9 pixels; the limit is 16384 pixels per side"),
        ("huge_area.png", "image too large: 12000 x 12000 = 144000000 pixels; the limit is 100000000 pixels"),
        ("zero_width.png", "corrupt PNG: IHDR gives an empty image (0 x 9 pixels)"),
        ("empty.png", "not a PNG file: the file is empty"),
        ("jpeg_header.png", "not a PNG file: the first bytes are not the PNG signature (it looks like a JPEG file)"),
        ("text.png", "not a PNG file: the first bytes are not the PNG signature"),
    ])
    func refusesCorruptFile(file: String, reason: String) {
        let path = ImageFixtures.root + "/corrupt/" + file
        do {
            let image = try PNGDecoder.decode(contentsOf: path)
            Issue.record("\(file) decoded to \(image.width)x\(image.height) instead of being refused")
        } catch {
            #expect(error.description == "\(path): \(reason)")
            #expect(!error.description.contains("\n"))
        }
    }

    @Test func missingFileIsNamed() {
        let path = ImageFixtures.root + "/no-such-image.png"
        #expect(throws: ImageError(file: path, reason: "cannot read the file (no such file)")) {
            try PNGDecoder.decode(contentsOf: path)
        }
    }

    @Test func limitsAreConfigurable() throws {
        let path = ImageFixtures.root + "/decode/rgb8.png"  // 13 x 11
        #expect(throws: ImageError(file: path, reason: "image too large: 13 x 11 pixels; the limit is 12 pixels per side")) {
            try PNGDecoder.decode(contentsOf: path, limits: ImageLimits(maxSide: 12))
        }
        #expect(throws: ImageError(file: path, reason: "image too large: 13 x 11 = 143 pixels; the limit is 142 pixels")) {
            try PNGDecoder.decode(contentsOf: path, limits: ImageLimits(maxPixels: 142))
        }
        #expect(try PNGDecoder.decode(contentsOf: path, limits: ImageLimits(maxSide: 13, maxPixels: 143)).width == 13)
    }

    @Test func decodesFromMemoryUnderAGivenName() throws {
        let data = try Data(contentsOf: URL(fileURLWithPath: ImageFixtures.root + "/decode/grey8.png"))
        let image = try data.withUnsafeBytes { try PNGDecoder.decode($0, name: "grey8.png") }
        #expect(image.width == 13 && image.height == 11)
        var truncated = [UInt8](data.prefix(60))
        #expect(throws: ImageError(file: "upload #3", reason: "truncated PNG: the file ends after 60 bytes, before its IEND chunk")) {
            try truncated.withUnsafeMutableBytes { try PNGDecoder.decode(UnsafeRawBufferPointer($0), name: "upload #3") }
        }
        #expect(throws: ImageError(file: "nothing", reason: "not a PNG file: the file is empty")) {
            try PNGDecoder.decode(UnsafeRawBufferPointer(start: nil, count: 0), name: "nothing")
        }
    }

    /// Every prefix of a valid file is refused, and no byte past its end is read: each prefix is placed flush
    /// against an inaccessible page, so an over-read faults even without a sanitizer (the fuzzer found a 24-byte
    /// header whose bit depth was read one byte past the end; Tests/Fuzz/crashes/png).
    @Test func everyPrefixIsRefusedWithoutReadingPastItsEnd() throws {
        let data = [UInt8](try Data(contentsOf: URL(fileURLWithPath: ImageFixtures.root + "/decode/rgb8.png")))
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let span = (data.count + page - 1) / page * page
        let base = try #require(mmap(nil, span + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0))
        #expect(base != MAP_FAILED)
        defer { munmap(base, span + page) }
        #expect(mprotect(base + span, page, PROT_NONE) == 0)
        for length in 0..<data.count {
            let start = base + span - length
            data.withUnsafeBytes { start.copyMemory(from: $0.baseAddress!, byteCount: length) }
            #expect(throws: ImageError.self, "prefix of \(length) bytes") {
                try PNGDecoder.decode(UnsafeRawBufferPointer(start: start, count: length), name: "prefix")
            }
        }
    }

    /// Many failing decodes in a row: each longjmp stays inside C and leaves nothing behind (a leak or a
    /// corrupted Swift frame would show as a crash or as growing memory under a sanitizer).
    @Test func repeatedFailuresAreClean() throws {
        let data = try Data(contentsOf: URL(fileURLWithPath: ImageFixtures.root + "/corrupt/bad_crc_idat.png"))
        for _ in 0..<200 {
            #expect(throws: ImageError.self) { try data.withUnsafeBytes { try PNGDecoder.decode($0, name: "x") } }
        }
        #expect(!PNGDecoder.libpngVersion.isEmpty)
    }
}

func hexBytes(_ hex: String) -> [UInt8]? {
    let digits = Array(hex.utf8)
    guard digits.count % 2 == 0 else { return nil }
    func value(_ d: UInt8) -> UInt8? {
        switch d {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): d - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): d - UInt8(ascii: "a") + 10
        default: nil
        }
    }
    var out = [UInt8]()
    out.reserveCapacity(digits.count / 2)
    for i in stride(from: 0, to: digits.count, by: 2) {
        guard let hi = value(digits[i]), let lo = value(digits[i + 1]) else { return nil }
        out.append(hi << 4 | lo)
    }
    return out
}
