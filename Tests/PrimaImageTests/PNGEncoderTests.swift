import Foundation
import PrimaImage
import PrimaTestSupport
import Testing

/// PNGEncoder: what it writes decodes back exactly through PNGDecoder, is the same bytes every time, and is a
/// plain 8-bit RGB file of the three critical chunks a checker written against the PNG specification accepts.
@Suite struct PNGEncoderTests {
    /// An image of seeded random pixels.
    static func randomImage(width: Int, height: Int, seed: UInt64) -> RGBImage {
        var random = SplitMix64(seed: seed)
        return RGBImage(width: width, height: height, samples: .uint8((0..<width * height * 3).map { _ in UInt8(truncatingIfNeeded: random.next()) }))
    }

    /// The chunk types of a PNG file, in order (signature and lengths checked on the way).
    static func chunkTypes(_ bytes: [UInt8]) -> [String]? {
        guard bytes.starts(with: [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]) else { return nil }
        var offset = 8, types: [String] = []
        while offset + 12 <= bytes.count {
            let length = bytes[offset..<offset + 4].reduce(0) { $0 << 8 | Int($1) }
            types.append(String(decoding: bytes[offset + 4..<offset + 8], as: UTF8.self))
            offset += 12 + length
        }
        return offset == bytes.count ? types : nil
    }

    /// 1×1, single rows and columns, odd widths (rows whose byte count is not a multiple of 4 or 8), and an image
    /// wide enough for several IDAT-sized rows.
    @Test(arguments: [(1, 1), (2, 1), (1, 3), (3, 3), (7, 5), (31, 17), (257, 3), (640, 48)])
    func roundTripsThroughTheDecoder(width: Int, height: Int) throws {
        let image = Self.randomImage(width: width, height: height, seed: UInt64(width * 1000 + height))
        let bytes = try PNGEncoder.encode(image, name: "round-trip")
        let decoded = try bytes.withUnsafeBytes { try PNGDecoder.decode($0, name: "round-trip") }
        // IHDR (bytes 16-28): width, height, bit depth 8, colour type 2 (RGB), compression, filter, no interlace.
        #expect(Array(bytes[16..<29]) == [UInt8](bigEndian32: width) + [UInt8](bigEndian32: height) + [8, 2, 0, 0, 0])
        guard case .uint8(let want) = image.samples, case .uint8(let got) = decoded.samples else {
            Issue.record("expected 8-bit samples")
            return
        }
        let first = zip(want, got).enumerated().first { $0.element.0 != $0.element.1 }
        #expect(decoded.width == width && decoded.height == height)
        #expect(got == want, "\(width)x\(height): first difference at sample \(first?.offset ?? -1)")
    }

    @Test func theSamePixelsGiveTheSameBytes() throws {
        let image = Self.randomImage(width: 123, height: 45, seed: 7)
        let first = try PNGEncoder.encode(image, name: "a")
        // A separately built copy of the same pixels, and a different image in between.
        _ = try PNGEncoder.encode(Self.randomImage(width: 9, height: 9, seed: 8), name: "b")
        guard case .uint8(let samples) = image.samples else { Issue.record("expected 8-bit samples"); return }
        let copy = RGBImage(width: 123, height: 45, samples: .uint8(Array(samples)))
        #expect(try PNGEncoder.encode(copy, name: "c") == first)
    }

    /// IHDR, IDAT, IEND only: no tIME (the bytes would depend on the clock) and no text.
    @Test func writesOnlyTheCriticalChunks() throws {
        let bytes = try PNGEncoder.encode(Self.randomImage(width: 64, height: 64, seed: 3), name: "chunks")
        let types = try #require(Self.chunkTypes(bytes))
        #expect(types.first == "IHDR" && types.last == "IEND")
        #expect(Set(types) == ["IHDR", "IDAT", "IEND"], "chunks: \(types)")
    }

    /// libpng's refusal (here its default limit of 10^6 pixels per row) comes back as a one-line error naming
    /// the file, through the longjmp that png_encode.c keeps inside C.
    @Test func libpngErrorsBecomeImageErrors() throws {
        let image = RGBImage(width: 1_000_001, height: 1, samples: .uint8([UInt8](repeating: 0, count: 3_000_003)))
        #expect(throws: ImageError(file: "wide.png", reason: "cannot encode PNG: Invalid IHDR data")) {
            try PNGEncoder.encode(image, name: "wide.png")
        }
        // The encoder is still usable afterwards.
        #expect(try PNGEncoder.encode(Self.randomImage(width: 2, height: 2, seed: 1), name: "after").count > 8)
    }

    /// Float samples (from 16-bit sources) are rounded to the nearest integer and clamped; NaN becomes 0.
    @Test func floatSamplesAreRoundedAndClamped() throws {
        let image = RGBImage(width: 3, height: 1, samples: .float32([-4, 0.49, 0.5, 127.5, 254.6, 300, .nan, .infinity, -.infinity]))
        let bytes = try PNGEncoder.encode(image, name: "floats")
        let decoded = try bytes.withUnsafeBytes { try PNGDecoder.decode($0, name: "floats") }
        #expect(decoded.samples == .uint8([0, 0, 1, 128, 255, 255, 0, 255, 0]))
    }

    /// An independent reading with Python's zlib and struct: the signature, every chunk's CRC, an IHDR of 8-bit
    /// RGB without interlacing, and image data that inflates to exactly height × (1 + 3 × width) bytes (one filter
    /// byte per row) with a valid filter type on every row.
    @Test func pythonAcceptsTheFile() throws {
        let directory = TestProcess.temporaryDirectory("prima-png-encoder")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/image.png"
        try Data(try PNGEncoder.encode(Self.randomImage(width: 37, height: 11, seed: 5), name: path)).write(to: URL(fileURLWithPath: path))
        let result = try TestProcess.run("/usr/bin/python3", ["-c", Self.checker, path])
        #expect(result.status == 0, "\(result.stdout)\(result.stderr)")
        #expect(result.stdout == "37 11 IHDR,IDAT,IEND\n")
    }

    static let checker = """
        import struct, sys, zlib
        data = open(sys.argv[1], 'rb').read()
        assert data[:8] == b'\\x89PNG\\r\\n\\x1a\\n', 'signature'
        offset, chunks, idat = 8, [], b''
        while offset < len(data):
            length, kind = struct.unpack('>I4s', data[offset:offset + 8])
            body = data[offset + 8:offset + 8 + length]
            crc, = struct.unpack('>I', data[offset + 8 + length:offset + 12 + length])
            assert zlib.crc32(kind + body) == crc, 'CRC of ' + kind.decode()
            chunks.append(kind.decode())
            if kind == b'IHDR':
                width, height, depth, colour, compression, filtering, interlace = struct.unpack('>IIBBBBB', body)
                assert (depth, colour, compression, filtering, interlace) == (8, 2, 0, 0, 0), 'IHDR'
            if kind == b'IDAT':
                idat += body
            offset += 12 + length
        raw = zlib.decompress(idat)
        assert len(raw) == height * (1 + 3 * width), 'inflated size'
        assert all(raw[row * (1 + 3 * width)] <= 4 for row in range(height)), 'filter type'
        print(width, height, ','.join(dict.fromkeys(chunks)))
        """
}

extension [UInt8] {
    /// `value` as 4 big-endian bytes (PNG's integers).
    init(bigEndian32 value: Int) {
        self = [24, 16, 8, 0].map { UInt8(truncatingIfNeeded: value >> $0) }
    }
}
