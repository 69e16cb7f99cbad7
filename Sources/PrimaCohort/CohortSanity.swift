import Foundation
import PrimaImage

/// A quick check that the cohort is neither trivial nor noise (Docs/cohort.md, "Sanity measure"): nearest-centroid
/// classifiers on simple features, cross-validated by patient. Not a model of what PRIMA can reach.
public enum CohortSanity {
    /// Balanced accuracy (mean per-class recall) and accuracy.
    public struct Score: Sendable, CustomStringConvertible {
        public let balancedAccuracy: Double
        public let accuracy: Double
        public var description: String { String(format: "balanced accuracy %.3f, accuracy %.3f", balancedAccuracy, accuracy) }
    }

    /// Tabular features of one metadata.csv row as written (blank and UNK read as unknown, `biopsed` left out
    /// because it leaks the label): age, gender, Fitzpatrick type, both diameters, a missing-block flag, the
    /// yes/no fields (1 True, 0 False, ½ unknown) and the region one-hot.
    public static func tabularFeatures(_ cohort: Cohort, position: Int) -> [Double] {
        let row = cohort.row(cohort.images[position])
        let value = Dictionary(uniqueKeysWithValues: zip(PadUfes20.columns, row))
        func yesNo(_ key: String) -> Double { value[key] == "True" ? 1 : value[key] == "False" ? 0 : 0.5 }
        func number(_ key: String, unknown: Double) -> Double { Double(value[key]!) ?? unknown }
        var features = [number("age", unknown: 55), value["gender"] == "MALE" ? 1 : value["gender"] == "FEMALE" ? 0 : 0.5,
                        number("fitspatrick", unknown: 2.5), number("diameter_1", unknown: 8), number("diameter_2", unknown: 6),
                        value["smoke"]!.isEmpty ? 1 : 0]
        for key in ["smoke", "drink", "pesticide", "skin_cancer_history", "cancer_history", "has_piped_water", "has_sewage_system",
                    "itch", "grew", "hurt", "changed", "bleed", "elevation"] {
            features.append(yesNo(key))
        }
        features += PadUfes20.regions.map { value["region"] == $0 ? 1 : 0 }
        return features
    }

    /// Trivial image features: the skin colour (median of the outer frame), the lesion's mean colour and its
    /// spread (pixels farther than 0.12 from the skin colour, in 0…1 RGB), and the lesion's area fraction.
    public static func imageFeatures(_ image: RGBImage) -> [Double] {
        let w = image.width, h = image.height
        let frame = max(1, w / 12)
        var border: [[Float]] = [[], [], []]
        for y in 0..<h {
            for x in 0..<w where x < frame || y < frame || x >= w - frame || y >= h - frame {
                for c in 0..<3 { border[c].append(image.sample(y: y, x: x, channel: c) / 255) }
            }
        }
        let skin = border.map { values -> Float in values.sorted()[values.count / 2] }
        var sum = [Double](repeating: 0, count: 3), sumSquares = [Double](repeating: 0, count: 3)
        var count = 0
        for y in 0..<h {
            for x in 0..<w {
                let pixel = (0..<3).map { image.sample(y: y, x: x, channel: $0) / 255 }
                let distance = zip(pixel, skin).reduce(Float(0)) { $0 + ($1.0 - $1.1) * ($1.0 - $1.1) }.squareRoot()
                guard distance > 0.12 else { continue }
                count += 1
                for c in 0..<3 {
                    sum[c] += Double(pixel[c])
                    sumSquares[c] += Double(pixel[c] * pixel[c])
                }
            }
        }
        let n = Double(max(count, 1))
        let mean = sum.map { $0 / n }
        let spread = (0..<3).map { (max(0, sumSquares[$0] / n - mean[$0] * mean[$0])).squareRoot() }
        return skin.map(Double.init) + mean + spread + [Double(count) / Double(w * h)]
    }

