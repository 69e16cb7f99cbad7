/// How a diagnosis tends to look in a clinical (smartphone) photograph, as the drawing parameters of
/// ``LesionRenderer``. The descriptions follow standard dermatology texts (Docs/cohort.md, "Images"); the numbers
/// are this project's illustrative choices. Colours are sRGB in 0…1 as seen on Fitzpatrick type II skin.
struct Appearance: Sendable {
    /// Main, second and third colour (the second and third are mixed in by ``variegation`` and ``thirdAmount``).
    var colour1: SIMD3<Float>, colour2: SIMD3<Float>, colour3: SIMD3<Float>
    /// How much of colour2 the lesion shows (0 uniform, 1 blotches of colour2 over half of it).
    var variegation: Float
    /// Weight of colour3 blotches (melanoma's blue-grey or black areas, a pigmented BCC's brown dots).
    var thirdAmount: Float
    /// Width of the soft edge as a fraction of the radius (0.04 sharp, "stuck-on"; 0.35 ill-defined).
    var edge: Float
    /// Amplitude of the border's harmonics 2…12 (irregular, notched border).
    var irregularity: Float
    /// Amplitude of the first harmonic (one side bulges: asymmetry).
    var asymmetry: Float
    /// Fine texture: amplitude and frequency (in cycles per lesion radius) of a darkening pattern.
    var texture: Float, textureFrequency: Float
    /// White-yellow keratin scale flakes over the surface.
    var scale: Float
    /// A brighter rolled rim (BCC's pearly border).
    var rim: Float
    /// A central crust or ulcer (colour3 replaced by ``crustColour``), as a fraction of the radius.
    var crust: Float
    var crustColour: SIMD3<Float>
    /// Visible vessels (telangiectasia) across the lesion, as an expected count.
    var vessels: Float
    /// Redness of the skin around the lesion (inflammation, sun damage).
    var halo: Float

    func mixed(with other: Appearance, _ t: Float) -> Appearance {
        func m(_ a: Float, _ b: Float) -> Float { a + (b - a) * t }
        func m(_ a: SIMD3<Float>, _ b: SIMD3<Float>) -> SIMD3<Float> { a + (b - a) * t }
        return Appearance(colour1: m(colour1, other.colour1), colour2: m(colour2, other.colour2), colour3: m(colour3, other.colour3),
                          variegation: m(variegation, other.variegation), thirdAmount: m(thirdAmount, other.thirdAmount),
                          edge: m(edge, other.edge), irregularity: m(irregularity, other.irregularity),
                          asymmetry: m(asymmetry, other.asymmetry), texture: m(texture, other.texture),
                          textureFrequency: m(textureFrequency, other.textureFrequency), scale: m(scale, other.scale),
                          rim: m(rim, other.rim), crust: m(crust, other.crust), crustColour: m(crustColour, other.crustColour),
                          vessels: m(vessels, other.vessels), halo: m(halo, other.halo))
    }

    static func of(_ diagnosis: Diagnosis) -> Appearance {
        switch diagnosis {
        case .mel:  // ABCDE: asymmetric, irregular border, several colours (brown, black, blue-grey), large
            Appearance(colour1: [0.36, 0.22, 0.15], colour2: [0.12, 0.08, 0.08], colour3: [0.38, 0.40, 0.48],
                       variegation: 0.75, thirdAmount: 0.45, edge: 0.10, irregularity: 0.16, asymmetry: 0.22,
                       texture: 0.15, textureFrequency: 3, scale: 0, rim: 0, crust: 0, crustColour: [0.40, 0.12, 0.10],
                       vessels: 0, halo: 0.05)
        case .nev:  // uniform tan to brown, round, regular sharp border, symmetric
            Appearance(colour1: [0.50, 0.33, 0.23], colour2: [0.40, 0.25, 0.17], colour3: [0.45, 0.30, 0.20],
                       variegation: 0.20, thirdAmount: 0, edge: 0.09, irregularity: 0.04, asymmetry: 0.04,
                       texture: 0.05, textureFrequency: 3, scale: 0, rim: 0, crust: 0, crustColour: [0.40, 0.25, 0.17],
                       vessels: 0, halo: 0)
        case .sek:  // waxy light-to-dark brown, "stuck-on", sharp border, cerebriform fissured surface
            Appearance(colour1: [0.55, 0.40, 0.27], colour2: [0.32, 0.22, 0.15], colour3: [0.70, 0.60, 0.45],
                       variegation: 0.45, thirdAmount: 0.15, edge: 0.04, irregularity: 0.08, asymmetry: 0.08,
                       texture: 0.45, textureFrequency: 9, scale: 0.10, rim: 0, crust: 0, crustColour: [0.35, 0.25, 0.17],
                       vessels: 0, halo: 0)
        case .bcc:  // pearly pink translucent papule or plaque, rolled rim, telangiectasia, sometimes a central ulcer
            Appearance(colour1: [0.86, 0.64, 0.62], colour2: [0.78, 0.52, 0.52], colour3: [0.35, 0.24, 0.20],
                       variegation: 0.25, thirdAmount: 0.08, edge: 0.12, irregularity: 0.07, asymmetry: 0.08,
                       texture: 0.05, textureFrequency: 4, scale: 0.02, rim: 0.6, crust: 0.18, crustColour: [0.50, 0.18, 0.15],
                       vessels: 5, halo: 0.10)
        case .ack:  // small ill-defined red-pink macule or patch with rough white-yellow scale on sun-damaged skin
            Appearance(colour1: [0.80, 0.47, 0.42], colour2: [0.72, 0.40, 0.36], colour3: [0.85, 0.70, 0.60],
                       variegation: 0.30, thirdAmount: 0.10, edge: 0.35, irregularity: 0.12, asymmetry: 0.12,
                       texture: 0.20, textureFrequency: 8, scale: 0.45, rim: 0, crust: 0.05, crustColour: [0.66, 0.50, 0.36],
                       vessels: 0.5, halo: 0.30)
        case .scc:  // red indurated nodule or plaque, thick yellow-brown keratin crust, sometimes ulcerated and bleeding
            Appearance(colour1: [0.72, 0.34, 0.30], colour2: [0.60, 0.26, 0.22], colour3: [0.80, 0.66, 0.50],
                       variegation: 0.35, thirdAmount: 0.15, edge: 0.18, irregularity: 0.12, asymmetry: 0.12,
                       texture: 0.20, textureFrequency: 6, scale: 0.35, rim: 0.1, crust: 0.45, crustColour: [0.62, 0.44, 0.28],
                       vessels: 1.5, halo: 0.25)
        }
    }

    /// Pairs that clinicians confuse (and the generator blends, so that images overlap between classes).
    static func lookalikes(_ diagnosis: Diagnosis) -> [Diagnosis] {
        switch diagnosis {
        case .mel: [.nev, .sek, .bcc]
        case .nev: [.mel, .sek]
        case .sek: [.mel, .nev, .ack]
        case .bcc: [.scc, .ack, .nev]
        case .ack: [.scc, .bcc, .sek]
        case .scc: [.ack, .bcc]
        }
    }

    /// Skin colour of each Fitzpatrick type (sRGB 0…1), I to VI.
    static let skinTones: [SIMD3<Float>] = [
        [0.96, 0.84, 0.77], [0.91, 0.75, 0.65], [0.82, 0.64, 0.50], [0.66, 0.48, 0.34], [0.47, 0.32, 0.22], [0.30, 0.20, 0.14],
    ]
}
