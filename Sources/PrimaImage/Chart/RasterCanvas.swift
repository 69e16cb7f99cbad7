/// An 8-bit sRGB colour.
public struct RGBColor: Sendable, Equatable, Hashable {
    public var red, green, blue: UInt8

    public init(_ red: UInt8, _ green: UInt8, _ blue: UInt8) {
        (self.red, self.green, self.blue) = (red, green, blue)
    }

    /// `self` moved towards `other` by `amount` (0: self, 1: other), per channel, rounded to nearest (no gamma).
    public func mixed(with other: RGBColor, amount: Double) -> RGBColor {
        func channel(_ a: UInt8, _ b: UInt8) -> UInt8 {
            UInt8((Double(a) + (Double(b) - Double(a)) * min(max(amount, 0), 1)).rounded())
        }
        return RGBColor(channel(red, other.red), channel(green, other.green), channel(blue, other.blue))
    }

    public static let white = RGBColor(255, 255, 255)
    public static let black = RGBColor(0, 0, 0)
}

/// A pixel rectangle: columns `x..<x + width`, rows `y..<y + height`.
public struct PixelRect: Sendable, Equatable {
    public var x, y, width, height: Int

    public init(x: Int, y: Int, width: Int, height: Int) {
        (self.x, self.y, self.width, self.height) = (x, y, width, height)
    }

    public var maxX: Int { x + width }
    public var maxY: Int { y + height }
    public var isEmpty: Bool { width <= 0 || height <= 0 }

    /// The overlap of two rectangles (empty when they do not overlap).
    public func intersection(_ other: PixelRect) -> PixelRect {
        let left = max(x, other.x), top = max(y, other.y)
        return PixelRect(x: left, y: top, width: max(0, min(maxX, other.maxX) - left), height: max(0, min(maxY, other.maxY) - top))
    }

    /// The rectangle grown by `amount` pixels on every side (shrunk for a negative amount).
    public func insetBy(_ amount: Int) -> PixelRect {
        PixelRect(x: x + amount, y: y + amount, width: width - 2 * amount, height: height - 2 * amount)
    }
}

/// A point in continuous canvas coordinates: x to the right, y down, in pixels; pixel `(i, j)` covers
/// `[i, i + 1) × [j, j + 1)`, so its centre is `(i + 0.5, j + 0.5)`.
public struct CanvasPoint: Sendable, Equatable {
    public var x, y: Double

    public init(x: Double, y: Double) { (self.x, self.y) = (x, y) }
}

/// The shape of a point marker.
public enum MarkerShape: Sendable, Equatable {
    case circle, square
}

/// A raster of RGB pixels with the few primitives charts need: filled rectangles, crisp axis-aligned lines,
/// antialiased polylines of any width, markers and bitmap text (``BitmapFont``).
///
/// Coordinates: integer pixel positions for rectangles and text, continuous ``CanvasPoint``s for lines and
/// markers (origin at the top-left corner, y down). Everything is clipped to the canvas, and lines and markers
/// also to an optional clip rectangle. Antialiasing computes each pixel's coverage from its centre's distance to
/// the shape (coverage 1 up to half the width, falling linearly to 0 one pixel further) and blends the colour by
/// that coverage, straight in 8-bit sRGB values; a polyline's coverage is the maximum over its segments, so joints
/// are not drawn twice. The arithmetic is plain IEEE double in a fixed order, so the same drawing calls give the
/// same pixels on every run.
public struct RasterCanvas: Sendable, Equatable {
    public let width: Int
    public let height: Int
    /// `[height, width, 3]` RGB samples, row-major.
    public private(set) var pixels: [UInt8]

    /// A canvas of `width × height` pixels filled with `background`.
    public init(width: Int, height: Int, background: RGBColor = .white) {
        precondition(width > 0 && height > 0, "canvas size \(width)x\(height)")
        self.width = width
        self.height = height
        pixels = [UInt8](repeating: 0, count: width * height * 3)
        fill(PixelRect(x: 0, y: 0, width: width, height: height), background)
    }

    /// The whole canvas.
    public var bounds: PixelRect { PixelRect(x: 0, y: 0, width: width, height: height) }

    /// The canvas as an image (8-bit samples), ready for ``PNGEncoder``.
    public var image: RGBImage { RGBImage(width: width, height: height, samples: .uint8(pixels)) }

    /// The colour of pixel `(x, y)`. Precondition: inside the canvas.
    public func color(x: Int, y: Int) -> RGBColor {
        precondition(x >= 0 && x < width && y >= 0 && y < height, "pixel (\(x), \(y)) outside \(width)x\(height)")
        let index = (y * width + x) * 3
        return RGBColor(pixels[index], pixels[index + 1], pixels[index + 2])
    }

    /// Sets pixel `(x, y)`; pixels outside the canvas are ignored.
    public mutating func set(x: Int, y: Int, _ color: RGBColor) {
        guard x >= 0 && x < width && y >= 0 && y < height else { return }
        let index = (y * width + x) * 3
        (pixels[index], pixels[index + 1], pixels[index + 2]) = (color.red, color.green, color.blue)
    }

