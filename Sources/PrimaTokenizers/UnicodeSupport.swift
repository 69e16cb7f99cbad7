import Foundation

// Unicode facts the pipeline needs, answered the way the Rust `tokenizers` library answers them:
//   * regex classes (Oniguruma, used for Split and ByteLevel patterns): \p{L} = Lu|Ll|Lt|Lm|Lo, \p{N} = Nd|Nl|No,
//     \s = U+0009-000D, U+0085 and Z* (which is the White_Space property), \w = Alphabetic|M|Nd|Pc|Join_Control,
//     \d = Nd;
//   * `char::is_whitespace` (Strip, WhitespaceSplit, added-token lstrip/rstrip): White_Space; `char::to_lowercase`:
//     the full lowercase mapping, character by character (no final-sigma context);
//   * the unicode-normalization crate (NFC/NFD/NFKC/NFKD, and is_combining_mark = General_Category Mark).
// General categories come from the Swift standard library's tables, cached per scalar, restricted to Unicode 16.0:
// the Oniguruma in tokenizers 0.23 (and Rust's std) know Unicode 16.0, Swift 6.3 knows 17.0, so scalars assigned
// after 16.0 are treated as unassigned (Cn), as the reference library sees them.

/// The 30 general categories, numbered in a fixed order so that a set of them is a bit mask.
enum GeneralCategory: UInt8, CaseIterable {
    case Lu, Ll, Lt, Lm, Lo, Mn, Mc, Me, Nd, Nl, No, Pc, Pd, Ps, Pe, Pi, Pf, Po, Sm, Sc, Sk, So, Zs, Zl, Zp
    case Cc, Cf, Cs, Co, Cn

    init(_ category: Unicode.GeneralCategory) {
        switch category {
        case .uppercaseLetter: self = .Lu
        case .lowercaseLetter: self = .Ll
        case .titlecaseLetter: self = .Lt
        case .modifierLetter: self = .Lm
        case .otherLetter: self = .Lo
        case .nonspacingMark: self = .Mn
        case .spacingMark: self = .Mc
        case .enclosingMark: self = .Me
        case .decimalNumber: self = .Nd
        case .letterNumber: self = .Nl
        case .otherNumber: self = .No
        case .connectorPunctuation: self = .Pc
        case .dashPunctuation: self = .Pd
        case .openPunctuation: self = .Ps
        case .closePunctuation: self = .Pe
        case .initialPunctuation: self = .Pi
        case .finalPunctuation: self = .Pf
        case .otherPunctuation: self = .Po
        case .mathSymbol: self = .Sm
        case .currencySymbol: self = .Sc
        case .modifierSymbol: self = .Sk
        case .otherSymbol: self = .So
        case .spaceSeparator: self = .Zs
        case .lineSeparator: self = .Zl
        case .paragraphSeparator: self = .Zp
        case .control: self = .Cc
        case .format: self = .Cf
        case .surrogate: self = .Cs
        case .privateUse: self = .Co
        case .unassigned: self = .Cn
        @unknown default: self = .Cn
        }
    }

    var mask: CategoryMask { CategoryMask(rawValue: 1 << UInt32(rawValue)) }
}

/// A set of general categories.
struct CategoryMask: OptionSet, Hashable {
    let rawValue: UInt32
    static let letter: CategoryMask = [GeneralCategory.Lu.mask, GeneralCategory.Ll.mask, GeneralCategory.Lt.mask,
                                       GeneralCategory.Lm.mask, GeneralCategory.Lo.mask]
    static let mark: CategoryMask = [GeneralCategory.Mn.mask, GeneralCategory.Mc.mask, GeneralCategory.Me.mask]
    static let number: CategoryMask = [GeneralCategory.Nd.mask, GeneralCategory.Nl.mask, GeneralCategory.No.mask]
    static let punctuation: CategoryMask = [GeneralCategory.Pc.mask, GeneralCategory.Pd.mask, GeneralCategory.Ps.mask,
                                            GeneralCategory.Pe.mask, GeneralCategory.Pi.mask, GeneralCategory.Pf.mask,
                                            GeneralCategory.Po.mask]
    static let symbol: CategoryMask = [GeneralCategory.Sm.mask, GeneralCategory.Sc.mask, GeneralCategory.Sk.mask,
                                       GeneralCategory.So.mask]
    static let separator: CategoryMask = [GeneralCategory.Zs.mask, GeneralCategory.Zl.mask, GeneralCategory.Zp.mask]
    static let other: CategoryMask = [GeneralCategory.Cc.mask, GeneralCategory.Cf.mask, GeneralCategory.Cs.mask,
                                      GeneralCategory.Co.mask, GeneralCategory.Cn.mask]
}