    /// Nearest-centroid classification (features standardised on the training side), `folds`-fold
    /// cross-validated with whole groups (patients) on one side.
    public static func nearestCentroid(features: [[Double]], labels: [Int], groups: [Int], classes: Int, folds: Int = 5) -> Score {
        precondition(features.count == labels.count && labels.count == groups.count && !features.isEmpty)
        let dimension = features[0].count
        var predictions = [Int](repeating: -1, count: labels.count)
        for fold in 0..<folds {
            let train = labels.indices.filter { groups[$0] % folds != fold }
            let test = labels.indices.filter { groups[$0] % folds == fold }
            guard !train.isEmpty, !test.isEmpty else { continue }
            var mean = [Double](repeating: 0, count: dimension), sd = [Double](repeating: 0, count: dimension)
            for i in train { for d in 0..<dimension { mean[d] += features[i][d] } }
            mean = mean.map { $0 / Double(train.count) }
            for i in train { for d in 0..<dimension { sd[d] += (features[i][d] - mean[d]) * (features[i][d] - mean[d]) } }
            sd = sd.map { max(1e-9, ($0 / Double(train.count)).squareRoot()) }
            func standard(_ i: Int) -> [Double] { (0..<dimension).map { (features[i][$0] - mean[$0]) / sd[$0] } }
            var centroids = [[Double]](repeating: [Double](repeating: 0, count: dimension), count: classes)
            var counts = [Int](repeating: 0, count: classes)
            for i in train {
                let z = standard(i)
                counts[labels[i]] += 1
                for d in 0..<dimension { centroids[labels[i]][d] += z[d] }
            }
            for k in 0..<classes where counts[k] > 0 { centroids[k] = centroids[k].map { $0 / Double(counts[k]) } }
            for i in test {
                let z = standard(i)
                let distances = (0..<classes).map { k -> Double in
                    counts[k] == 0 ? .infinity : zip(z, centroids[k]).reduce(0) { $0 + ($1.0 - $1.1) * ($1.0 - $1.1) }
                }
                predictions[i] = distances.indices.min { distances[$0] < distances[$1] }!
            }
        }
        let scored = labels.indices.filter { predictions[$0] >= 0 }
        var recalls: [Double] = []
        for k in 0..<classes {
            let members = scored.filter { labels[$0] == k }
            if !members.isEmpty { recalls.append(Double(members.filter { predictions[$0] == k }.count) / Double(members.count)) }
        }
        let correct = scored.filter { predictions[$0] == labels[$0] }.count
        return Score(balancedAccuracy: recalls.reduce(0, +) / Double(max(1, recalls.count)),
                     accuracy: Double(correct) / Double(max(1, scored.count)))
    }

    /// The three scores for `cohort`: metadata alone, image alone, both (features concatenated).
    public static func scores(_ cohort: Cohort) -> (metadata: Score, image: Score, both: Score) {
        let positions = Array(cohort.images.indices)
        let labels = positions.map { cohort.lesions[cohort.images[$0].lesion].diagnosis.rawValue }
        let groups = positions.map { cohort.lesions[cohort.images[$0].lesion].patient }
        let tabular = positions.map { tabularFeatures(cohort, position: $0) }
        // Each image's features land in their own slot, so the result does not depend on the threads.
        final class Slots: @unchecked Sendable {
            let pointer: UnsafeMutableBufferPointer<[Double]>
            init(_ n: Int) { pointer = .allocate(capacity: n); pointer.initialize(repeating: []) }
            deinit { pointer.deinitialize(); pointer.deallocate() }
        }
        let slots = Slots(positions.count)
        DispatchQueue.concurrentPerform(iterations: positions.count) { i in
            slots.pointer[i] = imageFeatures(LesionRenderer.render(cohort, position: i))
        }
        let image = Array(slots.pointer)
        let classes = Diagnosis.allCases.count
        return (nearestCentroid(features: tabular, labels: labels, groups: groups, classes: classes),
                nearestCentroid(features: image, labels: labels, groups: groups, classes: classes),
                nearestCentroid(features: zip(tabular, image).map { $0 + $1 }, labels: labels, groups: groups, classes: classes))
    }
}