    /// Blends `color` over pixel `(x, y)` with opacity `coverage` (0…1); pixels outside the canvas are ignored.
    public mutating func blend(x: Int, y: Int, _ color: RGBColor, coverage: Double) {
        guard x >= 0 && x < width && y >= 0 && y < height, coverage > 0 else { return }
        set(x: x, y: y, self.color(x: x, y: y).mixed(with: color, amount: coverage))
    }

    /// Fills `rect` (clipped to the canvas).
    public mutating func fill(_ rect: PixelRect, _ color: RGBColor) {
        let clipped = rect.intersection(bounds)
        guard !clipped.isEmpty else { return }
        for y in clipped.y..<clipped.maxY {
            for x in clipped.x..<clipped.maxX { set(x: x, y: y, color) }
        }
    }

    /// The one-pixel outline just inside `rect`.
    public mutating func stroke(_ rect: PixelRect, _ color: RGBColor) {
        guard !rect.isEmpty else { return }
        fill(PixelRect(x: rect.x, y: rect.y, width: rect.width, height: 1), color)
        fill(PixelRect(x: rect.x, y: rect.maxY - 1, width: rect.width, height: 1), color)
        fill(PixelRect(x: rect.x, y: rect.y, width: 1, height: rect.height), color)
        fill(PixelRect(x: rect.maxX - 1, y: rect.y, width: 1, height: rect.height), color)
    }

    // MARK: - Antialiased shapes

    /// Draws the polyline through `points` with `lineWidth` pixels (round joints and ends), clipped to `clip` (and
    /// the canvas). A single point draws a dot of the line's width. Points must be finite (precondition): callers
    /// split a series at its gaps.
    public mutating func drawPolyline(_ points: [CanvasPoint], lineWidth: Double, _ color: RGBColor, clip: PixelRect? = nil) {
        guard !points.isEmpty, lineWidth > 0 else { return }
        precondition(points.allSatisfy { $0.x.isFinite && $0.y.isFinite }, "a polyline point is not finite")
        let half = lineWidth / 2
        var mask = CoverageMask(clip: CoverageMask.box(around: points, reach: half + 0.5).intersection((clip ?? bounds).intersection(bounds)))
        if points.count == 1 {
            mask.addSegment(points[0], points[0], halfWidth: half)
        } else {
            for index in 1..<points.count { mask.addSegment(points[index - 1], points[index], halfWidth: half) }
        }
        composite(mask, color)
    }

    /// Draws a filled marker centred on `center` (`radius`: half the side of a square), clipped like a polyline.
    public mutating func drawMarker(_ shape: MarkerShape, at center: CanvasPoint, radius: Double, _ color: RGBColor,
                                    clip: PixelRect? = nil) {
        guard center.x.isFinite && center.y.isFinite, radius > 0 else { return }
        var mask = CoverageMask(clip: CoverageMask.box(around: [center], reach: radius + 0.5).intersection((clip ?? bounds).intersection(bounds)))
        mask.addMarker(shape, center: center, radius: radius)
        composite(mask, color)
    }

    private mutating func composite(_ mask: CoverageMask, _ color: RGBColor) {
        guard let touched = mask.touched else { return }
        for y in touched.y..<touched.maxY {
            for x in touched.x..<touched.maxX { blend(x: x, y: y, color, coverage: Double(mask[x, y])) }
        }
    }

    // MARK: - Text

    /// The direction text runs in.
    public enum TextDirection: Sendable {
        /// Left to right; `(x, y)` is the top-left corner of the first character's cell.
        case horizontal
        /// Bottom to top, the text turned 90° anticlockwise (the tops of the letters face left), as y-axis titles
        /// are; `(x, y)` is the bottom-left corner of the turned text, which spans columns `x..<x + size.height`
        /// and rows `y - size.width + 1...y`.
        case upward
    }

    /// Draws `text` in ``BitmapFont`` at `scale` (each font pixel a `scale × scale` block, no antialiasing);
    /// characters the font lacks are drawn as `?`.
    public mutating func drawText(_ text: String, x: Int, y: Int, scale: Int = 1, _ color: RGBColor,
                                  direction: TextDirection = .horizontal) {
        precondition(scale >= 1, "text scale \(scale)")
        for (position, character) in text.unicodeScalars.enumerated() {
            let rows = BitmapFont.glyph(character)
            for (row, bits) in rows.enumerated() {
                for column in 0..<BitmapFont.glyphWidth where bits & (1 << (BitmapFont.glyphWidth - 1 - column)) != 0 {
                    // (u, v): the font pixel's position along and across the text, in font pixels.
                    let u = position * BitmapFont.advance + column, v = row
                    for dy in 0..<scale {
                        for dx in 0..<scale {
                            switch direction {
                            case .horizontal: set(x: x + u * scale + dx, y: y + v * scale + dy, color)
                            case .upward: set(x: x + v * scale + dy, y: y - u * scale - dx, color)
                            }
                        }
                    }
                }
            }
        }
    }

