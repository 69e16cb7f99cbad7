import PrimaImage
import Testing

/// Bar charts: bars and error bars land where the layout says, from 0, with gaps for missing values; the
/// reference line runs corner to corner.
@Suite struct BarChartTests {
    static let red = RGBColor(214, 39, 40)
    static let blue = RGBColor(31, 119, 180)

    static func chart(referenceLine: ReferenceLine? = nil) -> BarChart {
        BarChart(title: "Bars", xLabel: "group", yLabel: "value", yRange: 0...1, groups: ["a", "b", "c"],
                 series: [BarSeries(name: "red", color: red, values: [0.5, 0.25, .nan], errors: [0.1, 0, 0.2]),
                          BarSeries(name: "blue", color: blue, values: [1, 0.75, 0.5])],
                 referenceLine: referenceLine, width: 500, height: 300)
    }

    @Test func barsRiseFromZeroToTheirValue() throws {
        let chart = Self.chart()
        let layout = chart.layout(), canvas = chart.render(), plot = layout.plot
        let half = try #require(layout.bars[0][0]), quarter = try #require(layout.bars[0][1]), full = try #require(layout.bars[1][0])
        // All bars end on the bottom row of the data area (value 0); a bar of 1 fills the data area's height.
        #expect(half.maxY == plot.maxY && full.maxY == plot.maxY && full.y == plot.y)
        #expect(abs(Double(half.height) - Double(plot.height) / 2) <= 1)
        #expect(abs(Double(quarter.height) - Double(plot.height) / 4) <= 1)
        // A non-finite value has no bar.
        #expect(layout.bars[0][2] == nil)
        // The series sit side by side inside their group, the group's bars inside its share of the plot.
        #expect(half.maxX <= full.x && full.maxX <= plot.x + plot.width / 3)
        // Bar pixels have the series colour (below the error bar's cap); the legend names both series.
        #expect(canvas.color(x: half.x + 1, y: half.maxY - 2) == Self.red)
        #expect(canvas.color(x: full.x + 1, y: full.y + full.height / 2) == Self.blue)
        #expect(layout.legendEntries.allSatisfy { $0 != nil && $0!.maxY < plot.y })
    }

    @Test func errorBarsSpanValuePlusMinusError() throws {
        let chart = Self.chart()
        let layout = chart.layout(), canvas = chart.render()
        let bar = try #require(layout.bars[0][0])
        let centre = bar.x + bar.width / 2
        // 0.5 ± 0.1: text-coloured from row(0.6) to row(0.4), nothing above row(0.6) - 2.
        let top = Int(layout.row(0.6).rounded(.down)), bottom = Int(layout.row(0.4).rounded(.down))
        for y in [top, (top + bottom) / 2, bottom] { #expect(canvas.color(x: centre, y: y) == ChartStyle().text, "row \(y)") }
        #expect(canvas.color(x: centre, y: top - 3) != ChartStyle().text)
        // An error of 0 draws no bar: the bar's colour runs through its centre up to its top.
        let plain = try #require(layout.bars[0][1])
        #expect(canvas.color(x: plain.x + plain.width / 2, y: plain.y + 1) == Self.red)
    }

    @Test func referenceLineRunsCornerToCorner() {
        let chart = Self.chart(referenceLine: ReferenceLine(start: 0, end: 1))
        let layout = chart.layout(), canvas = chart.render(), plot = layout.plot
        // Its middle at (centre column, row of 0.5), in the frame colour, over the bars' colours.
        let x = plot.x + plot.width / 2, y = Int(layout.row(0.5).rounded(.down))
        #expect(canvas.color(x: x, y: y) == ChartStyle().frame)
        #expect(Self.chart().render().color(x: x, y: y) != ChartStyle().frame)
    }

    @Test func axisCoversTheErrorBarsWithoutARange() {
        let chart = BarChart(title: "", xLabel: "", yLabel: "", groups: ["a"],
                             series: [BarSeries(name: "", color: Self.red, values: [3], errors: [2])], width: 300, height: 200)
        let layout = chart.layout()
        #expect(layout.yScale.lower <= 0 && layout.yScale.upper >= 5)
        #expect(layout.legendEntries == [nil])
        #expect(chart.render() == chart.render())
    }
}

/// Heat maps: cells shaded by their value with their text centred, dark cells with light text.
@Suite struct HeatMapTests {
    @Test func cellsAreShadedAndLabelled() {
        let map = HeatMap(title: "Confusion", rowTitle: "true", columnTitle: "predicted", rowLabels: ["A", "B"], columnLabels: ["A", "B"],
                          shades: [[1, 0], [0.25, .nan]], cellText: [["12", ""], ["3", "0"]], width: 300, height: 300)
        let cells = map.layout(), canvas = map.render()
        #expect(cells.count == 2 && cells[0].count == 2)
        #expect(cells[0][0].maxX == cells[0][1].x && cells[0][0].maxY == cells[1][0].y)
        // The corner pixel of each cell is its fill; a non-finite shade is drawn as 0 (the background).
        #expect(canvas.color(x: cells[0][0].x + 1, y: cells[0][0].y + 1) == map.cellColor(1))
        #expect(canvas.color(x: cells[0][1].x + 1, y: cells[0][1].y + 1) == .white)
        #expect(canvas.color(x: cells[1][0].x + 1, y: cells[1][0].y + 1) == map.cellColor(0.25))
        #expect(canvas.color(x: cells[1][1].x + 1, y: cells[1][1].y + 1) == .white)
        // Text: light on the dark cell, dark on the light one, none in the empty-text cell.
        func colours(_ cell: PixelRect) -> Set<RGBColor> {
            Set((cell.y..<cell.maxY).flatMap { y in (cell.x..<cell.maxX).map { canvas.color(x: $0, y: y) } })
        }
        #expect(colours(cells[0][0]) == [map.cellColor(1), .white])
        #expect(colours(cells[1][0]) == [map.cellColor(0.25), ChartStyle().text])
        #expect(colours(cells[0][1]) == [.white])
        #expect(map.render() == canvas)
    }
}
