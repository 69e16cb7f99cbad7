import Foundation

/// What to generate: the number of images (metadata.csv rows), the image side in pixels, and the seed.
public struct CohortOptions: Sendable, Equatable {
    public var cases: Int
    public var imageSize: Int
    public var seed: UInt64

    /// PAD-UFES-20's size, 224-pixel images, seed 0.
    public init(cases: Int = PadUfes20.images, imageSize: Int = 224, seed: UInt64 = 0) {
        self.cases = cases
        self.imageSize = imageSize
        self.seed = seed
    }

    public static let maxCases = 1_000_000
    public static let imageSizes = 16...4096
}

/// A patient: the fields of metadata.csv that belong to the person, as they are written ("" blank, "UNK").
public struct CohortPatient: Sendable {
    /// The n of PAT_n.
    public let number: Int
    /// The diagnosis of the patient's first lesion, whose class profile the patient's fields are drawn from.
    public let primary: Diagnosis
    public let age: Int
    /// The Fitzpatrick type the images are drawn with (written only when the patient block is not blank).
    public let skinType: Int
    /// Whether the patient block (smoke … fitspatrick and the diameters) is left blank, as for many real rows.
    public let blankBlock: Bool
    /// smoke, drink, background_father, background_mother, pesticide, gender, skin_cancer_history,
    /// cancer_history, has_piped_water, has_sewage_system, fitspatrick: as written.
    public let cells: [String: String]
}

/// A lesion: its patient, diagnosis, site, size and history answers.
public struct CohortLesion: Sendable {
    /// The lesion_id written (reused across patients for some lesions, as in PAD-UFES-20).
    public var id: Int
    /// Index into ``Cohort/patients``.
    public var patient: Int
    public let diagnosis: Diagnosis
    public let region: String
    /// The true diameters in mm (the images are drawn with these; written only when the patient block is filled).
    public let diameter1: Double
    public let diameter2: Double
    /// itch, grew, hurt, changed, bleed, elevation: "True", "False" or "UNK".
    public let symptoms: [String]
    public let biopsed: Bool
}

/// One image: a row of metadata.csv.
public struct CohortImage: Sendable {
    /// Index into ``Cohort/lesions``.
    public let lesion: Int
    /// The image number (the last part of the img_id).
    public var number: Int
    /// `PAT_<patient>_<lesion_id>_<number>.png`.
    public var imageID: String = ""
}

/// A whole synthetic cohort (metadata only; ``LesionRenderer`` draws the images, ``CohortWriter`` writes the
/// folder). Everything is a function of ``CohortOptions``: see Docs/cohort.md.
public struct Cohort: Sendable {
    public let options: CohortOptions
    public private(set) var patients: [CohortPatient] = []
    public private(set) var lesions: [CohortLesion] = []
    /// The images in metadata.csv order.
    public private(set) var images: [CohortImage] = []

    /// Images per class for `cases` images: PAD-UFES-20's counts scaled by cases / 2,298 with largest-remainder
    /// rounding (ties to the larger real class), then, when cases ≥ 6, any empty class takes one image from the
    /// class that has most. The counts sum to `cases`.
    public static func classCounts(cases: Int) -> [Diagnosis: Int] {
        precondition(cases >= 0)
        let classes = Diagnosis.allCases
        var counts = classes.map { cases * $0.realImageCount / PadUfes20.images }
        let remainders = classes.map { cases * $0.realImageCount % PadUfes20.images }
        let left = cases - counts.reduce(0, +)
        let order = classes.indices.sorted { remainders[$0] != remainders[$1] ? remainders[$0] > remainders[$1] : $0 < $1 }
        for k in order.prefix(left) { counts[k] += 1 }
        if cases >= classes.count {
            while let empty = counts.firstIndex(of: 0) {
                let largest = counts.indices.max { counts[$0] != counts[$1] ? counts[$0] < counts[$1] : $0 > $1 }!
                counts[largest] -= 1
                counts[empty] += 1
            }
        }
        return Dictionary(uniqueKeysWithValues: zip(classes, counts))
    }

    /// Most images one lesion gets.
    static let maxImagesPerLesion = 4