/// Per-scalar properties packed in one byte: general category (bits 0-4), White_Space (bit 5), Alphabetic (bit 6).
enum UnicodeProperties {
    private static let whitespaceBit: UInt8 = 1 << 5
    private static let alphabeticBit: UInt8 = 1 << 6
    /// The Unicode version of the reference library's tables (see the top of the file).
    static let unicodeVersion = (major: 16, minor: 0)
    /// Scalars below this are answered from the table; the rest (planes 3-16: rare) are computed each time.
    private static let tableLimit: UInt32 = 0x30000

    private static func compute(_ value: UInt32) -> UInt8 {
        guard let scalar = Unicode.Scalar(value) else { return GeneralCategory.Cs.rawValue }
        let properties = scalar.properties
        if let age = properties.age, age.major > unicodeVersion.major
            || (age.major == unicodeVersion.major && age.minor > unicodeVersion.minor) {
            return GeneralCategory.Cn.rawValue
        }
        var byte = GeneralCategory(properties.generalCategory).rawValue
        if properties.isWhitespace { byte |= whitespaceBit }
        if properties.isAlphabetic { byte |= alphabeticBit }
        return byte
    }

    /// ASCII, built on first use without touching the large table.
    private static let ascii: [UInt8] = (0..<128).map { compute(UInt32($0)) }
    /// Planes 0-2, built on first use of a non-ASCII scalar (about 10 ms, 192 KiB).
    private static let table: [UInt8] = (0..<tableLimit).map { compute($0) }

    @inline(__always)
    static func packed(_ value: UInt32) -> UInt8 {
        if value < 128 { return ascii[Int(value)] }
        if value < tableLimit { return table[Int(value)] }
        return compute(value)
    }

    @inline(__always)
    static func category(_ value: UInt32) -> GeneralCategory {
        GeneralCategory(rawValue: packed(value) & 0x1F)!
    }

    @inline(__always)
    static func categoryMask(_ value: UInt32) -> CategoryMask {
        CategoryMask(rawValue: 1 << UInt32(packed(value) & 0x1F))
    }

    @inline(__always)
    static func isLetter(_ value: UInt32) -> Bool {
        if value < 128 { return (value | 0x20) >= 0x61 && (value | 0x20) <= 0x7A }
        return categoryMask(value).isSubset(of: .letter)
    }

    @inline(__always)
    static func isNumber(_ value: UInt32) -> Bool {
        if value < 128 { return value >= 0x30 && value <= 0x39 }
        return categoryMask(value).isSubset(of: .number)
    }

    /// White_Space, which equals Oniguruma's Unicode \s and Rust's `char::is_whitespace`.
    @inline(__always)
    static func isWhitespace(_ value: UInt32) -> Bool {
        if value < 128 { return value == 0x20 || (value >= 0x09 && value <= 0x0D) }
        return packed(value) & whitespaceBit != 0
    }

    /// \w: Alphabetic, Mark, Decimal_Number, Connector_Punctuation, Join_Control (UTS #18 Annex C; Oniguruma and the
    /// Rust regex crate agree).
    static func isWord(_ value: UInt32) -> Bool {
        if value < 128 {
            return (value | 0x20) >= 0x61 && (value | 0x20) <= 0x7A || value >= 0x30 && value <= 0x39 || value == 0x5F
        }
        if value == 0x200C || value == 0x200D { return true }
        let byte = packed(value)
        if byte & alphabeticBit != 0 { return true }
        let mask = CategoryMask(rawValue: 1 << UInt32(byte & 0x1F))
        return !mask.isDisjoint(with: [.mark, GeneralCategory.Nd.mask, GeneralCategory.Pc.mask])
    }

