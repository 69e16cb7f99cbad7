import Foundation

/// A linear axis: its range, its ticks at multiples of a "nice" step (1, 2 or 5 × 10^k) and their labels.
public struct ChartScale: Sendable, Equatable {
    /// The values at the two ends of the axis (`lower < upper`).
    public let lower, upper: Double
    /// The distance between ticks: 1, 2 or 5 × 10^k.
    public let step: Double
    /// The ticks: every multiple of ``step`` from ``lower`` to ``upper`` (within rounding), ascending.
    public let ticks: [Double]

    /// How many steps between ticks an axis aims at (``niceStep(halfSpan:tickTarget:)`` says how close it gets).
    public static let defaultTickTarget = 5

    /// An axis from `lower` to `upper` exactly, ticked at the multiples of a nice step near `(upper - lower) /
    /// tickTarget` that lie inside it. Precondition: finite bounds, `lower < upper`, a span of at least 1e-290 (smaller steps underflow).
    public init(lower: Double, upper: Double, tickTarget: Int = defaultTickTarget) {
        precondition(lower.isFinite && upper.isFinite && upper - lower >= 1e-290 && tickTarget >= 1, "axis \(lower)...\(upper)")
        self.init(lower: lower, upper: upper, step: Self.niceStep(halfSpan: upper / 2 - lower / 2, tickTarget: tickTarget))
    }

    private init(lower: Double, upper: Double, step: Double) {
        self.lower = lower
        self.upper = upper
        self.step = step
        // Ticks as integer multiples of the step (k · step, not repeated additions), so 0.1 · 3 prints as 0.3. The
        // quotients carry rounding (0.3 / 0.1 = 2.9999999999999996): a bound within 1e-9 steps of a multiple is one.
        let first = (lower / step - 1e-9).rounded(.up), last = (upper / step + 1e-9).rounded(.down)
        ticks = first <= last ? stride(from: first, through: last, by: 1).map { Self.multiple($0, of: step) } : []
    }

    /// The axis that covers `values` (non-finite ones ignored), widened outwards to multiples of its nice step.
    /// All-equal values get an axis of ±5% around them (±1 around 0); no finite value gives 0…1.
    public static func covering(_ values: [Double], tickTarget: Int = defaultTickTarget) -> ChartScale {
        let finite = values.filter(\.isFinite)
        guard var low = finite.min(), var high = finite.max() else { return ChartScale(lower: 0, upper: 1, tickTarget: tickTarget) }
        precondition(tickTarget >= 1, "tick target \(tickTarget)")
        // Values equal up to double rounding count as equal: an axis narrower than that cannot be labelled (nor
        // one narrower than 1e-290, whose step would underflow).
        if high - low <= max(abs(low), abs(high)) * 1e-12 || high - low < 1e-290 {
            let middle = low / 2 + high / 2, half = abs(middle) < 1e-280 ? 1 : abs(middle) * 0.05
            (low, high) = (max(middle - half, -.greatestFiniteMagnitude), min(middle + half, .greatestFiniteMagnitude))
        }
        let step = niceStep(halfSpan: high / 2 - low / 2, tickTarget: tickTarget)
        // Widening can pass the largest double (values near ±1.8e308): the axis then ends there. Rounding as for
        // the ticks: a value within 1e-9 steps of a multiple ends the axis there.
        let lower = max(multiple((low / step + 1e-9).rounded(.down), of: step), -.greatestFiniteMagnitude)
        let upper = min(multiple((high / step - 1e-9).rounded(.up), of: step), .greatestFiniteMagnitude)
        return ChartScale(lower: lower, upper: upper, step: step)
    }

    /// The step of 1, 2, 5 × 10^k nearest to `span / tickTarget` in ratio, as d3-array's `tickIncrement` picks it
    /// (rough step r = m · 10^k with 1 ≤ m < 10: 10 from m ≥ √50, 5 from √10, 2 from √2, else 1), so an axis gets
    /// between about 0.7 and 1.4 times `tickTarget` steps. Computed from half the span, which stays finite for any
    /// two finite bounds.
    static func niceStep(halfSpan: Double, tickTarget: Int) -> Double {
        let rough = halfSpan / Double(tickTarget) * 2
        let magnitude = pow10(Int(rough.log10Floor)), mantissa = rough / magnitude
        let multiple: Double = mantissa >= 50.0.squareRoot() ? 10 : mantissa >= 10.0.squareRoot() ? 5 : mantissa >= 2.0.squareRoot() ? 2 : 1
        return multiple * magnitude
    }

    /// `k · step` for a nice step m · 10^e, as the double nearest the decimal: (k · m) / 10^-e for e < 0 (one
    /// correctly rounded division of exact values), so 3 · 0.1 is 0.3, not 0.30000000000000004.
    static func multiple(_ k: Double, of step: Double) -> Double {
        let exponent = Int(step.log10Floor)
        guard exponent < 0, exponent >= -22 else { return k * step }
        let scale = pow10(-exponent)
        return k * (step * scale).rounded() / scale
    }

    /// Where `value` lies along the axis: 0 at ``lower``, 1 at ``upper`` (outside 0…1 beyond the ends).
    /// Computed on halves, so it stays finite for any finite value and bounds.
    public func fraction(_ value: Double) -> Double { (value / 2 - lower / 2) / (upper / 2 - lower / 2) }

    /// The label of a tick: as many decimals as the step needs (none for steps ≥ 1), no exponent between 1e-6 and
    /// 1e15; beyond that, Swift's shortest round-trip form (`1e+20`). Never `-0`.
    public func label(_ value: Double) -> String {
        let decimals = max(0, -Int(step.log10Floor))
        let scaled = (value * ChartScale.pow10(decimals)).rounded()
        guard abs(scaled) < 1e15, decimals <= 6 else { return "\(value == 0 ? 0 : value)" }
        let units = Int(scaled)
        let digits = String(units.magnitude)
        let padded = String(repeating: "0", count: max(0, decimals + 1 - digits.count)) + digits
        let whole = padded.dropLast(decimals), fraction = padded.suffix(decimals)
        return (units < 0 ? "-" : "") + whole + (decimals > 0 ? "." + fraction : "")
    }

    /// 10^exponent, exact for the exponents a double holds exactly (|exponent| ≤ 22).
    static func pow10(_ exponent: Int) -> Double {
        var result = 1.0
        for _ in 0..<abs(exponent) { result *= 10 }
        return exponent >= 0 ? result : 1 / result
    }
}

private extension Double {
    /// ⌊log10(self)⌋ for a positive finite value, corrected for the rounding of `log10` at exact powers of ten.
    var log10Floor: Double {
        var exponent = log10(self).rounded(.down)
        if ChartScale.pow10(Int(exponent)) > self { exponent -= 1 }
        if ChartScale.pow10(Int(exponent) + 1) <= self { exponent += 1 }
        return exponent
    }
}
