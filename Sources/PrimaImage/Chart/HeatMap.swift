/// A matrix of shaded cells with a text in each (a confusion matrix): a title, a column title and labels above the
/// cells, a row title (turned, reading upwards) and labels left of them.
///
/// A cell of shade s (0…1) is the background mixed with ``color`` by s (``RGBColor/mixed(with:amount:)``); its
/// text is centred, in the style's text colour on cells up to ``darkTextLimit`` and in the background colour on
/// darker ones. The cells share the space left by the labels equally. ``layout()`` says where each cell goes;
/// ``render()`` draws; the same map always renders to the same pixels.
public struct HeatMap: Sendable, Equatable {
    public var title: String
    /// The title of the rows (e.g. "true") and of the columns (e.g. "predicted").
    public var rowTitle: String
    public var columnTitle: String
    public var rowLabels: [String]
    public var columnLabels: [String]
    /// [rows][columns] shades in 0…1 (values outside are clamped, non-finite ones drawn as 0).
    public var shades: [[Double]]
    /// [rows][columns] the text of each cell.
    public var cellText: [[String]]
    public var color: RGBColor
    public var width: Int
    public var height: Int
    public var style: ChartStyle

    /// Shades above this get light text.
    public static let darkTextLimit = 0.55

    public init(title: String, rowTitle: String, columnTitle: String, rowLabels: [String], columnLabels: [String],
                shades: [[Double]], cellText: [[String]], color: RGBColor = ChartStyle.palette[0], width: Int = 640,
                height: Int = 640, style: ChartStyle = ChartStyle()) {
        precondition(!rowLabels.isEmpty && !columnLabels.isEmpty, "a heat map needs a row and a column")
        precondition(shades.count == rowLabels.count && shades.allSatisfy { $0.count == columnLabels.count }, "shades must be rows × columns")
        precondition(cellText.count == rowLabels.count && cellText.allSatisfy { $0.count == columnLabels.count }, "cell text must be rows × columns")
        precondition(width > 0 && height > 0, "heat map size \(width)x\(height)")
        (self.title, self.rowTitle, self.columnTitle, self.rowLabels, self.columnLabels) = (title, rowTitle, columnTitle, rowLabels, columnLabels)
        (self.shades, self.cellText, self.color, self.width, self.height, self.style) = (shades, cellText, color, width, height, style)
    }

    private static let gap = RasterCanvas.labelGap

    /// Per row, per column: the cell's rectangle.
    public func layout() -> [[PixelRect]] {
        let scale = style.textScale, margin = style.margin, textHeight = BitmapFont.cellHeight * scale
        let titleHeight = title.isEmpty ? 0 : BitmapFont.cellHeight * style.titleScale(for: title, width: width) + 2 * Self.gap
        let top = margin + titleHeight + (columnTitle.isEmpty ? 0 : textHeight + Self.gap) + textHeight + Self.gap
        let rowLabelWidth = rowLabels.map { RasterCanvas.textSize($0, scale: scale).width }.max() ?? 0
        let left = margin + (rowTitle.isEmpty ? 0 : textHeight + Self.gap) + rowLabelWidth + Self.gap
        let cellWidth = max(1, (width - left - margin) / columnLabels.count)
        let cellHeight = max(1, (height - top - margin) / rowLabels.count)
        return rowLabels.indices.map { r in
            columnLabels.indices.map { c in PixelRect(x: left + c * cellWidth, y: top + r * cellHeight, width: cellWidth, height: cellHeight) }
        }
    }

    /// The fill colour of a cell of shade `shade`.
    public func cellColor(_ shade: Double) -> RGBColor {
        style.background.mixed(with: color, amount: shade.isFinite ? min(max(shade, 0), 1) : 0)
    }

    /// Draws the map.
    public func render() -> RasterCanvas {
        let cells = layout(), scale = style.textScale, capHeight = BitmapFont.capHeight * scale
        var canvas = RasterCanvas(width: width, height: height, background: style.background)
        canvas.drawTitle(title, width: width, style: style)
        for (r, row) in cells.enumerated() {
            for (c, cell) in row.enumerated() {
                let shade = shades[r][c].isFinite ? shades[r][c] : 0
                canvas.fill(cell, cellColor(shade))
                let text = cellText[r][c], size = RasterCanvas.textSize(text, scale: scale)
                canvas.drawText(text, x: cell.x + (cell.width - size.width) / 2, y: cell.y + (cell.height - capHeight) / 2, scale: scale,
                                shade > Self.darkTextLimit ? style.background : style.text)
            }
        }
        let first = cells[0][0], last = cells[cells.count - 1][cells[0].count - 1]
        let grid = PixelRect(x: first.x, y: first.y, width: last.maxX - first.x, height: last.maxY - first.y)
        canvas.stroke(grid.insetBy(-1), style.frame)
        for (c, label) in columnLabels.enumerated() {
            let cell = cells[0][c], size = RasterCanvas.textSize(label, scale: scale)
            canvas.drawText(label, x: cell.x + (cell.width - size.width) / 2, y: grid.y - Self.gap - BitmapFont.cellHeight * scale, scale: scale, style.text)
        }
        if !columnTitle.isEmpty {
            let size = RasterCanvas.textSize(columnTitle, scale: scale)
            canvas.drawText(columnTitle, x: grid.x + (grid.width - size.width) / 2,
                            y: grid.y - 2 * (Self.gap + BitmapFont.cellHeight * scale), scale: scale, style.text)
        }
        for (r, label) in rowLabels.enumerated() {
            let cell = cells[r][0], size = RasterCanvas.textSize(label, scale: scale)
            canvas.drawText(label, x: grid.x - Self.gap - size.width, y: cell.y + (cell.height - capHeight) / 2, scale: scale, style.text)
        }
        if !rowTitle.isEmpty {
            let size = RasterCanvas.textSize(rowTitle, scale: scale)
            canvas.drawText(rowTitle, x: style.margin, y: grid.y + (grid.height + size.width) / 2, scale: scale, style.text, direction: .upward)
        }
        return canvas
    }
}