    public init(options: CohortOptions) {
        precondition(options.cases >= 1 && options.cases <= CohortOptions.maxCases, "cases \(options.cases)")
        self.options = options
        let seed = options.seed
        let counts = Self.classCounts(cases: options.cases)

        // Lesions per class (PAD-UFES-20 has 1,891 lesions for 2,298 images) and their images.
        var lesionClasses: [Diagnosis] = []
        var imageCounts: [Int] = []
        var random = CohortRandom(seed: seed, purpose: .imagesPerLesion, index: 0)
        for diagnosis in Diagnosis.allCases {
            let images = counts[diagnosis]!
            guard images > 0 else { continue }
            let lesionCount = max(1, Int((Double(images) * Double(PadUfes20.lesions) / Double(PadUfes20.images)).rounded()))
            var perLesion = [Int](repeating: 1, count: lesionCount)
            for _ in 0..<(images - lesionCount) {
                var pick = random.below(lesionCount)
                for _ in 0..<8 where perLesion[pick] >= Self.maxImagesPerLesion { pick = random.below(lesionCount) }
                perLesion[pick] += 1
            }
            lesionClasses += [Diagnosis](repeating: diagnosis, count: lesionCount)
            imageCounts += perLesion
        }
        let lesionCount = lesionClasses.count

        // Lesion fields (the patient is assigned below).
        var lesions: [CohortLesion] = []
        for (index, diagnosis) in lesionClasses.enumerated() {
            lesions.append(Self.drawLesion(diagnosis, random: CohortRandom(seed: seed, purpose: .lesion, index: index)))
        }

        // Patients: PAD-UFES-20 has 1,373 patients for 1,891 lesions. The lesions that join an existing patient
        // are drawn with weights (keratinocyte lesions of sun-damaged skin come several to a patient; naevi and
        // melanomas less often), by Efraimidis–Spirakis keys u^(1/w); the others found a patient each.
        let patientCount = min(lesionCount, max(1, Int((Double(lesionCount) * Double(PadUfes20.patients) / Double(PadUfes20.lesions)).rounded())))
        var grouping = CohortRandom(seed: seed, purpose: .grouping, index: 0)
        let keys = lesionClasses.map { diagnosis -> Double in
            let weight: Double = diagnosis == .nev ? 0.3 : diagnosis == .mel ? 0.5 : 1
            return pow(grouping.unit(), 1 / weight)
        }
        let joining = Set(keys.indices.sorted { keys[$0] != keys[$1] ? keys[$0] > keys[$1] : $0 < $1 }.prefix(lesionCount - patientCount))
        var founders: [Int] = []
        for index in 0..<lesionCount where !joining.contains(index) {
            lesions[index].patient = founders.count
            founders.append(index)
        }
        func young(_ diagnosis: Diagnosis) -> Bool { diagnosis == .nev }
        for index in 0..<lesionCount where joining.contains(index) {
            let compatible = founders.indices.filter { young(lesionClasses[founders[$0]]) == young(lesionClasses[index]) }
            lesions[index].patient = compatible.isEmpty ? grouping.below(founders.count) : compatible[grouping.below(compatible.count)]
        }

        // Identifiers: patient numbers, lesion numbers (some reused by another patient) and image numbers, each
        // drawn without repetition from a range a third larger than needed, so that the numbers have gaps.
        var ids0 = CohortRandom(seed: seed, purpose: .identifiers, index: 0, part: 0)
        let patientNumbers = ids0.permutation(patientCount + patientCount / 2 + 1).prefix(patientCount).map { $0 + 1 }
        var ids1 = CohortRandom(seed: seed, purpose: .identifiers, index: 0, part: 1)
        let lesionNumbers = ids1.permutation(2 * lesionCount + 1).prefix(lesionCount).map { $0 + 1 }
        for index in 0..<lesionCount { lesions[index].id = lesionNumbers[index] }
        var ids3 = CohortRandom(seed: seed, purpose: .identifiers, index: 0, part: 3)
        let reuseCount = lesionCount - Int((Double(lesionCount) * Double(PadUfes20.lesionIDs) / Double(PadUfes20.lesions)).rounded())
        if patientCount > 1 {
            for index in ids3.permutation(lesionCount).prefix(reuseCount) {
                let patient = lesions[index].patient
                let taken = Set(lesions.filter { $0.patient == patient }.map(\.id))
                for _ in 0..<16 {
                    let donor = ids3.below(lesionCount)
                    if lesions[donor].patient != patient, !taken.contains(lesions[donor].id) {
                        lesions[index].id = lesions[donor].id
                        break
                    }
                }
            }
        }

        for (number, founder) in zip(patientNumbers, founders) {
            let patient = lesions[founder].patient
            patients.append(Self.drawPatient(number: number, primary: lesionClasses[founder], biopsed: lesions[founder].biopsed,
                                             random: CohortRandom(seed: seed, purpose: .patient, index: patient)))
        }

        var images: [CohortImage] = []
        for (lesion, count) in imageCounts.enumerated() {
            for _ in 0..<count { images.append(CohortImage(lesion: lesion, number: 0)) }
        }
        var ids2 = CohortRandom(seed: seed, purpose: .identifiers, index: 0, part: 2)
        let imageNumbers = ids2.permutation(images.count + images.count / 3 + 1).prefix(images.count).map { $0 + 1 }
        for index in images.indices {
            images[index].number = imageNumbers[index]
            let lesion = lesions[images[index].lesion]
            images[index].imageID = "PAT_\(patients[lesion.patient].number)_\(lesion.id)_\(imageNumbers[index]).png"
        }
        var order = CohortRandom(seed: seed, purpose: .rowOrder, index: 0)
        self.images = order.permutation(images.count).map { images[$0] }
        self.lesions = lesions
    }

