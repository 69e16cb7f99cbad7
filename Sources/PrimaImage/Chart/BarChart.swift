/// One set of bars of a ``BarChart``: a value per group, drawn in one colour, optionally with error bars.
public struct BarSeries: Sendable, Equatable {
    public var name: String
    public var color: RGBColor
    /// One value per group; a non-finite value draws no bar.
    public var values: [Double]
    /// Per group, the half-length of an error bar (value ± error); nil, or a non-finite or zero entry, draws none.
    public var errors: [Double]?

    public init(name: String, color: RGBColor, values: [Double], errors: [Double]? = nil) {
        precondition(errors.map { $0.count == values.count } ?? true, "\(values.count) values, \(errors?.count ?? 0) errors")
        (self.name, self.color, self.values, self.errors) = (name, color, values, errors)
    }
}

/// A straight line across a bar chart's plot: from its left edge at y = `start` to its right edge at y = `end`.
public struct ReferenceLine: Sendable, Equatable {
    public var start, end: Double

    public init(start: Double, end: Double) { (self.start, self.end) = (start, end) }
}

/// A grouped bar chart: a title, a legend row (one entry per named series), a y axis ticked at nice steps
/// (``ChartScale``), one labelled group of bars per category along x (the series side by side within a group),
/// error bars with caps, and an optional reference line across the plot (a reliability diagram's diagonal).
///
/// Bars rise from 0 (or from the axis end nearest 0 when 0 is outside the axis). Each group takes an equal share of
/// the plot's width, its bars the middle ``groupFill`` of it. ``layout()`` says where everything goes; ``render()``
/// draws; the same chart always renders to the same pixels.
public struct BarChart: Sendable, Equatable {
    public var title: String
    public var xLabel: String
    public var yLabel: String
    /// A fixed y range, or nil to cover 0, every value and every error bar.
    public var yRange: ClosedRange<Double>?
    /// The group labels along x.
    public var groups: [String]
    public var series: [BarSeries]
    /// Drawn over the bars.
    public var referenceLine: ReferenceLine?
    public var width: Int
    public var height: Int
    public var style: ChartStyle

    /// The fraction of a group's width its bars take.
    public static let groupFill = 0.8

    public init(title: String, xLabel: String, yLabel: String, yRange: ClosedRange<Double>? = nil, groups: [String],
                series: [BarSeries], referenceLine: ReferenceLine? = nil, width: Int = 900, height: Int = 540,
                style: ChartStyle = ChartStyle()) {
        precondition(!groups.isEmpty && !series.isEmpty, "a bar chart needs a group and a series")
        precondition(series.allSatisfy { $0.values.count == groups.count }, "every series needs one value per group")
        precondition(width > 0 && height > 0, "chart size \(width)x\(height)")
        (self.title, self.xLabel, self.yLabel, self.yRange, self.groups, self.series) = (title, xLabel, yLabel, yRange, groups, series)
        (self.referenceLine, self.width, self.height, self.style) = (referenceLine, width, height, style)
    }

    /// Where a bar chart's parts go on the canvas.
    public struct Layout: Sendable, Equatable {
        /// The data area (the frame lies one pixel outside it).
        public let plot: PixelRect
        public let yScale: ChartScale
        /// Per series, per group: the bar's rectangle (nil for a non-finite value).
        public let bars: [[PixelRect?]]
        /// Per series: its legend entry (colour swatch, then name); nil for a series without a name.
        public let legendEntries: [PixelRect?]

        /// The row of value `y` (the axis ends map to the data area's first and last rows), clamped to 10⁴ axis lengths.
        public func row(_ y: Double) -> Double {
            Double(plot.y) + 0.5 + (1 - min(max(yScale.fraction(y), -1e4), 1e4)) * Double(plot.height - 1)
        }
    }

    private static let tickLength = RasterCanvas.tickLength
    private static let gap = RasterCanvas.labelGap
    /// The side of a legend entry's colour square.
    private static let swatch = 14

    private var textHeight: Int { BitmapFont.cellHeight * style.textScale }

