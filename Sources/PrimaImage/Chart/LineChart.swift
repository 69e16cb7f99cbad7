/// A data point of a chart series.
public struct ChartPoint: Sendable, Equatable {
    public var x, y: Double

    public init(x: Double, y: Double) { (self.x, self.y) = (x, y) }
}

/// One named line of a ``LineChart`` panel.
///
/// Points are joined in the order given. A point with a non-finite coordinate is a gap: the line stops before it
/// and starts again after it, and nothing is drawn for it. A finite point with no finite neighbour (a series of
/// one point, or one between two gaps) is drawn as a marker, so it never disappears.
public struct ChartSeries: Sendable, Equatable {
    public var name: String
    public var color: RGBColor
    public var points: [ChartPoint]
    /// Line width in pixels (0: markers only).
    public var lineWidth: Double
    /// A marker on every point, or nil for a plain line.
    public var marker: MarkerShape?
    /// A marker's radius (circle) or half side (square), in pixels.
    public var markerRadius: Double
    /// Whether the panel's legend lists the series.
    public var inLegend: Bool

    public init(name: String, color: RGBColor, points: [ChartPoint], lineWidth: Double = 2, marker: MarkerShape? = nil,
                markerRadius: Double = 3, inLegend: Bool = true) {
        precondition(lineWidth >= 0 && markerRadius > 0, "series \(name): line width \(lineWidth), marker radius \(markerRadius)")
        (self.name, self.color, self.points, self.lineWidth) = (name, color, points, lineWidth)
        (self.marker, self.markerRadius, self.inLegend) = (marker, markerRadius, inLegend)
    }

    /// The series' points split at its gaps: the runs of consecutive finite points.
    var runs: [[ChartPoint]] {
        points.split { !($0.x.isFinite && $0.y.isFinite) }.map(Array.init)
    }
}

/// One plot of a ``LineChart``: a y axis and its series. Panels are stacked top to bottom and share the x axis.
public struct ChartPanel: Sendable, Equatable {
    /// The y axis' title, written upwards beside it.
    public var yLabel: String
    /// A fixed y range (ticked at nice steps inside it), or nil to cover the panel's data (``ChartScale/covering(_:tickTarget:)``).
    public var yRange: ClosedRange<Double>?
    public var series: [ChartSeries]
    /// The panel's share of the plotting height, relative to the other panels' weights.
    public var weight: Double

    public init(yLabel: String, yRange: ClosedRange<Double>? = nil, series: [ChartSeries], weight: Double = 1) {
        precondition(weight > 0, "panel weight \(weight)")
        precondition(yRange.map { $0.lowerBound.isFinite && $0.upperBound.isFinite && $0.upperBound - $0.lowerBound >= 1e-290 } ?? true,
                     "panel \(yLabel): y range \(String(describing: yRange))")
        (self.yLabel, self.yRange, self.series, self.weight) = (yLabel, yRange, series, weight)
    }
}

/// Colours and text sizes of the charts.
public struct ChartStyle: Sendable, Equatable {
    public var background = RGBColor.white
    public var text = RGBColor(34, 34, 34)
    /// The frame around each plot and the tick marks.
    public var frame = RGBColor(90, 90, 90)
    public var grid = RGBColor(228, 228, 228)
    /// The "no data" note of an empty panel.
    public var note = RGBColor(150, 150, 150)
    /// ``BitmapFont`` scale of the title (smaller for a title too wide for the chart), and of every other text.
    public var titleScale = 3
    public var textScale = 2
    /// Space around the chart, in pixels.
    public var margin = 12

    public init() {}

    /// A categorical palette (the ten colours of Tableau 10, which matplotlib uses by default), for series.
    public static let palette: [RGBColor] = [
        RGBColor(31, 119, 180), RGBColor(255, 127, 14), RGBColor(44, 160, 44), RGBColor(214, 39, 40), RGBColor(148, 103, 189),
        RGBColor(140, 86, 75), RGBColor(227, 119, 194), RGBColor(127, 127, 127), RGBColor(188, 189, 34), RGBColor(23, 190, 207),
    ]
}

/// A line chart: a title, one or more panels stacked vertically over a shared x axis, each with its y axis, grid,
/// series and a legend row above it. Axes are ticked at nice steps (``ChartScale``); text is ``BitmapFont``
/// (ASCII; other characters print as `?`).
///
/// ``layout()`` says where everything goes (tests and callers can map data to pixels with it); ``render()`` draws.
/// The same chart always renders to the same pixels.
public struct LineChart: Sendable, Equatable {
    public var title: String
    public var xLabel: String
    /// A fixed x range, or nil to cover every panel's x values.
    public var xRange: ClosedRange<Double>?
    public var panels: [ChartPanel]
    public var width: Int
    public var height: Int
    public var style: ChartStyle

