/// The six PAD-UFES-20 diagnoses and the class-conditional distributions the generator draws from.
///
/// Docs/cohort.md lists every number here with its source; the class counts are PAD-UFES-20's (Pacheco et al.
/// 2020, Data in Brief 32:106221), the shapes follow standard dermatology descriptions, and the exact values are
/// this project's illustrative choices.
public enum Diagnosis: Int, CaseIterable, Sendable, Comparable {
    case bcc, ack, nev, sek, scc, mel

    /// The code in metadata.csv's `diagnostic` column.
    public var code: String { ["BCC", "ACK", "NEV", "SEK", "SCC", "MEL"][rawValue] }

    /// Images of this class in PAD-UFES-20 (2,298 in all).
    public var realImageCount: Int { [845, 730, 244, 235, 192, 52][rawValue] }

    public static func < (a: Diagnosis, b: Diagnosis) -> Bool { a.rawValue < b.rawValue }
}

/// PAD-UFES-20's totals (the data paper).
public enum PadUfes20 {
    public static let images = 2298
    public static let lesions = 1891
    public static let patients = 1373
    /// Distinct `lesion_id` values: the real file reuses lesion numbers across patients.
    public static let lesionIDs = 1641
    /// The 26 columns of metadata.csv, in the file's order.
    public static let columns = [
        "patient_id", "lesion_id", "smoke", "drink", "background_father", "background_mother", "age", "pesticide",
        "gender", "skin_cancer_history", "cancer_history", "has_piped_water", "has_sewage_system", "fitspatrick",
        "region", "diameter_1", "diameter_2", "diagnostic", "itch", "grew", "hurt", "changed", "bleed", "elevation",
        "img_id", "biopsed",
    ]
    /// The `region` values.
    public static let regions = ["ARM", "NECK", "FACE", "HAND", "FOREARM", "CHEST", "NOSE", "THIGH", "SCALP", "EAR", "BACK",
                                 "FOOT", "ABDOMEN", "LIP"]
}

/// One diagnosis's distributions. Probabilities are of the answer True; ages in years; diameters in mm.
struct ClassProfile: Sendable {
    /// Age ~ Normal(mean, sd), rounded, clamped to 5…95.
    let ageMean: Double, ageSD: Double
    /// P(MALE).
    let male: Double
    /// Weights of Fitzpatrick types 1…6.
    let fitzpatrick: [Double]
    /// Weights of the regions, in ``PadUfes20/regions`` order.
    let regions: [Double]
    let skinCancerHistory: Double, cancerHistory: Double
    let smoke: Double, drink: Double, pesticide: Double
    /// diameter_1 ~ LogNormal(log(median), sigma); diameter_2 = diameter_1 · Uniform(ratioLow, 1).
    let diameterMedian: Double, diameterSigma: Double, ratioLow: Double
    let itch: Double, grew: Double, hurt: Double, changed: Double, bleed: Double, elevation: Double
    /// P(biopsed): PAD-UFES-20 biopsied every BCC, SCC and MEL and a part of the others (about 58% in all).
    let biopsed: Double

