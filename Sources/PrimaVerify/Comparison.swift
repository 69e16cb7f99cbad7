import PrimaTensor

/// Tolerances for comparing an activation with its reference (documented in Formats/prima-verify.md).
public struct Tolerances: Sendable, Equatable {
    /// Max absolute error allowed, as a multiple of (1 + max |reference|).
    public var absoluteScale: Double
    /// Max relative error allowed: max |ours − ref| / max |ref|.
    public var relative: Double
    /// Minimum cosine similarity.
    public var cosine: Double
    /// Max normalised mean squared error Σ(ours − ref)² / Σ ref².
    public var nmse: Double

    /// fp32 runtime against fp32 transformers (the runtime issue's numerics bar).
    public static let fp32 = Tolerances(absoluteScale: 1e-4, relative: 1e-3, cosine: 0.99999, nmse: 1e-8)

    public init(absoluteScale: Double, relative: Double, cosine: Double, nmse: Double) {
        self.absoluteScale = absoluteScale
        self.relative = relative
        self.cosine = cosine
        self.nmse = nmse
    }
}

/// The comparison of one activation.
public struct ActivationComparison: Sendable {
    public let name: String
    /// Non-finite values in ours / in the reference at compared positions.
    public let nonFinite: Int
    public let referenceNonFinite: Int
    public let maxAbs: Double
    public let maxRel: Double
    public let cosine: Double
    public let nmse: Double
    /// Max |reference| over the compared positions.
    public let referenceScale: Double
    /// Elements compared.
    public let compared: Int
    public let pass: Bool
    /// Why it failed, if it did (the first failed check).
    public let failure: String?
}

/// Compares activations, skipping padded positions.
public enum Comparison {
    /// Compares `ours` with `reference` (same shape). For activations with a (B, T) leading pair of axes —
    /// flattened to B·T rows here — rows whose attention mask is 0 are skipped; `mask` nil compares everything.
    public static func compare(name: String, ours: Tensor, reference: Tensor, mask: [[Int]]?, tolerances: Tolerances)
        -> ActivationComparison {
        let a = ours.float32Values(), r = reference.float32Values()
        let rowMask: [Bool]? = mask.map { $0.flatMap { $0.map { $0 != 0 } } }
        let rows = rowMask?.count ?? 1
        let width = rowMask == nil ? max(a.count, 1) : a.count / max(rows, 1)
        var nonFinite = 0, referenceNonFinite = 0, compared = 0
        var maxAbs = 0.0, scale = 0.0, dot = 0.0, normA = 0.0, normR = 0.0, squaredError = 0.0
        for row in 0..<rows where rowMask?[row] ?? true {
            for i in (row * width)..<min((row + 1) * width, a.count) {
                let x = Double(a[i]), y = Double(r[i])
                guard x.isFinite else { nonFinite += 1; continue }
                guard y.isFinite else { referenceNonFinite += 1; continue }
                compared += 1
                maxAbs = max(maxAbs, abs(x - y))
                scale = max(scale, abs(y))
                dot += x * y
                normA += x * x
                normR += y * y
                squaredError += (x - y) * (x - y)
            }
        }
        let cosine = normA > 0 && normR > 0 ? dot / (normA.squareRoot() * normR.squareRoot()) : (normA == normR ? 1 : 0)
        let nmse = normR > 0 ? squaredError / normR : (squaredError == 0 ? 0 : .infinity)
        let maxRel = scale > 0 ? maxAbs / scale : (maxAbs == 0 ? 0 : .infinity)
        var failure: String?
        if nonFinite > 0 { failure = "\(nonFinite) NaN/Inf values" }
        else if referenceNonFinite > 0 { failure = "\(referenceNonFinite) NaN/Inf values in the reference" }
        else if maxAbs > tolerances.absoluteScale * (1 + scale) {
            failure = "max_abs \(maxAbs) > \(tolerances.absoluteScale) x (1 + \(scale))"
        } else if maxRel > tolerances.relative { failure = "max_rel \(maxRel) > \(tolerances.relative)" }
        else if cosine < tolerances.cosine { failure = "cosine \(cosine) < \(tolerances.cosine)" }
        else if nmse > tolerances.nmse { failure = "nmse \(nmse) > \(tolerances.nmse)" }
        return ActivationComparison(name: name, nonFinite: nonFinite, referenceNonFinite: referenceNonFinite, maxAbs: maxAbs,
                                    maxRel: maxRel, cosine: cosine, nmse: nmse, referenceScale: scale, compared: compared,
                                    pass: failure == nil, failure: failure)
    }
}