    public init(title: String, xLabel: String, xRange: ClosedRange<Double>? = nil, panels: [ChartPanel], width: Int = 900,
                height: Int = 540, style: ChartStyle = ChartStyle()) {
        precondition(!panels.isEmpty, "a chart needs a panel")
        precondition(width > 0 && height > 0, "chart size \(width)x\(height)")
        precondition(xRange.map { $0.lowerBound.isFinite && $0.upperBound.isFinite && $0.upperBound - $0.lowerBound >= 1e-290 } ?? true,
                     "x range \(String(describing: xRange))")
        (self.title, self.xLabel, self.xRange, self.panels) = (title, xLabel, xRange, panels)
        (self.width, self.height, self.style) = (width, height, style)
    }

    /// Where a chart's parts go on the canvas.
    public struct Layout: Sendable, Equatable {
        public let xScale: ChartScale
        /// Per panel, top to bottom: its data area (the frame lies one pixel outside it).
        public let plots: [PixelRect]
        /// Per panel: its y axis.
        public let yScales: [ChartScale]
        /// Per panel, the box of each legend entry (its sample line, then its name), in series order (nil for a
        /// series not in the legend).
        public let legendEntries: [[PixelRect?]]

        /// The canvas position of data point `(x, y)` in panel `panel`: the axis ends map to the centres of the
        /// data area's first and last pixels. Points far outside the axes are pulled in to 10⁴ axis lengths.
        public func point(x: Double, y: Double, panel: Int) -> CanvasPoint {
            let rect = plots[panel]
            let fx = min(max(xScale.fraction(x), -1e4), 1e4), fy = min(max(yScales[panel].fraction(y), -1e4), 1e4)
            return CanvasPoint(x: Double(rect.x) + 0.5 + fx * Double(rect.width - 1),
                               y: Double(rect.y) + 0.5 + (1 - fy) * Double(rect.height - 1))
        }
    }

    // Fixed distances of the layout, in pixels.
    private static let tickLength = RasterCanvas.tickLength
    private static let gap = RasterCanvas.labelGap
    /// The length of a legend entry's sample line.
    private static let legendSample = 24

    /// The text height at the text scale, and the same for the title.
    private var textHeight: Int { BitmapFont.cellHeight * style.textScale }
    private var titleHeight: Int { title.isEmpty ? 0 : BitmapFont.cellHeight * titleScale }
    /// The title's scale: the style's, or smaller (down to 1) while the title is wider than the chart's margins allow.
    private var titleScale: Int { style.titleScale(for: title, width: width) }

    public func layout() -> Layout {
        let xScale = xRange.map { ChartScale(lower: $0.lowerBound, upper: $0.upperBound) }
            ?? ChartScale.covering(panels.flatMap { $0.series.flatMap { $0.points.map(\.x) } })
        let yScales = panels.map { panel in
            panel.yRange.map { ChartScale(lower: $0.lowerBound, upper: $0.upperBound) }
                ?? ChartScale.covering(panel.series.flatMap { $0.points.map(\.y) })
        }
        let scale = style.textScale, margin = style.margin
        let labelWidth = yScales.flatMap { axis in axis.ticks.map { RasterCanvas.textSize(axis.label($0), scale: scale).width } }.max() ?? 0
        let hasYLabel = panels.contains { !$0.yLabel.isEmpty }
        let left = margin + (hasYLabel ? textHeight + Self.gap : 0) + labelWidth + Self.gap + Self.tickLength + 1
        // Room for half of the last x label past the right end of the axis.
        let lastLabel = xScale.ticks.last.map { RasterCanvas.textSize(xScale.label($0), scale: scale).width } ?? 0
        let right = max(margin, lastLabel / 2 + Self.gap) + 1
        let plotWidth = max(1, width - left - right)

        // Legend rows per panel: entries left to right, wrapping at the plot's width.
        let entryHeight = textHeight + Self.gap
        var legendOffsets: [[(x: Int, row: Int, width: Int)?]] = [], legendRows: [Int] = []
        for panel in panels {
            var x = 0, row = 0, offsets: [(x: Int, row: Int, width: Int)?] = []
            for series in panel.series {
                guard series.inLegend else { offsets.append(nil); continue }
                let entry = Self.legendSample + Self.gap + RasterCanvas.textSize(series.name, scale: scale).width
                if x > 0 && x + entry > plotWidth { (x, row) = (0, row + 1) }
                offsets.append((x, row, entry))
                x += entry + 3 * Self.gap
            }
            legendOffsets.append(offsets)
            legendRows.append(offsets.contains { $0 != nil } ? row + 1 : 0)
        }

        let top = margin + (titleHeight > 0 ? titleHeight + 2 * Self.gap : 0)
        let bottom = Self.tickLength + 1 + Self.gap + textHeight + (xLabel.isEmpty ? 0 : Self.gap + textHeight) + margin
        let panelGap = 2 * Self.gap + 2  // between one panel's frame and the next panel's legend
        let fixed = top + bottom + legendRows.reduce(0) { $0 + $1 * entryHeight } + (panels.count - 1) * panelGap + 2 * panels.count
        let available = max(panels.count, height - fixed)
        let totalWeight = panels.reduce(0) { $0 + $1.weight }
        var plots: [PixelRect] = [], legendEntries: [[PixelRect?]] = []
        var y = top, used = 0
        for (index, panel) in panels.enumerated() {
            let legendTop = y
            y += legendRows[index] * entryHeight + 1  // + 1: the frame above the data area
            // The last panel takes what rounding left over.
            let share = index == panels.count - 1 ? available - used : Int(Double(available) * panel.weight / totalWeight)
            let plotHeight = max(1, share)
            used += plotHeight
            plots.append(PixelRect(x: left, y: y, width: plotWidth, height: plotHeight))
            legendEntries.append(legendOffsets[index].map { entry in
                entry.map { PixelRect(x: left + $0.x, y: legendTop + $0.row * entryHeight, width: $0.width, height: textHeight) }
            })
            y += plotHeight + 1 + panelGap
        }
        return Layout(xScale: xScale, plots: plots, yScales: yScales, legendEntries: legendEntries)
    }