    /// Oniguruma's word characters: Alphabetic, Mark, Decimal_Number, Connector_Punctuation (no Join_Control, unlike the
    /// Rust regex crate). A bare \w, \W, \b or \B (`latin1Table`) answers below U+0100 from Oniguruma's ISO-8859-1
    /// ctype table, which also counts the superscript digits and vulgar fractions (² ³ ¹ ¼ ½ ¾); \w inside a bracket
    /// class uses the Unicode ranges only. (Both measured on tokenizers 0.23.)
    static func isRegexWord(_ value: UInt32, latin1Table: Bool) -> Bool {
        if value < 128 { return isWord(value) }
        if latin1Table && (value == 0xB2 || value == 0xB3 || value == 0xB9 || (0xBC...0xBE).contains(value)) {
            return true
        }
        let byte = packed(value)
        if byte & alphabeticBit != 0 { return true }
        let mask = CategoryMask(rawValue: 1 << UInt32(byte & 0x1F))
        return !mask.isDisjoint(with: [.mark, GeneralCategory.Nd.mask, GeneralCategory.Pc.mask])
    }

    static func isAlphabetic(_ value: UInt32) -> Bool { packed(value) & alphabeticBit != 0 }

    /// General_Category = Mark (the unicode-normalization crate's `is_combining_mark`, used by StripAccents).
    static func isMark(_ value: UInt32) -> Bool { categoryMask(value).isSubset(of: .mark) }
}

/// Case mappings as Rust's `char` methods give them (full mappings, no context).
enum CaseMapping {
    /// `char::to_lowercase`: one or more scalars.
    static func lowercase(_ scalar: Unicode.Scalar, into output: inout [Unicode.Scalar]) {
        let value = scalar.value
        if value < 128 {
            output.append(value >= 0x41 && value <= 0x5A ? Unicode.Scalar(value + 0x20)! : scalar)
            return
        }
        output.append(contentsOf: scalar.properties.lowercaseMapping.unicodeScalars)
    }

    /// The single-scalar simple case fold used for case-insensitive regex matching: lowercase(uppercase(c)) when both
    /// mappings are one scalar (so ſ and K fold with s and k), else lowercase(c), else c.
    static func fold(_ value: UInt32) -> UInt32 {
        if value < 128 { return value >= 0x41 && value <= 0x5A ? value + 0x20 : value }
        guard let scalar = Unicode.Scalar(value) else { return value }
        let upper = scalar.properties.uppercaseMapping.unicodeScalars
        if upper.count == 1, let first = upper.first {
            let lower = first.properties.lowercaseMapping.unicodeScalars
            if lower.count == 1, let folded = lower.first { return folded.value }
        }
        let lower = scalar.properties.lowercaseMapping.unicodeScalars
        if lower.count == 1, let folded = lower.first { return folded.value }
        return value
    }

    /// The scalars a case-insensitive class test should also try for `value`: its lowercase, uppercase and fold.
    static func variants(_ value: UInt32) -> [UInt32] {
        guard let scalar = Unicode.Scalar(value) else { return [] }
        var result: [UInt32] = []
        for mapping in [scalar.properties.lowercaseMapping, scalar.properties.uppercaseMapping] {
            let scalars = mapping.unicodeScalars
            if scalars.count == 1, let only = scalars.first, only.value != value { result.append(only.value) }
        }
        let folded = fold(value)
        if folded != value && !result.contains(folded) { result.append(folded) }
        return result
    }
}

/// Unicode normalization forms of scalar arrays, with quick checks that skip the work for text that cannot change.
enum UnicodeNormalization {
    enum Form { case nfc, nfd, nfkc, nfkd }

    static func normalize(_ text: [Unicode.Scalar], _ form: Form) -> [Unicode.Scalar] {
        // Below U+0300 nothing decomposes canonically or combines except Latin-1 letters with diacritics (U+00C0 and
        // up) under NFD; below U+00A0 nothing has a compatibility mapping either.
        let limit: UInt32
        switch form {
        case .nfc: limit = 0x300
        case .nfd: limit = 0xC0
        case .nfkc, .nfkd: limit = 0xA0
        }
        if text.allSatisfy({ $0.value < limit }) { return text }
        // Through UTF-8 bytes rather than String.unicodeScalars.append, which is several times slower.
        var bytes: [UInt8] = []
        bytes.reserveCapacity(text.count * 3)
        for scalar in text { scalar.appendUTF8(to: &bytes) }
        let string = String(decoding: bytes, as: UTF8.self)
        switch form {
        case .nfc: return decodeUTF8(string._nfcCodeUnits)
        case .nfd: return decodeUTF8(Array(string.decomposedStringWithCanonicalMapping.utf8))
        case .nfkc: return decodeUTF8(Array(string.precomposedStringWithCompatibilityMapping.utf8))
        case .nfkd: return decodeUTF8(Array(string.decomposedStringWithCompatibilityMapping.utf8))
        }
    }

