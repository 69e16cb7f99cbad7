/// The parts every chart draws the same way: the title, and a y axis's ticks, tick labels and turned title.
extension ChartStyle {
    /// The scale of `title` on a chart `width` pixels wide: ``titleScale``, or smaller (down to 1) while the title
    /// is wider than the margins allow.
    func titleScale(for title: String, width: Int) -> Int {
        var scale = max(titleScale, 1)
        while scale > 1 && RasterCanvas.textSize(title, scale: scale).width > width - 2 * margin { scale -= 1 }
        return scale
    }
}

extension RasterCanvas {
    /// The distances of the axes, in pixels: tick marks, and the gap between a tick and its label.
    static let tickLength = 5
    static let labelGap = 6

    /// `title` centred at the top margin (nothing for an empty title).
    mutating func drawTitle(_ title: String, width: Int, style: ChartStyle) {
        guard !title.isEmpty else { return }
        let scale = style.titleScale(for: title, width: width), size = Self.textSize(title, scale: scale)
        drawText(title, x: (width - size.width) / 2, y: style.margin, scale: scale, style.text)
    }

    /// Tick marks left of `frame` at the rows `row(tick)` of `axis`'s ticks, each labelled to its left, and
    /// `title` turned upwards at the left margin, centred on `plot`.
    mutating func drawYAxis(_ axis: ChartScale, row: (Double) -> Int, frame: PixelRect, plot: PixelRect, title: String, style: ChartStyle) {
        let scale = style.textScale, capHeight = BitmapFont.capHeight * scale
        for tick in axis.ticks {
            let y = row(tick)
            fill(PixelRect(x: frame.x - Self.tickLength, y: y, width: Self.tickLength, height: 1), style.frame)
            let label = axis.label(tick), size = Self.textSize(label, scale: scale)
            drawText(label, x: frame.x - Self.tickLength - Self.labelGap - size.width, y: y - capHeight / 2, scale: scale, style.text)
        }
        if !title.isEmpty {
            let size = Self.textSize(title, scale: scale)
            drawText(title, x: style.margin, y: plot.y + (plot.height + size.width) / 2, scale: scale, style.text, direction: .upward)
        }
    }
}
