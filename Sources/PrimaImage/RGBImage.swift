/// A decoded image: interleaved RGB samples, row-major, `[height, width, 3]`.
///
/// 8-bit sources keep their bytes (``Samples-swift.enum/uint8(_:)``). 16-bit sources become floats on the same
/// 0…255 scale, `v / 257` (``Samples-swift.enum/float32(_:)``), so one set of preprocessing parameters
/// (`rescale_factor` 1/255) serves both; PIL instead keeps only the high byte of 16-bit RGB and clips 16-bit grey.
public struct RGBImage: Sendable, Equatable {
    /// The samples, `width * height * 3` of them, in the order R, G, B of pixel (0, 0), then (0, 1), …
    public enum Samples: Sendable, Equatable {
        /// 0…255, from 1/2/4/8-bit files (low bit depths scaled up as PNG specifies).
        case uint8([UInt8])
        /// 0…255 as floats, from 16-bit files: `Float(v) / 257` (exactly `v * 255 / 65535`, rounded once).
        case float32([Float])

        var count: Int {
            switch self {
            case .uint8(let values): values.count
            case .float32(let values): values.count
            }
        }
    }

    public let width: Int
    public let height: Int
    public let samples: Samples

    /// An image over `samples` (`width * height * 3` of them). Precondition: the count matches.
    public init(width: Int, height: Int, samples: Samples) {
        precondition(width > 0 && height > 0, "image size \(width)x\(height)")
        precondition(samples.count == width * height * 3,
                      "\(samples.count) samples for a \(width)x\(height) RGB image (need \(width * height * 3))")
        self.width = width
        self.height = height
        self.samples = samples
    }

    /// The sample at row `y`, column `x`, channel `c` (0 R, 1 G, 2 B), on the 0…255 scale.
    public func sample(y: Int, x: Int, channel c: Int) -> Float {
        let index = (y * width + x) * 3 + c
        switch samples {
        case .uint8(let values): return Float(values[index])
        case .float32(let values): return values[index]
        }
    }
}
