import CPNG
import Foundation
import PrimaIO
import PrimaPNG

/// An image file that could not be read or decoded. The description is one line that starts with the file.
public struct ImageError: Error, CustomStringConvertible, Equatable, Sendable {
    /// The file (as given), or the name passed to ``PNGDecoder/decode(_:name:limits:)``.
    public let file: String
    /// What is wrong, without the file name.
    public let reason: String

    public init(file: String, reason: String) {
        self.file = file
        self.reason = reason
    }

    public var description: String { "\(file): \(reason)" }
}

/// Refusal limits checked from the PNG header before any pixel memory is allocated.
public struct ImageLimits: Sendable, Equatable {
    /// Largest accepted width or height.
    public var maxSide: Int
    /// Largest accepted width × height.
    public var maxPixels: Int
    /// Largest accepted decoded size: width × height × 3 samples × (1 byte, or 2 for 16-bit files).
    public var maxDecodedBytes: Int
    /// Largest accepted PNG file, checked before it is read.
    public var maxFileBytes: Int

    public init(maxSide: Int = 16_384, maxPixels: Int = 100_000_000, maxDecodedBytes: Int = 300_000_000,
                maxFileBytes: Int = 512 << 20) {
        precondition(maxSide > 0 && maxSide <= Int(UInt32.max) && maxPixels > 0 && maxDecodedBytes > 0 && maxFileBytes > 0,
                     "bad image limits")
        self.maxSide = maxSide
        self.maxPixels = maxPixels
        self.maxDecodedBytes = maxDecodedBytes
        self.maxFileBytes = maxFileBytes
    }

    /// 16384 pixels per side, 100 Mpixel and 300 MB decoded (100 Mpixel of 8-bit RGB, 50 Mpixel of 16-bit): far
    /// beyond any model input (DINOv3 reads 224-1024 pixels a side) and above any camera a clinic uses, small
    /// enough that a hostile header cannot make decoding and preprocessing hold more than about 2 GB (the
    /// decoded bytes, 16-bit samples as floats, and the float planes of the resize). Formats/prima-checkpoint.md
    /// §10.3. Files up to 512 MiB: an image within the decoded limit stays under about 420 MB even stored
    /// without compression, with an alpha channel and a filter byte per row.
    public static let standard = ImageLimits()
}

/// What the PNG header declared, for callers that want to know what was converted.
public struct PNGHeaderInfo: Sendable, Equatable {
    /// 0 grey, 2 RGB, 3 palette, 4 grey+alpha, 6 RGBA.
    public let colorType: Int
    /// 1, 2, 4, 8 or 16.
    public let bitDepth: Int
    public let interlaced: Bool
}

/// Decodes PNG files to ``RGBImage`` through libpng.
///
/// Every colour type and bit depth is accepted: grey is replicated to R, G and B, palette indices are looked
/// up, 1/2/4-bit grey is scaled to 8 bits, Adam7 images are de-interlaced. **Alpha is discarded**: neither an
/// alpha channel nor a tRNS chunk is composited onto any background, the colour samples are kept as stored, as
/// PIL's `Image.convert("RGB")` does (and as the original DINOv3 pipeline, `Image.open(p).convert("RGB")`, sees
/// images). Note that transformers' own `convert_to_rgb` (when a processor runs with `do_convert_rgb=True`)
/// composites transparent images onto white instead, and with the DINOv3 default (`do_convert_rgb=None`) it
/// passes an RGBA image's 4 channels to normalize, which fails. No gamma (gAMA, sRGB, iCCP) is applied, as in PIL.
///
/// Refused, with a one-line ``ImageError`` naming the file: non-PNG input, a bad signature, a CRC error in any
/// chunk, a damaged zlib stream, truncated files, images over the ``ImageLimits`` (checked before allocating).
public enum PNGDecoder {
    /// The libpng the toolkit runs with (for diagnostics).
    public static var libpngVersion: String { String(cString: png_get_libpng_ver(nil)) }

    /// Reads and decodes the PNG file at `path`.
    public static func decode(contentsOf path: String, limits: ImageLimits = .standard) throws(ImageError) -> RGBImage {
        try decodeWithInfo(contentsOf: path, limits: limits).image
    }

    /// Reads and decodes the PNG file at `path`, with what its header declared.
    public static func decodeWithInfo(contentsOf path: String, limits: ImageLimits = .standard)
        throws(ImageError) -> (image: RGBImage, info: PNGHeaderInfo)
    {
        // Only a regular file: a FIFO, device or directory is refused with a message saying what it is.
        let data: Data
        do { data = Data(try InputFile.read(path, limit: limits.maxFileBytes)) } catch {
            throw ImageError(file: path, reason: "cannot read the file (\(error.reason(about: path)))")
        }
        // Data.withUnsafeBytes rethrows untyped errors: carry the typed one out in a Result.
        let result = data.withUnsafeBytes { bytes in
            Result { () throws(ImageError) in try decodeWithInfo(bytes, name: path, limits: limits) }
        }
        return try result.get()
    }

    /// Decodes a PNG file held in memory; `name` stands for the file in error messages.
    public static func decode(_ bytes: UnsafeRawBufferPointer, name: String, limits: ImageLimits = .standard)
        throws(ImageError) -> RGBImage
    {
        try decodeWithInfo(bytes, name: name, limits: limits).image
    }

    static func decodeWithInfo(_ bytes: UnsafeRawBufferPointer, name: String, limits: ImageLimits)
        throws(ImageError) -> (image: RGBImage, info: PNGHeaderInfo)
    {
        var decoded = prima_png_image()
        var message = [CChar](repeating: 0, count: 512)
        let base = bytes.baseAddress?.assumingMemoryBound(to: UInt8.self)
        let status = withUnsafeBytes(of: 0 as UInt8) { empty in
            prima_png_decode(base ?? empty.baseAddress!.assumingMemoryBound(to: UInt8.self), bytes.count,
                             UInt32(limits.maxSide), UInt64(limits.maxPixels),
                             UInt64(limits.maxDecodedBytes), &decoded, &message, message.count)
        }
        guard status == 0 else {
            let reason = String(decoding: message.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            throw ImageError(file: name, reason: reason.isEmpty ? "corrupt PNG" : reason)
        }
        defer { prima_png_free(&decoded) }

        let width = Int(decoded.width), height = Int(decoded.height), count = width * height * 3
        let samples: RGBImage.Samples
        if decoded.sample_bytes == 2 {
            // Host-order u16 (the C side swapped from PNG's big endian). v / 257 puts 65535 at exactly 255.
            let source = UnsafeRawPointer(decoded.pixels!).assumingMemoryBound(to: UInt16.self)
            samples = .float32((0..<count).map { Float(source[$0]) / 257 })
        } else {
            samples = .uint8(Array(UnsafeBufferPointer(start: decoded.pixels, count: count)))
        }
        let info = PNGHeaderInfo(colorType: Int(decoded.color_type), bitDepth: Int(decoded.bit_depth),
                                 interlaced: decoded.interlaced != 0)
        return (RGBImage(width: width, height: height, samples: samples), info)
    }
}
