import PrimaTensor

/// Parameters that cannot produce pixel values (the message says which and why).
public struct ImagePreprocessingError: Error, CustomStringConvertible, Equatable, Sendable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// DINOv3 image preprocessing: what transformers' `DINOv3ViTImageProcessor` computes as `pixel_values`
/// (numerics.md §1.3; `image_processing_dinov3_vit.py` overrides the usual order to rescale → resize → normalize).
///
/// ```
/// x = float(u8) * float32(rescale_factor)                  # [3, h, w], do_rescale
/// x = antialiased resize of x to (height, width), in float  # do_resize; no crop, aspect ratio not kept
/// x = (x - float32(mean_c)) / float32(std_c)                # do_normalize
/// pixel_values = x[None]                                    # [1, 3, height, width] f32
/// ```
/// The fields mirror the checkpoint's `preprocessing/` attributes (prima-checkpoint.md §3.4); the defaults are
/// the DINOv3 processor's.
///
/// With `doRescale` false the resize still runs on floats (0…255). transformers would resize the uint8 tensor
/// with torch's integer path (rounded back to uint8) and its normalize would then refuse the uint8 tensor, so
/// no reference exists for that combination.
public struct ImagePreprocessing: Sendable, Equatable {
    /// Output size (`size.height`, `size.width`).
    public var height: Int
    public var width: Int
    public var resample: ImageResample
    public var doResize: Bool
    public var doRescale: Bool
    public var doNormalize: Bool
    /// Applied as a float32 multiply by the float32-rounded factor, as torch's `uint8_tensor * python_float` is.
    public var rescaleFactor: Double
    /// Per channel R, G, B; rounded to float32 before use, as `tvF.normalize` does.
    public var imageMean: [Double]
    public var imageStd: [Double]

    public init(height: Int = 224, width: Int = 224, resample: ImageResample = .bilinear, doResize: Bool = true,
                doRescale: Bool = true, doNormalize: Bool = true, rescaleFactor: Double = 1.0 / 255.0,
                imageMean: [Double] = [0.485, 0.456, 0.406], imageStd: [Double] = [0.229, 0.224, 0.225]) {
        self.height = height
        self.width = width
        self.resample = resample
        self.doResize = doResize
        self.doRescale = doRescale
        self.doNormalize = doNormalize
        self.rescaleFactor = rescaleFactor
        self.imageMean = imageMean
        self.imageStd = imageStd
    }

    /// The DINOv3 defaults: 224×224 bilinear, rescale 1/255, ImageNet mean and std.
    public static let dinov3 = ImagePreprocessing()

    /// Largest output side accepted (the decoder's own limit).
    public static let maxOutputSide = 16_384

    /// Throws unless the parameters describe a computation (sizes in range, three finite means, three finite
    /// non-zero standard deviations, a finite positive rescale factor).
    public func validate() throws(ImagePreprocessingError) {
        if doResize {
            guard (1...Self.maxOutputSide).contains(height), (1...Self.maxOutputSide).contains(width) else {
                throw ImagePreprocessingError("preprocessing: output size \(height)x\(width) is outside 1...\(Self.maxOutputSide)")
            }
        }
        if doRescale {
            guard rescaleFactor.isFinite, rescaleFactor > 0 else {
                throw ImagePreprocessingError("preprocessing: rescale_factor \(rescaleFactor) is not a finite positive number")
            }
        }
        if doNormalize {
            guard imageMean.count == 3, imageStd.count == 3 else {
                throw ImagePreprocessingError(
                    "preprocessing: image_mean and image_std need 3 values (R, G, B), got \(imageMean.count) and \(imageStd.count)")
            }
            guard imageMean.allSatisfy(\.isFinite), imageStd.allSatisfy({ $0.isFinite && Float($0) != 0 }) else {
                throw ImagePreprocessingError(
                    "preprocessing: image_mean \(imageMean) and image_std \(imageStd) must be finite, std non-zero in float32")
            }
        }
    }

    /// `pixel_values` for one image: an f32 tensor `[1, 3, H, W]` (H, W = `height`, `width`, or the image's own
    /// size when `doResize` is false).
    public func pixelValues(for image: RGBImage) throws(ImagePreprocessingError) -> Tensor {
        try validate()
        let h = image.height, w = image.width

        // [h, w, 3] interleaved → [3, h, w] planes, rescaled (torch: image * scale, both operands float32).
        let factor: Float = doRescale ? Float(rescaleFactor) : 1
        var planes = [Float](repeating: 0, count: 3 * h * w)
        switch image.samples {
        case .uint8(let samples):
            for p in 0..<(h * w) {
                for c in 0..<3 {
                    let x = Float(samples[p * 3 + c])
                    planes[c * h * w + p] = doRescale ? x * factor : x
                }
            }
        case .float32(let samples):
            for p in 0..<(h * w) {
                for c in 0..<3 {
                    let x = samples[p * 3 + c]
                    planes[c * h * w + p] = doRescale ? x * factor : x
                }
            }
        }

        let outH = doResize ? height : h, outW = doResize ? width : w
        if outH != h || outW != w {
            planes = AntialiasedResize.resize(planes, channels: 3, height: h, width: w,
                                              outputHeight: outH, outputWidth: outW, filter: resample)
        }

        if doNormalize {
            let plane = outH * outW
            for c in 0..<3 {
                let mean = Float(imageMean[c]), std = Float(imageStd[c])
                for i in (c * plane)..<((c + 1) * plane) {
                    planes[i] = (planes[i] - mean) / std
                }
            }
        }
        return Tensor(shape: [1, 3, outH, outW], float32: planes)
    }
}
