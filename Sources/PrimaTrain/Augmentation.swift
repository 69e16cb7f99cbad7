import Foundation
import PrimaImage
import PrimaTensor

/// The random augmentation of one view (Formats/prima-training.md §3.4): a random resized crop (torchvision's
/// `RandomResizedCrop.get_params`, scale 0.6–1.0, aspect ratio 3/4–4/3, ten attempts then a centre crop), a
/// horizontal flip, and mild colour jitter (brightness, contrast, saturation in that fixed order), around the
/// checkpoint's own preprocessing: crop and flip the decoded image, rescale and resize it as
/// ``ImagePreprocessing`` does, jitter, normalise.
///
/// Every draw comes from the stream (seed, augmentation, epoch, index = example, part = view), so a view depends
/// on those numbers and the image alone. `Formats/python/prima_ref/train_data.py` is the numpy twin; the test
/// reproduces its fixture bit for bit.
public enum Augmentation {
    /// The ranges of the draws (defaults: Docs/prima-model.md, "mild" jitter fixed here).
    public struct Settings: Sendable, Equatable {
        /// Crop area as a fraction of the image's area: uniform in [minScale, maxScale].
        public var minScale: Double
        public var maxScale: Double
        /// Crop aspect ratio (width / height): log-uniform in [minRatio, maxRatio].
        public var minRatio: Double
        public var maxRatio: Double
        /// Probability of a horizontal flip.
        public var flipProbability: Double
        /// Jitter strengths s: each factor is uniform in [1 − s, 1 + s].
        public var brightness: Double
        public var contrast: Double
        public var saturation: Double

        public init(minScale: Double = 0.6, maxScale: Double = 1.0, minRatio: Double = 3.0 / 4.0, maxRatio: Double = 4.0 / 3.0,
                    flipProbability: Double = 0.5, brightness: Double = 0.2, contrast: Double = 0.2, saturation: Double = 0.2) {
            precondition(0 < minScale && minScale <= maxScale && maxScale <= 1, "crop scale \(minScale)…\(maxScale)")
            precondition(0 < minRatio && minRatio <= maxRatio, "crop ratio \(minRatio)…\(maxRatio)")
            precondition((0...1).contains(flipProbability), "flip probability \(flipProbability)")
            precondition([brightness, contrast, saturation].allSatisfy { (0...1).contains($0) }, "jitter strengths must lie in 0…1")
            self.minScale = minScale
            self.maxScale = maxScale
            self.minRatio = minRatio
            self.maxRatio = maxRatio
            self.flipProbability = flipProbability
            self.brightness = brightness
            self.contrast = contrast
            self.saturation = saturation
        }

        public static let standard = Settings()
    }

    /// What was drawn for one view.
    public struct Draw: Sendable, Equatable {
        /// The crop box in the decoded image: rows top ..< top + height, columns left ..< left + width.
        public var top: Int
        public var left: Int
        public var height: Int
        public var width: Int
        public var flip: Bool
        /// Jitter factors, as float32.
        public var brightness: Float
        public var contrast: Float
        public var saturation: Float
    }

    /// Tries of torchvision's `get_params` before it falls back to a centre crop.
    public static let cropAttempts = 10

    /// The draws of view `view` of example `index` in `epoch`, for an image of `height` × `width`, in stream
    /// order: per attempt u_scale, u_ratio (and, once a box fits, top = below(H − h + 1), left = below(W − w + 1));
    /// then u_flip, u_brightness, u_contrast, u_saturation.
    public static func draw(height: Int, width: Int, settings: Settings = .standard, seed: UInt64, epoch: Int, index: Int,
                            view: Int) -> Draw {
        var stream = TrainingRandom(seed: seed, purpose: .augmentation, epoch: epoch, index: index, part: view)
        let (top, left, h, w) = cropBox(height: height, width: width, settings: settings, stream: &stream)
        let flip = stream.unit() < settings.flipProbability
        func factor(_ strength: Double) -> Float { Float(1 - strength + 2 * strength * stream.unit()) }
        let brightness = factor(settings.brightness)
        let contrast = factor(settings.contrast)
        let saturation = factor(settings.saturation)
        return Draw(top: top, left: left, height: h, width: w, flip: flip, brightness: brightness, contrast: contrast,
                    saturation: saturation)
    }

    /// torchvision's `RandomResizedCrop.get_params` with its uniform draws from `stream` (all in double):
    /// ```
    /// for 10 attempts:
    ///     target = H·W · (minScale + (maxScale − minScale) · unit())
    ///     ratio  = exp(log(minRatio) + (log(maxRatio) − log(minRatio)) · unit())
    ///     w = round(sqrt(target · ratio)); h = round(sqrt(target / ratio))      # round half to even
    ///     if 0 < w ≤ W and 0 < h ≤ H: return (below(H − h + 1), below(W − w + 1), h, w)
    /// centre crop: W/H < minRatio → w = W, h = round(w / minRatio); W/H > maxRatio → h = H, w = round(h · maxRatio);
    ///              else the whole image; top = (H − h) div 2, left = (W − w) div 2
    /// ```
    static func cropBox(height: Int, width: Int, settings: Settings, stream: inout TrainingRandom) -> (Int, Int, Int, Int) {
        let area = Double(height * width)
        let logLow = log(settings.minRatio), logHigh = log(settings.maxRatio)
        for _ in 0..<cropAttempts {
            let target = area * (settings.minScale + (settings.maxScale - settings.minScale) * stream.unit())
            let ratio = exp(logLow + (logHigh - logLow) * stream.unit())
            let w = Int((target * ratio).squareRoot().rounded(.toNearestOrEven))
            let h = Int((target / ratio).squareRoot().rounded(.toNearestOrEven))
            if w > 0, w <= width, h > 0, h <= height {
                let top = stream.below(height - h + 1)
                let left = stream.below(width - w + 1)
                return (top, left, h, w)
            }
        }
        let inRatio = Double(width) / Double(height)
        var w = width, h = height
        if inRatio < settings.minRatio {
            h = Int((Double(w) / settings.minRatio).rounded(.toNearestOrEven))
        } else if inRatio > settings.maxRatio {
            w = Int((Double(h) * settings.maxRatio).rounded(.toNearestOrEven))
        }
        return ((height - h) / 2, (width - w) / 2, h, w)
    }

