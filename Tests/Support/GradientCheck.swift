/// Float64 central finite differences: the ground truth every op's reference backward is checked against.
///
/// The pattern of a backward test: write the op's forward in `Double` inside the test (plain formula, no shared
/// code with the implementation), contract its output with a fixed random cotangent `g` to a scalar
/// `L(x) = Σ y(x) ⊙ g`, and compare the op's reference backward (given `g`) with ``numeric(_:at:step:)`` of `L`.
/// Then compare the fast backward with the reference backward on the same inputs.
public enum GradientCheck {
    /// ∂f/∂x by central differences, `(f(x + h·eᵢ) − f(x − h·eᵢ)) / 2h` with `h = step · max(1, |xᵢ|)`. In float64
    /// with h = 1e-5 the truncation error is O(h²·f''') ≈ 1e-10 and the rounding error ≈ 1e-16/h ≈ 1e-11 for
    /// smooth ops of order-one values: far below the f32 errors being checked.
    public static func numeric(_ f: ([Double]) -> Double, at x: [Double], step: Double = 1e-5) -> [Double] {
        var point = x
        var gradient = [Double](repeating: 0, count: x.count)
        for i in x.indices {
            let h = step * max(1, abs(x[i]))
            point[i] = x[i] + h
            let up = f(point)
            point[i] = x[i] - h
            let down = f(point)
            point[i] = x[i]
            gradient[i] = (up - down) / (2 * h)
        }
        return gradient
    }

    /// `Σ y ⊙ g` in float64: the scalar whose gradient with respect to `y` is `g`.
    public static func contract(_ y: [Double], with g: [Double]) -> Double {
        precondition(y.count == g.count, "contract: \(y.count) values with \(g.count) cotangents")
        var sum = 0.0
        for i in y.indices { sum += y[i] * g[i] }
        return sum
    }

    /// The largest `|a − b|` over the largest `|b|` (0 when both are all zero): the relative error of a whole
    /// gradient tensor, as `prima-verify` measures gradients (max_abs / max|ref|).
    public static func relativeError(_ a: [Float], _ b: [Double]) -> Double {
        precondition(a.count == b.count, "relativeError: \(a.count) values against \(b.count)")
        var difference = 0.0, scale = 0.0
        for i in a.indices {
            difference = max(difference, abs(Double(a[i]) - b[i]))
            scale = max(scale, abs(b[i]))
        }
        return scale == 0 ? difference : difference / scale
    }

    /// ``relativeError(_:_:)`` of two f32 gradients.
    public static func relativeError(_ a: [Float], _ b: [Float]) -> Double { relativeError(a, b.map(Double.init)) }

    /// `count` seeded values uniform in [−scale, scale).
    public static func random(_ count: Int, seed: UInt64, scale: Float = 1) -> [Float] {
        var rng = SplitMix64(seed: seed)
        return (0..<count).map { _ in rng.uniform() * scale }
    }
}