    public func layout() -> Layout {
        let yScale = yRange.map { ChartScale(lower: $0.lowerBound, upper: $0.upperBound) } ?? ChartScale.covering(
            [0] + series.flatMap { item in
                item.values.indices.flatMap { g -> [Double] in
                    let value = item.values[g], error = item.errors?[g] ?? 0
                    return error.isFinite ? [value, value - error, value + error] : [value]
                }
            })
        let scale = style.textScale, margin = style.margin
        let labelWidth = yScale.ticks.map { RasterCanvas.textSize(yScale.label($0), scale: scale).width }.max() ?? 0
        let left = margin + (yLabel.isEmpty ? 0 : textHeight + Self.gap) + labelWidth + Self.gap + Self.tickLength + 1
        let right = margin + 1
        let plotWidth = max(1, width - left - right)

        // The legend: entries left to right, wrapping at the plot's width.
        let entryHeight = textHeight + Self.gap
        var x = 0, row = 0, offsets: [(x: Int, row: Int, width: Int)?] = []
        for item in series {
            guard !item.name.isEmpty else { offsets.append(nil); continue }
            let entry = Self.swatch + Self.gap + RasterCanvas.textSize(item.name, scale: scale).width
            if x > 0 && x + entry > plotWidth { (x, row) = (0, row + 1) }
            offsets.append((x, row, entry))
            x += entry + 3 * Self.gap
        }
        let legendRows = offsets.contains { $0 != nil } ? row + 1 : 0
        let titleHeight = title.isEmpty ? 0 : BitmapFont.cellHeight * style.titleScale(for: title, width: width) + 2 * Self.gap
        let legendTop = margin + titleHeight
        let top = legendTop + legendRows * entryHeight + 1
        let bottom = Self.tickLength + 1 + Self.gap + textHeight + (xLabel.isEmpty ? 0 : Self.gap + textHeight) + margin + 1
        let plot = PixelRect(x: left, y: top, width: plotWidth, height: max(1, height - top - bottom))

        let layout = Layout(plot: plot, yScale: yScale, bars: [], legendEntries: [])
        let base = layout.row(min(max(0, yScale.lower), yScale.upper))
        var bars: [[PixelRect?]] = []
        for (s, item) in series.enumerated() {
            bars.append(item.values.indices.map { g in
                let value = item.values[g]
                guard value.isFinite else { return nil }
                let (start, end) = barColumns(group: g, series: s, plot: plot)
                let edge = layout.row(value)
                let topRow = Int(min(edge, base).rounded(.down)), bottomRow = Int(max(edge, base).rounded(.down))
                return PixelRect(x: start, y: topRow, width: end - start, height: bottomRow - topRow + 1).intersection(plot)
            })
        }
        let legendEntries = offsets.map { entry in
            entry.map { PixelRect(x: left + $0.x, y: legendTop + $0.row * entryHeight, width: $0.width, height: textHeight) }
        }
        return Layout(plot: plot, yScale: yScale, bars: bars, legendEntries: legendEntries)
    }

    /// Columns `start..<end` of bar `series` in group `group` (at least one pixel wide).
    private func barColumns(group: Int, series s: Int, plot: PixelRect) -> (Int, Int) {
        let groupWidth = Double(plot.width) / Double(groups.count)
        let barWidth = groupWidth * Self.groupFill / Double(series.count)
        let left = Double(plot.x) + groupWidth * (Double(group) + (1 - Self.groupFill) / 2) + barWidth * Double(s)
        let start = Int(left.rounded()), end = max(start + 1, Int((left + barWidth).rounded()) - 1)
        return (start, end)
    }

    /// Draws the chart.
    public func render() -> RasterCanvas {
        let layout = layout(), plot = layout.plot, yScale = layout.yScale
        var canvas = RasterCanvas(width: width, height: height, background: style.background)
        let scale = style.textScale, capHeight = BitmapFont.capHeight * scale
        canvas.drawTitle(title, width: width, style: style)
        for tick in yScale.ticks {
            canvas.fill(PixelRect(x: plot.x, y: Int(layout.row(tick).rounded(.down)), width: plot.width, height: 1).intersection(plot), style.grid)
        }
        for (item, rects) in zip(series, layout.bars) {
            for rect in rects { if let rect { canvas.fill(rect, item.color) } }
        }
        // Error bars over the bars: a vertical line through the bar's centre with caps half the bar's width.
        for (item, rects) in zip(series, layout.bars) {
            guard let errors = item.errors else { continue }
            for (g, rect) in rects.enumerated() {
                guard let rect, errors[g].isFinite, errors[g] > 0 else { continue }
                let low = Int(layout.row(item.values[g] - errors[g]).rounded(.down)), high = Int(layout.row(item.values[g] + errors[g]).rounded(.down))
                let centre = rect.x + rect.width / 2, cap = max(rect.width / 4, 2)
                canvas.fill(PixelRect(x: centre - 1, y: high, width: 2, height: low - high + 1).intersection(plot), style.text)
                for row in [low, high] {
                    canvas.fill(PixelRect(x: centre - cap, y: row, width: 2 * cap, height: 2).intersection(plot), style.text)
                }
            }
        }
        if let line = referenceLine {
            let start = CanvasPoint(x: Double(plot.x) + 0.5, y: layout.row(line.start))
            let end = CanvasPoint(x: Double(plot.maxX) - 0.5, y: layout.row(line.end))
            canvas.drawPolyline([start, end], lineWidth: 2, style.frame, clip: plot)
        }
        let frame = plot.insetBy(-1)
        canvas.stroke(frame, style.frame)
        canvas.drawYAxis(yScale, row: { Int(layout.row($0).rounded(.down)) }, frame: frame, plot: plot, title: yLabel, style: style)
        let groupWidth = Double(plot.width) / Double(groups.count)
        for (g, label) in groups.enumerated() {
            let centre = plot.x + Int((groupWidth * (Double(g) + 0.5)).rounded(.down))
            canvas.fill(PixelRect(x: centre, y: frame.maxY, width: 1, height: Self.tickLength), style.frame)
            let size = RasterCanvas.textSize(label, scale: scale)
            canvas.drawText(label, x: centre - size.width / 2, y: frame.maxY + Self.tickLength + Self.gap, scale: scale, style.text)
        }
        if !xLabel.isEmpty {
            let size = RasterCanvas.textSize(xLabel, scale: scale)
            canvas.drawText(xLabel, x: plot.x + (plot.width - size.width) / 2,
                            y: frame.maxY + Self.tickLength + Self.gap + textHeight + Self.gap, scale: scale, style.text)
        }
        for (item, entry) in zip(series, layout.legendEntries) {
            guard let entry else { continue }
            canvas.fill(PixelRect(x: entry.x, y: entry.y, width: Self.swatch, height: capHeight), item.color)
            canvas.drawText(item.name, x: entry.x + Self.swatch + Self.gap, y: entry.y, scale: scale, style.text)
        }
        return canvas
    }
}
