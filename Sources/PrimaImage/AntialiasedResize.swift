import Foundation

/// The interpolation filters of torch's antialiased resize (`F.interpolate(..., antialias=True)`), which is what
/// `torchvision.transforms.v2.functional.resize` runs on a float tensor with `antialias=True`.
public enum ImageResample: String, Sendable, Equatable, CaseIterable {
    /// Triangle filter, support 1 (PIL code 2, `InterpolationMode.BILINEAR`).
    case bilinear
    /// Keys cubic with a = −0.5, support 2 (PIL code 3, `InterpolationMode.BICUBIC`).
    case bicubic

    /// The filter a `preprocessor_config.json` `resample` code names (PIL's `Image.Resampling` numbering).
    /// Nil for the modes this toolkit does not implement (0 nearest, 1 lanczos, 4 box, 5 hamming).
    public init?(pilCode: Int) {
        switch pilCode {
        case 2: self = .bilinear
        case 3: self = .bicubic
        default: return nil
        }
    }

    /// torch's `interp_size`: the filter's support at scale 1 is half of it.
    var interpolationSize: Int {
        switch self {
        case .bilinear: 2
        case .bicubic: 4
        }
    }

    /// `HelperInterpLinear::aa_filter` / `HelperInterpCubic::aa_filter` (aten/src/ATen/native/cpu/UpSampleKernel.cpp),
    /// evaluated in float as torch does for a float32 input.
    func weight(_ x: Float) -> Float {
        let x = abs(x)
        switch self {
        case .bilinear:
            return x < 1 ? 1 - x : 0
        case .bicubic:
            // cubic_convolution1 / cubic_convolution2 (aten/src/ATen/native/UpSample.h) with A = -0.5.
            let a: Float = -0.5
            if x < 1 { return ((a + 2) * x - (a + 3)) * x * x + 1 }
            if x < 2 { return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a }
            return 0
        }
    }
}

/// torch's antialiased, separable resize of float planes (`_upsample_bilinear2d_aa` / `_upsample_bicubic2d_aa`
/// on CPU, align_corners=False, no explicit scale factor), reproduced operation by operation in float32.
///
/// Per axis, output index i has its centre at `scale·(i + 0.5)` in input coordinates (scale = in/out). The
/// filter is stretched by the scale when downscaling (support = interp_size/2 · scale, so every input pixel
/// under the footprint contributes: the antialiasing), and kept at support interp_size/2 when upscaling. Taps
/// that fall outside the image are dropped and the remaining weights renormalised to sum to 1.
///
/// Order: torch resizes the last (contiguous, "horizontal") dimension first, into a temporary
/// `[C, H, outW]`, then the height (`separable_upsample_generic_Nd_kernel_impl`); an axis whose size does not
/// change is skipped, and when neither changes the input is returned as is.
public enum AntialiasedResize {
    /// One axis's taps: output `i` reads input `start[i] ..< start[i] + count[i]` with
    /// `weights[i * stride ..< i * stride + count[i]]`.
    public struct AxisWeights: Sendable, Equatable {
        public let start: [Int]
        public let count: [Int]
        public let stride: Int
        public let weights: [Float]
    }