    /// The view's pixel values [1, 3, H, W] (H, W: the preprocessing's size):
    /// 1. crop the box of `draw` out of `image`, then mirror its columns if `draw.flip`;
    /// 2. `preprocessing` without its normalisation: x = sample · float32(rescale_factor), antialiased resize;
    /// 3. jitter, each step in float32 and clamped to [0, bound], bound = 255 · float32(rescale_factor)
    ///    (255 without rescaling), gray(p) = 0.2989·R + 0.587·G + 0.114·B evaluated left to right:
    ///    brightness x = clamp(b·x); contrast x = clamp(c·x + (1 − c)·m), m = float32(Σ gray(p) in double, in
    ///    row-major order, / (H·W)); saturation x = clamp(s·x + (1 − s)·gray(p)), gray of the contrasted pixel;
    /// 4. normalise as ``ImagePreprocessing`` does: (x − float32(mean_c)) / float32(std_c).
    /// Throws if the preprocessing does not resize (the views of a batch need one size) or is invalid.
    public static func apply(_ draw: Draw, to image: RGBImage, preprocessing: ImagePreprocessing) throws(ImagePreprocessingError) -> Tensor {
        guard preprocessing.doResize else {
            throw ImagePreprocessingError("preprocessing: augmentation needs do_resize (the crops of a batch must come out one size)")
        }
        precondition(draw.top >= 0 && draw.left >= 0 && draw.height > 0 && draw.width > 0
                     && draw.top + draw.height <= image.height && draw.left + draw.width <= image.width,
                     "crop box outside the \(image.width)x\(image.height) image")
        var resizing = preprocessing
        resizing.doNormalize = false
        var planes = try resizing.pixelValues(for: crop(image, draw)).float32Values()  // [3, H, W]
        let plane = preprocessing.height * preprocessing.width
        let bound: Float = 255 * (preprocessing.doRescale ? Float(preprocessing.rescaleFactor) : 1)
        jitter(&planes, plane: plane, draw: draw, bound: bound)
        if preprocessing.doNormalize {
            for c in 0..<3 {
                let mean = Float(preprocessing.imageMean[c]), std = Float(preprocessing.imageStd[c])
                for i in (c * plane)..<((c + 1) * plane) { planes[i] = (planes[i] - mean) / std }
            }
        }
        return Tensor(shape: [1, 3, preprocessing.height, preprocessing.width], float32: planes)
    }

    /// The pixel values of view `view` of example `index` in `epoch`: ``draw(height:width:settings:seed:epoch:index:view:)``
    /// then ``apply(_:to:preprocessing:)``.
    public static func view(of image: RGBImage, preprocessing: ImagePreprocessing, settings: Settings = .standard,
                            seed: UInt64, epoch: Int, index: Int, view: Int) throws(ImagePreprocessingError) -> Tensor {
        let drawn = draw(height: image.height, width: image.width, settings: settings, seed: seed, epoch: epoch, index: index, view: view)
        return try apply(drawn, to: image, preprocessing: preprocessing)
    }

    /// The crop box of `draw`, mirrored left to right if `draw.flip`, as an image of the same sample kind.
    static func crop(_ image: RGBImage, _ draw: Draw) -> RGBImage {
        func cut<T>(_ samples: [T]) -> [T] {
            var out: [T] = []
            out.reserveCapacity(draw.height * draw.width * 3)
            for y in draw.top..<(draw.top + draw.height) {
                for i in 0..<draw.width {
                    let x = draw.flip ? draw.left + draw.width - 1 - i : draw.left + i
                    let at = (y * image.width + x) * 3
                    out.append(samples[at]); out.append(samples[at + 1]); out.append(samples[at + 2])
                }
            }
            return out
        }
        switch image.samples {
        case .uint8(let samples): return RGBImage(width: draw.width, height: draw.height, samples: .uint8(cut(samples)))
        case .float32(let samples): return RGBImage(width: draw.width, height: draw.height, samples: .float32(cut(samples)))
        }
    }

    /// Brightness, contrast, saturation on `planes` ([3, H, W], R, G, B planes of `plane` values each).
    static func jitter(_ planes: inout [Float], plane: Int, draw: Draw, bound: Float) {
        @inline(__always) func clamp(_ x: Float) -> Float { min(max(x, 0), bound) }
        @inline(__always) func gray(_ p: Int) -> Float {
            let r = planes[p], g = planes[plane + p], b = planes[2 * plane + p]
            return Float(0.2989) * r + Float(0.587) * g + Float(0.114) * b
        }
        let b = draw.brightness
        for i in 0..<(3 * plane) { planes[i] = clamp(b * planes[i]) }

        var sum = 0.0
        for p in 0..<plane { sum += Double(gray(p)) }
        let mean = Float(sum / Double(plane))
        let c = draw.contrast, cRest = 1 - draw.contrast
        for i in 0..<(3 * plane) { planes[i] = clamp(c * planes[i] + cRest * mean) }

        let s = draw.saturation, sRest = 1 - draw.saturation
        for p in 0..<plane {
            let g = gray(p)
            for channel in 0..<3 {
                let i = channel * plane + p
                planes[i] = clamp(s * planes[i] + sRest * g)
            }
        }
    }
}