    /// The size of `text`'s box at `scale` along its direction: `width` along the text (no spacing after the last
    /// character), `height` one cell with descenders (``BitmapFont/cellHeight``).
    public static func textSize(_ text: String, scale: Int = 1) -> (width: Int, height: Int) {
        let count = text.unicodeScalars.count
        return (count == 0 ? 0 : (count * BitmapFont.advance - (BitmapFont.advance - BitmapFont.glyphWidth)) * scale,
                BitmapFont.cellHeight * scale)
    }
}

/// Per-pixel coverage (0…1) of one shape over a clip rectangle (the shape's box within the canvas' clip, so a
/// marker costs its own few pixels), combined by maximum, so overlapping parts of the shape (a polyline's joints)
/// blend once.
struct CoverageMask {
    let clip: PixelRect
    private var values: [Float]
    /// The bounding box of the pixels given any coverage, nil while none.
    private(set) var touched: PixelRect?

    init(clip: PixelRect) {
        self.clip = clip
        values = [Float](repeating: 0, count: max(0, clip.width) * max(0, clip.height))
    }

    subscript(x: Int, y: Int) -> Float { values[(y - clip.y) * clip.width + (x - clip.x)] }

    /// The pixels whose centres can lie within `reach` of `points`' bounding box.
    static func box(around points: [CanvasPoint], reach: Double) -> PixelRect {
        let left = index((points.map(\.x).min() ?? 0) - reach), right = index((points.map(\.x).max() ?? 0) + reach)
        let top = index((points.map(\.y).min() ?? 0) - reach), bottom = index((points.map(\.y).max() ?? 0) + reach)
        return PixelRect(x: left, y: top, width: right - left + 1, height: bottom - top + 1)
    }

    /// Covers the pixels whose centres lie within `halfWidth` of the segment `a`–`b` (a dot where a == b):
    /// coverage `clamp(halfWidth + 0.5 - distance, 0, 1)`.
    mutating func addSegment(_ a: CanvasPoint, _ b: CanvasPoint, halfWidth: Double) {
        let dx = b.x - a.x, dy = b.y - a.y, lengthSquared = dx * dx + dy * dy
        cover(minX: min(a.x, b.x), maxX: max(a.x, b.x), minY: min(a.y, b.y), maxY: max(a.y, b.y), reach: halfWidth + 0.5) { px, py in
            // The distance from the pixel centre to the closest point of the segment.
            let t = lengthSquared > 0 ? min(max(((px - a.x) * dx + (py - a.y) * dy) / lengthSquared, 0), 1) : 0
            let ex = px - (a.x + t * dx), ey = py - (a.y + t * dy)
            return halfWidth + 0.5 - (ex * ex + ey * ey).squareRoot()
        }
    }

    /// Covers a filled marker: a disc of `radius`, or a square of half-side `radius`.
    mutating func addMarker(_ shape: MarkerShape, center: CanvasPoint, radius: Double) {
        cover(minX: center.x, maxX: center.x, minY: center.y, maxY: center.y, reach: radius + 0.5) { px, py in
            let dx = px - center.x, dy = py - center.y
            switch shape {
            case .circle: return radius + 0.5 - (dx * dx + dy * dy).squareRoot()
            case .square: return radius + 0.5 - max(abs(dx), abs(dy))
            }
        }
    }

    /// Visits the pixels of the clip whose centres lie within `reach` of the box, giving each the maximum of its
    /// coverage and `coverage(centre)` clamped to 0…1.
    private mutating func cover(minX: Double, maxX: Double, minY: Double, maxY: Double, reach: Double,
                                _ coverage: (Double, Double) -> Double) {
        let area = Self.box(around: [CanvasPoint(x: minX, y: minY), CanvasPoint(x: maxX, y: maxY)], reach: reach).intersection(clip)
        guard !area.isEmpty else { return }
        var any = false
        for y in area.y..<area.maxY {
            for x in area.x..<area.maxX {
                let value = Float(min(max(coverage(Double(x) + 0.5, Double(y) + 0.5), 0), 1))
                let index = (y - clip.y) * clip.width + (x - clip.x)
                if value > values[index] {
                    values[index] = value
                    any = true
                }
            }
        }
        guard any else { return }
        if let touched {
            let left = min(touched.x, area.x), top = min(touched.y, area.y)
            self.touched = PixelRect(x: left, y: top, width: max(touched.maxX, area.maxX) - left, height: max(touched.maxY, area.maxY) - top)
        } else {
            touched = area
        }
    }

    /// The pixel index holding coordinate `value`, clamped far outside any canvas so huge coordinates stay integers.
    static func index(_ value: Double) -> Int {
        Int(min(max(value, -1e9), 1e9).rounded(.down))
    }
}