    /// The scalars of valid UTF-8.
    static func decodeUTF8(_ bytes: [UInt8]) -> [Unicode.Scalar] {
        var result: [Unicode.Scalar] = []
        result.reserveCapacity(bytes.count)
        var i = 0
        let n = bytes.count
        while i < n {
            let b0 = UInt32(bytes[i])
            var value: UInt32
            if b0 < 0x80 {
                value = b0
                i += 1
            } else if b0 < 0xE0, i + 1 < n {
                value = (b0 & 0x1F) << 6 | UInt32(bytes[i + 1] & 0x3F)
                i += 2
            } else if b0 < 0xF0, i + 2 < n {
                value = (b0 & 0x0F) << 12 | UInt32(bytes[i + 1] & 0x3F) << 6 | UInt32(bytes[i + 2] & 0x3F)
                i += 3
            } else if i + 3 < n {
                value = (b0 & 0x07) << 18 | UInt32(bytes[i + 1] & 0x3F) << 12 | UInt32(bytes[i + 2] & 0x3F) << 6
                    | UInt32(bytes[i + 3] & 0x3F)
                i += 4
            } else {
                value = 0xFFFD
                i = n
            }
            result.append(Unicode.Scalar(value) ?? "\u{FFFD}")
        }
        return result
    }
}

/// GPT-2's reversible map between bytes and printable characters (openai/gpt-2 encoder.py `bytes_to_unicode`; the
/// tokenizers library's `bytes_char`): printable Latin-1 bytes map to themselves, the other 68 bytes to U+0100 and up.
enum ByteLevelAlphabet {
    static let byteToScalar: [Unicode.Scalar] = {
        var printable = Array(UInt8(ascii: "!")...UInt8(ascii: "~")) + Array(0xA1...0xAC) + Array(0xAE...0xFF)
        var table = [Unicode.Scalar](repeating: " ", count: 256)
        for byte in printable { table[Int(byte)] = Unicode.Scalar(byte) }
        var next: UInt32 = 256
        for byte in 0...255 where !printable.contains(UInt8(byte)) {
            table[byte] = Unicode.Scalar(next)!
            next += 1
            printable.append(UInt8(byte))
        }
        return table
    }()

    /// Inverse map, indexed by scalar value (all alphabet scalars are below 0x144); -1 where a scalar is not in it.
    static let scalarToByte: [Int16] = {
        var table = [Int16](repeating: -1, count: 0x144)
        for (byte, scalar) in byteToScalar.enumerated() { table[Int(scalar.value)] = Int16(byte) }
        return table
    }()

    @inline(__always)
    static func byte(for scalar: Unicode.Scalar) -> UInt8? {
        let value = Int(scalar.value)
        guard value < scalarToByte.count, scalarToByte[value] >= 0 else { return nil }
        return UInt8(scalarToByte[value])
    }
}

extension Unicode.Scalar {
    /// Appends the UTF-8 encoding of the scalar.
    @inline(__always)
    func appendUTF8(to bytes: inout [UInt8]) {
        let v = value
        if v < 0x80 {
            bytes.append(UInt8(v))
        } else if v < 0x800 {
            bytes.append(UInt8(0xC0 | (v >> 6)))
            bytes.append(UInt8(0x80 | (v & 0x3F)))
        } else if v < 0x10000 {
            bytes.append(UInt8(0xE0 | (v >> 12)))
            bytes.append(UInt8(0x80 | ((v >> 6) & 0x3F)))
            bytes.append(UInt8(0x80 | (v & 0x3F)))
        } else {
            bytes.append(UInt8(0xF0 | (v >> 18)))
            bytes.append(UInt8(0x80 | ((v >> 12) & 0x3F)))
            bytes.append(UInt8(0x80 | ((v >> 6) & 0x3F)))
            bytes.append(UInt8(0x80 | (v & 0x3F)))
        }
    }
}

extension Array where Element == Unicode.Scalar {
    /// The scalars as a String.
    var string: String {
        var result = String()
        result.unicodeScalars.append(contentsOf: self)
        return result
    }
}

extension ArraySlice where Element == Unicode.Scalar {
    var string: String {
        var result = String()
        result.unicodeScalars.append(contentsOf: self)
        return result
    }
}