    static func yesNo(_ value: Bool) -> String { value ? "True" : "False" }

    static func drawLesion(_ diagnosis: Diagnosis, random: CohortRandom) -> CohortLesion {
        var random = random
        let profile = ClassProfile.of(diagnosis)
        let region = PadUfes20.regions[random.weighted(profile.regions)]
        let d1 = min(60, max(1.5, exp(log(profile.diameterMedian) + profile.diameterSigma * random.normal())))
        let d2 = d1 * random.uniform(profile.ratioLow, 1)
        let probabilities = [profile.itch, profile.grew, profile.hurt, profile.changed, profile.bleed, profile.elevation]
        let symptoms = zip(probabilities, Missingness.symptomUnknown).map { p, unknown in
            random.chance(unknown) ? "UNK" : yesNo(random.chance(p))
        }
        return CohortLesion(id: 0, patient: 0, diagnosis: diagnosis, region: region, diameter1: d1, diameter2: d2,
                            symptoms: symptoms, biopsed: random.chance(profile.biopsed))
    }

    static func drawPatient(number: Int, primary: Diagnosis, biopsed: Bool, random: CohortRandom) -> CohortPatient {
        var random = random
        let profile = ClassProfile.of(primary)
        let age = Int(min(95, max(5, (profile.ageMean + profile.ageSD * random.normal()).rounded())))
        let skinType = 1 + random.weighted(profile.fitzpatrick)
        let blank = random.chance(biopsed ? Missingness.blankBlockBiopsed : Missingness.blankBlockNotBiopsed)
        var cells: [String: String] = [:]
        func answer(_ key: String, _ value: String, unknownAllowed: Bool = true) {
            cells[key] = blank ? "" : unknownAllowed && random.chance(Missingness.patientFieldUnknown) ? "UNK" : value
        }
        let backgrounds = Missingness.backgrounds
        answer("smoke", yesNo(random.chance(profile.smoke)))
        answer("drink", yesNo(random.chance(profile.drink)))
        answer("background_father", backgrounds[random.weighted(backgrounds.map(\.1))].0)
        answer("background_mother", backgrounds[random.weighted(backgrounds.map(\.1))].0)
        answer("pesticide", yesNo(random.chance(profile.pesticide)))
        answer("gender", random.chance(profile.male) ? "MALE" : "FEMALE", unknownAllowed: false)
        answer("skin_cancer_history", yesNo(random.chance(profile.skinCancerHistory)))
        answer("cancer_history", yesNo(random.chance(profile.cancerHistory)))
        answer("has_piped_water", yesNo(random.chance(Missingness.pipedWater)))
        answer("has_sewage_system", yesNo(random.chance(Missingness.sewageSystem)))
        answer("fitspatrick", "\(skinType).0")
        return CohortPatient(number: number, primary: primary, age: age, skinType: skinType, blankBlock: blank, cells: cells)
    }

    /// A diameter as the real file writes it: to the half millimetre, one decimal ("6.0", "9.5").
    static func diameterText(_ millimetres: Double) -> String {
        let halves = max(1, (millimetres * 2).rounded())
        return String(format: "%.1f", halves / 2)
    }

    /// The cells of one metadata.csv row, in ``PadUfes20/columns`` order.
    public func row(_ image: CohortImage) -> [String] {
        let lesion = lesions[image.lesion]
        let patient = patients[lesion.patient]
        var values = patient.cells
        values["patient_id"] = "PAT_\(patient.number)"
        values["lesion_id"] = "\(lesion.id)"
        values["age"] = "\(patient.age)"
        values["region"] = lesion.region
        values["diameter_1"] = patient.blankBlock ? "" : Self.diameterText(lesion.diameter1)
        values["diameter_2"] = patient.blankBlock ? "" : Self.diameterText(lesion.diameter2)
        values["diagnostic"] = lesion.diagnosis.code
        for (key, value) in zip(["itch", "grew", "hurt", "changed", "bleed", "elevation"], lesion.symptoms) { values[key] = value }
        values["img_id"] = image.imageID
        values["biopsed"] = Self.yesNo(lesion.biopsed)
        return PadUfes20.columns.map { values[$0]! }
    }

    /// metadata.csv: the header and one row per image, LF line ends (no value needs quoting).
    public func csvText() -> String {
        var text = PadUfes20.columns.joined(separator: ",") + "\n"
        for image in images { text += row(image).joined(separator: ",") + "\n" }
        return text
    }
}