    //                                   ARM NECK FACE HAND FORE CHEST NOSE THIGH SCALP EAR BACK FOOT ABDO LIP
    static let profiles: [Diagnosis: ClassProfile] = [
        .bcc: ClassProfile(ageMean: 64, ageSD: 13, male: 0.50, fitzpatrick: [18, 52, 25, 4, 1, 0],
                           regions: [3, 5, 30, 1, 3, 8, 16, 1, 4, 6, 16, 0, 2, 5],
                           skinCancerHistory: 0.55, cancerHistory: 0.50, smoke: 0.10, drink: 0.25, pesticide: 0.35,
                           diameterMedian: 9, diameterSigma: 0.50, ratioLow: 0.65,
                           itch: 0.45, grew: 0.65, hurt: 0.20, changed: 0.30, bleed: 0.55, elevation: 0.75, biopsed: 1),
        .ack: ClassProfile(ageMean: 63, ageSD: 11, male: 0.50, fitzpatrick: [16, 54, 26, 3, 1, 0],
                           regions: [12, 3, 26, 10, 22, 6, 6, 1, 3, 4, 4, 0, 1, 2],
                           skinCancerHistory: 0.45, cancerHistory: 0.45, smoke: 0.10, drink: 0.25, pesticide: 0.40,
                           diameterMedian: 6, diameterSigma: 0.40, ratioLow: 0.60,
                           itch: 0.60, grew: 0.25, hurt: 0.15, changed: 0.10, bleed: 0.15, elevation: 0.55, biopsed: 0.15),
        .nev: ClassProfile(ageMean: 38, ageSD: 15, male: 0.40, fitzpatrick: [7, 38, 38, 12, 4, 1],
                           regions: [10, 6, 10, 2, 5, 14, 2, 8, 2, 1, 26, 3, 11, 0],
                           skinCancerHistory: 0.15, cancerHistory: 0.30, smoke: 0.12, drink: 0.25, pesticide: 0.20,
                           diameterMedian: 6, diameterSigma: 0.40, ratioLow: 0.75,
                           itch: 0.15, grew: 0.20, hurt: 0.05, changed: 0.10, bleed: 0.05, elevation: 0.65, biopsed: 0.35),
        .sek: ClassProfile(ageMean: 62, ageSD: 12, male: 0.45, fitzpatrick: [10, 45, 33, 9, 3, 0],
                           regions: [6, 6, 20, 2, 5, 18, 2, 4, 3, 2, 20, 1, 10, 1],
                           skinCancerHistory: 0.30, cancerHistory: 0.40, smoke: 0.10, drink: 0.25, pesticide: 0.25,
                           diameterMedian: 9, diameterSigma: 0.45, ratioLow: 0.65,
                           itch: 0.45, grew: 0.35, hurt: 0.05, changed: 0.15, bleed: 0.15, elevation: 0.80, biopsed: 0.25),
        .scc: ClassProfile(ageMean: 67, ageSD: 12, male: 0.55, fitzpatrick: [20, 52, 23, 4, 1, 0],
                           regions: [6, 3, 24, 12, 14, 4, 10, 1, 5, 6, 4, 1, 1, 9],
                           skinCancerHistory: 0.55, cancerHistory: 0.50, smoke: 0.20, drink: 0.30, pesticide: 0.40,
                           diameterMedian: 11, diameterSigma: 0.50, ratioLow: 0.60,
                           itch: 0.60, grew: 0.75, hurt: 0.45, changed: 0.40, bleed: 0.55, elevation: 0.85, biopsed: 1),
        .mel: ClassProfile(ageMean: 56, ageSD: 15, male: 0.45, fitzpatrick: [18, 50, 26, 5, 1, 0],
                           regions: [10, 4, 14, 2, 4, 12, 3, 10, 3, 2, 26, 4, 6, 0],
                           skinCancerHistory: 0.45, cancerHistory: 0.50, smoke: 0.10, drink: 0.25, pesticide: 0.25,
                           diameterMedian: 12, diameterSigma: 0.50, ratioLow: 0.55,
                           itch: 0.35, grew: 0.60, hurt: 0.10, changed: 0.55, bleed: 0.30, elevation: 0.60, biopsed: 1),
    ]

    static func of(_ diagnosis: Diagnosis) -> ClassProfile { profiles[diagnosis]! }
}

/// Rates of missing answers, the same for every class (Docs/cohort.md, "Blanks and UNK").
enum Missingness {
    /// P(the patient block is blank) when the patient's first lesion is, or is not, biopsied.
    static let blankBlockBiopsed = 0.06
    static let blankBlockNotBiopsed = 0.75
    /// P(UNK) for a filled patient field (smoke … fitspatrick, backgrounds).
    static let patientFieldUnknown = 0.02
    /// P(UNK) per symptom column: itch, grew, hurt, changed, bleed, elevation.
    static let symptomUnknown: [Double] = [0.01, 0.10, 0.005, 0.12, 0.01, 0.005]
    /// P(True) of has_piped_water and has_sewage_system (not class-dependent).
    static let pipedWater = 0.75
    static let sewageSystem = 0.60
    /// The `background_father`/`background_mother` values and their weights (mostly European ancestry, as in
    /// PAD-UFES-20's south-eastern Brazilian population; BRASIL is the real file's second spelling).
    static let backgrounds: [(String, Double)] = [
        ("POMERANIA", 30), ("GERMANY", 22), ("BRAZIL", 16), ("ITALY", 18), ("NETHERLANDS", 3), ("POLAND", 3),
        ("PORTUGAL", 3), ("BRASIL", 1), ("CZECH", 1), ("AUSTRIA", 1), ("SPAIN", 1), ("ISRAEL", 1),
    ]
}
