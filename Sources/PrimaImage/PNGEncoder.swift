import PrimaPNG

/// Encodes ``RGBImage``s as PNG files through libpng: 8-bit RGB (colour type 2), not interlaced, zlib level 6
/// with libpng's adaptive row filters, and no chunk but IHDR, IDAT and IEND (no tIME, no text), so the same
/// pixels always give the same bytes with the same libpng and zlib.
public enum PNGEncoder {
    /// The PNG file of `image`. 8-bit samples are stored as they are; float samples (from 16-bit sources, on the
    /// 0…255 scale) are rounded to the nearest integer and clamped to 0…255 (NaN becomes 0). `name` stands for the
    /// file in the error, which only libpng's own limit (10^6 pixels per row) or a failed allocation can cause.
    public static func encode(_ image: RGBImage, name: String) throws(ImageError) -> [UInt8] {
        try encode(image, name: name, compressionLevel: 6)
    }

    /// ``encode(_:name:)`` with zlib level `compressionLevel` (1 fastest … 9 smallest) instead of 6: for writers of
    /// many images (the synthetic cohort), where level 1 compresses several times faster for slightly larger files.
    public static func encode(_ image: RGBImage, name: String, compressionLevel: Int) throws(ImageError) -> [UInt8] {
        precondition((1...9).contains(compressionLevel), "zlib level \(compressionLevel)")
        let samples: [UInt8]
        switch image.samples {
        case .uint8(let values): samples = values
        case .float32(let values): samples = values.map { $0 >= 0 ? UInt8(min($0, 255).rounded()) : 0 }
        }
        var encoded = prima_png_buffer()
        var message = [CChar](repeating: 0, count: 256)
        let status = samples.withUnsafeBufferPointer { pixels in
            prima_png_encode_level(pixels.baseAddress, UInt32(image.width), UInt32(image.height), Int32(compressionLevel), &encoded,
                                   &message, message.count)
        }
        guard status == 0 else {
            let reason = String(decoding: message.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            throw ImageError(file: name, reason: reason.isEmpty ? "cannot encode PNG" : reason)
        }
        defer { prima_png_buffer_free(&encoded) }
        return Array(UnsafeBufferPointer(start: encoded.bytes, count: encoded.size))
    }
}