    /// The taps of one axis, computed as `HelperInterpBase::_compute_index_ranges_weights` and
    /// `_compute_indices_min_size_weights_aa` do with `scalar_t = float`, including where C++ promotes to double
    /// (a `+ 0.5` or `* 0.5` literal) and rounds back to float.
    public static func axisWeights(inputSize: Int, outputSize: Int, filter: ImageResample) -> AxisWeights {
        precondition(inputSize > 0 && outputSize > 0, "resize \(inputSize) -> \(outputSize)")
        let scale = Float(inputSize) / Float(outputSize)  // area_pixel_compute_scale<float>, align_corners=False
        let halfSupport = Double(filter.interpolationSize) * 0.5
        let support: Float = scale >= 1 ? Float(halfSupport * Double(scale)) : Float(halfSupport)
        let stride = Int(support.rounded(.up)) * 2 + 1  // max_interp_size
        let inverseScale: Float = scale >= 1 ? Float(1.0 / Double(scale)) : 1

        var start = [Int](repeating: 0, count: outputSize)
        var count = [Int](repeating: 0, count: outputSize)
        var weights = [Float](repeating: 0, count: outputSize * stride)
        for i in 0..<outputSize {
            let center = Float(Double(scale) * (Double(i) + 0.5))
            // static_cast<int64_t> truncates toward zero; then clamp to the image.
            let xmin = max(Int(Double(center - support) + 0.5), 0)
            let xsize = min(max(min(Int(Double(center + support) + 0.5), inputSize) - xmin, 0), stride)
            var total: Float = 0
            for j in 0..<xsize {
                // (j + xmin - center + 0.5) * invscale: int - float in float, then double, then float again.
                let distance = Float((Double(Float(j + xmin) - center) + 0.5) * Double(inverseScale))
                let w = filter.weight(distance)
                weights[i * stride + j] = w
                total += w
            }
            if total != 0 {
                for j in 0..<xsize { weights[i * stride + j] /= total }
            }
            start[i] = xmin
            count[i] = xsize
        }
        return AxisWeights(start: start, count: count, stride: stride, weights: weights)
    }

    /// Resizes `planes` (`[C, H, W]` row-major floats) to `[C, outputHeight, outputWidth]`.
    public static func resize(_ planes: [Float], channels: Int, height: Int, width: Int,
                              outputHeight: Int, outputWidth: Int, filter: ImageResample) -> [Float] {
        precondition(planes.count == channels * height * width, "\(planes.count) values for [\(channels), \(height), \(width)]")
        var current = planes
        if outputWidth != width {
            current = horizontal(current, rows: channels * height, width: width, outputWidth: outputWidth,
                                 taps: axisWeights(inputSize: width, outputSize: outputWidth, filter: filter))
        }
        if outputHeight != height {
            current = vertical(current, channels: channels, height: height, width: outputWidth,
                               outputHeight: outputHeight,
                               taps: axisWeights(inputSize: height, outputSize: outputHeight, filter: filter))
        }
        return current
    }

    /// `[rows, width]` → `[rows, outputWidth]`. Each output is `t₀·w₀` then `+= tⱼ·wⱼ` in order, in float
    /// (`interpolate_aa_single_dim`).
    static func horizontal(_ input: [Float], rows: Int, width: Int, outputWidth: Int, taps: AxisWeights) -> [Float] {
        var output = [Float](repeating: 0, count: rows * outputWidth)
        input.withUnsafeBufferPointer { src in
            output.withUnsafeMutableBufferPointer { dst in
                taps.weights.withUnsafeBufferPointer { w in
                    for r in 0..<rows {
                        let row = r * width
                        for i in 0..<outputWidth {
                            dst[r * outputWidth + i] = dot(src, from: row + taps.start[i], step: 1, count: taps.count[i],
                                                           weights: w, at: i * taps.stride)
                        }
                    }
                }
            }
        }
        return output
    }

    /// `[C, height, width]` → `[C, outputHeight, width]`, summing down the columns in the same order.
    static func vertical(_ input: [Float], channels: Int, height: Int, width: Int, outputHeight: Int,
                         taps: AxisWeights) -> [Float] {
        var output = [Float](repeating: 0, count: channels * outputHeight * width)
        input.withUnsafeBufferPointer { src in
            output.withUnsafeMutableBufferPointer { dst in
                taps.weights.withUnsafeBufferPointer { w in
                    for c in 0..<channels {
                        for i in 0..<outputHeight {
                            let first = (c * height + taps.start[i]) * width
                            let out = (c * outputHeight + i) * width
                            for x in 0..<width {
                                dst[out + x] = dot(src, from: first + x, step: width, count: taps.count[i],
                                                   weights: w, at: i * taps.stride)
                            }
                        }
                    }
                }
            }
        }
        return output
    }

    @inline(__always)
    private static func dot(_ src: UnsafeBufferPointer<Float>, from: Int, step: Int, count: Int,
                            weights: UnsafeBufferPointer<Float>, at: Int) -> Float {
        guard count > 0 else { return 0 }
        var sum = src[from] * weights[at]
        for j in 1..<count {
            sum += src[from + j * step] * weights[at + j]
        }
        return sum
    }
}
