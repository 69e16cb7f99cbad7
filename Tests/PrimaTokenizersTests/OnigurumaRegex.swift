// Also compiled, outside SwiftPM, by Fixtures/bench/regex-bench.sh: it imports only COniguruma.
import COniguruma

/// Oniguruma (libonig, the engine of the Python `tokenizers` wheels) as the Rust `onig` crate drives it for
/// `SysRegex::find_iter`: default syntax, UTF-8, each search from the end of the previous match, an empty match
/// right where the previous one ended skipped by moving one character on.
final class OnigurumaRegex {
    private var regex: OnigRegex?

    /// onig_initialize once per process, with the one encoding used.
    private static let initialized: Bool = {
        var encodings: [OnigEncoding?] = [prima_onig_encoding_utf8()]
        return onig_initialize(&encodings, 1) == ONIG_NORMAL
    }()

    init(_ pattern: String) throws {
        precondition(Self.initialized, "onig_initialize failed")
        let bytes = Array(pattern.utf8)
        var info = OnigErrorInfo()
        let status = bytes.withUnsafeBufferPointer { p in
            onig_new(&regex, p.baseAddress, p.baseAddress! + p.count, OnigOptionType(ONIG_OPTION_NONE),
                     prima_onig_encoding_utf8(), prima_onig_syntax_default(), &info)
        }
        // onig_error_code_to_str is variadic, which Swift cannot call: the code is enough for a test.
        guard status == ONIG_NORMAL else { throw OnigurumaError(pattern: pattern, code: status) }
    }

    deinit { onig_free(regex) }

    /// The non-overlapping matches as scalar ranges (converted from Oniguruma's byte offsets).
    func matches(in text: [Unicode.Scalar]) -> [Range<Int>] {
        var bytes: [UInt8] = []
        var scalarAt: [Int] = []
        for (index, scalar) in text.enumerated() {
            let utf8 = String(scalar).utf8
            scalarAt += repeatElement(index, count: utf8.count)
            bytes.append(contentsOf: utf8)
        }
        scalarAt.append(text.count)
        return byteMatches(in: bytes).map { scalarAt[$0.lowerBound]..<scalarAt[$0.upperBound] }
    }

    /// The non-overlapping matches as byte ranges of the UTF-8 `bytes`.
    func byteMatches(in bytes: [UInt8]) -> [Range<Int>] {
        let region = onig_region_new()
        defer { onig_region_free(region, 1) }
        var result: [Range<Int>] = []
        var searchStart = 0
        var lastMatchEnd: Int? = nil
        bytes.withUnsafeBufferPointer { p in
            // An empty text still needs a valid pointer.
            let base = p.baseAddress ?? UnsafePointer(bitPattern: 1)!
            let end = base + p.count
            while searchStart <= p.count {
                let found = onig_search(regex, base, end, base + searchStart, end, region, OnigOptionType(ONIG_OPTION_NONE))
                guard found >= 0 else { break }
                let start = Int(region!.pointee.beg[0]), stop = Int(region!.pointee.end[0])
                if start == stop && lastMatchEnd == stop {
                    // Move one UTF-8 character on.
                    searchStart += 1
                    while searchStart < p.count && p[searchStart] & 0xC0 == 0x80 { searchStart += 1 }
                    continue
                }
                result.append(start..<stop)
                searchStart = stop
                lastMatchEnd = stop
            }
        }
        return result
    }
}

/// A pattern Oniguruma refused, with its error code (oniguruma.h ONIGERR_*).
struct OnigurumaError: Error {
    let pattern: String
    let code: Int32
}