    /// Draws the chart.
    public func render() -> RasterCanvas {
        let layout = layout()
        var canvas = RasterCanvas(width: width, height: height, background: style.background)
        let scale = style.textScale, capHeight = BitmapFont.capHeight * scale

        canvas.drawTitle(title, width: width, style: style)
        for (index, panel) in panels.enumerated() {
            let rect = layout.plots[index], yScale = layout.yScales[index]
            let frame = rect.insetBy(-1)
            let isBottom = index == panels.count - 1

            // Grid lines at the ticks, under everything else.
            for tick in yScale.ticks {
                let row = Int(layout.point(x: layout.xScale.lower, y: tick, panel: index).y.rounded(.down))
                canvas.fill(PixelRect(x: rect.x, y: row, width: rect.width, height: 1).intersection(rect), style.grid)
            }
            for tick in layout.xScale.ticks {
                let column = Int(layout.point(x: tick, y: yScale.lower, panel: index).x.rounded(.down))
                canvas.fill(PixelRect(x: column, y: rect.y, width: 1, height: rect.height).intersection(rect), style.grid)
            }

            // The series, clipped a little outside the frame so that markers on the axis ends stay whole.
            let clip = rect.insetBy(-(Self.gap - 1))
            var drewAny = false
            for series in panel.series {
                for run in series.runs {
                    let points = run.map { layout.point(x: $0.x, y: $0.y, panel: index) }
                    drewAny = true
                    if points.count == 1 && series.marker == nil {
                        canvas.drawMarker(.circle, at: points[0], radius: max(series.markerRadius, series.lineWidth), series.color, clip: clip)
                    } else if series.lineWidth > 0 {
                        canvas.drawPolyline(points, lineWidth: series.lineWidth, series.color, clip: clip)
                    }
                    if let marker = series.marker {
                        for point in points { canvas.drawMarker(marker, at: point, radius: series.markerRadius, series.color, clip: clip) }
                    }
                }
            }
            if !drewAny {
                let note = "no data", size = RasterCanvas.textSize(note, scale: scale)
                canvas.drawText(note, x: rect.x + (rect.width - size.width) / 2, y: rect.y + (rect.height - capHeight) / 2, scale: scale, style.note)
            }

            // Frame, tick marks and tick labels.
            canvas.stroke(frame, style.frame)
            canvas.drawYAxis(yScale, row: { Int(layout.point(x: layout.xScale.lower, y: $0, panel: index).y.rounded(.down)) }, frame: frame,
                             plot: rect, title: panel.yLabel, style: style)
            for tick in layout.xScale.ticks {
                let column = Int(layout.point(x: tick, y: yScale.lower, panel: index).x.rounded(.down))
                canvas.fill(PixelRect(x: column, y: frame.maxY, width: 1, height: Self.tickLength), style.frame)
                guard isBottom else { continue }
                let label = layout.xScale.label(tick), size = RasterCanvas.textSize(label, scale: scale)
                canvas.drawText(label, x: column - size.width / 2, y: frame.maxY + Self.tickLength + Self.gap, scale: scale, style.text)
            }

            // The legend row(s) above the frame: a sample of each line (with its marker), then the name.
            for (series, origin) in zip(panel.series, layout.legendEntries[index]) {
                guard let origin else { continue }
                let middle = Double(origin.y) + Double(capHeight) / 2
                let start = CanvasPoint(x: Double(origin.x) + 1, y: middle), end = CanvasPoint(x: Double(origin.x + Self.legendSample) - 1, y: middle)
                if series.lineWidth > 0 { canvas.drawPolyline([start, end], lineWidth: max(series.lineWidth, 1), series.color) }
                if let marker = series.marker {
                    canvas.drawMarker(marker, at: CanvasPoint(x: (start.x + end.x) / 2, y: middle), radius: series.markerRadius, series.color)
                }
                canvas.drawText(series.name, x: origin.x + Self.legendSample + Self.gap, y: origin.y, scale: scale, style.text)
            }
        }
        if !xLabel.isEmpty, let bottom = layout.plots.last {
            let size = RasterCanvas.textSize(xLabel, scale: scale)
            canvas.drawText(xLabel, x: bottom.x + (bottom.width - size.width) / 2,
                            y: bottom.maxY + 1 + Self.tickLength + Self.gap + textHeight + Self.gap, scale: scale, style.text)
        }
        return canvas
    }
}
