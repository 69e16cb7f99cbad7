// A small backtracking regular-expression matcher with the semantics the `tokenizers` library gets from Oniguruma
// (its `onig` feature, which the Python wheels use) for Split patterns: leftmost-first alternation, greedy, lazy and
// possessive quantifiers, look-ahead and look-behind, atomic groups, scoped flags, and Unicode classes (\p{..},
// \s, \w, \d) as UnicodeSupport.swift defines them (\w and \b: UnicodeProperties.isRegexWord, Oniguruma's word
// characters). Matching is on Unicode scalars.
//
// Supported syntax: literals and escapes (\t \n \r \f \v \a \e \0 \xHH \x{H..} \uHHHH, escaped punctuation), `.`,
// classes `[...]` (ranges, negation, nested classes, escapes, \p{..}, POSIX [:alpha:] and friends), \s \S \d \D \w \W
// \h \H, \p{X} \P{X} \p{^X} for general categories (one- and two-letter and long names) and Alphabetic/White_Space,
// groups (?:..) (..) (?<name>..), flags (?i) (?-i) (?m) and (?i:..), (?=..) (?!..) (?<=..) (?<!..) (?>..), anchors ^ $
// \A \z \Z \b \B, quantifiers * + ? {n} {n,} {n,m} {,m} with lazy (?) and possessive (+) forms. Anything else
// (backreferences, scripts such as \p{Han}, class intersection, \G, \K, \R, extended mode) is refused at compile time
// with a message naming the construct, and so are a quantifier on a look-around and a loop whose body can match
// empty (`(a*)*`, `(a|)+`), whose Oniguruma semantics this matcher does not reproduce. A seeded differential test
// against Oniguruma (OnigurumaDifferentialTests) checks that every pattern both accept matches alike.
//
// Ruby/Oniguruma conventions kept: `^`/`$` are line anchors, `.` does not match "\n" unless (?m), `{` that does not
// start a valid interval is a literal. A look-behind must have a bounded length (Oniguruma refuses unbounded ones
// too); it is tried only at the start positions its length allows.
//
// Bounded time: a search is a backtracking search, exponential in the worst case (`(a+)+$` on "aaaa…b"), so the
// searches have a step budget: TokenizerLimits.regexBaseSteps once per encode (or decode) call, plus
// TokenizerLimits.regexStepsPerScalar for every scalar searched. One budget (RegexBudget.current) is shared by all
// the searches of a call, so that splitting a text into many short pieces does not multiply the base. A search
// that runs out fails with an error naming the file and the pattern, as Oniguruma's retry limit
// (ONIG_DEFAULT_RETRY_LIMIT_IN_MATCH) stops the Rust tokenizers.

/// The steps left to the regex searches of one encode or decode call.
final class RegexBudget: @unchecked Sendable {  // one instance per call, used by that call's thread only
    var remaining: Int
    /// The steps granted so far (for the error message).
    var granted: Int

    init() {
        remaining = TokenizerLimits.regexBaseSteps
        granted = remaining
    }

    /// Adds the allowance for searching `count` scalars.
    func grant(scalars count: Int) {
        remaining += TokenizerLimits.regexStepsPerScalar * count
        granted += TokenizerLimits.regexStepsPerScalar * count
    }

    /// The budget of the current encode or decode call; nil outside one (each search then has its own).
    @TaskLocal static var current: RegexBudget?

    /// Runs `body` with a fresh budget shared by every search it makes.
    static func sharing<R>(_ body: () throws -> R) rethrows -> R {
        try $current.withValue(RegexBudget(), operation: body)
    }
}

/// A compiled pattern.
struct TokenizerRegex: Sendable {
    let pattern: String
    /// Where the pattern comes from, for errors: `tokenizer.json: pre_tokenizer.pattern.Regex`.
    let place: String
    private let program: RegexProgram

    init(_ pattern: String, place: String = "regex") throws {
        self.pattern = pattern
        self.place = place
        var parser = RegexParser(pattern: pattern)
        let node = try parser.parse()
        // Counted intervals are compiled as copies: `((a{1000}){1000}){1000}` would be 10^9 instructions.
        let size = node.programSize
        guard size <= Double(TokenizerLimits.maxRegexInstructions) else {
            throw TokenizerError.invalidRegex(pattern, "compiles to \(size) instructions, more than the limit of "
                                              + "\(TokenizerLimits.maxRegexInstructions) (counted repetitions nest too deep)")
        }
        program = RegexCompiler.compile(node)
    }

    /// The non-overlapping matches from left to right, as the onig crate's `find_iter` gives them: each search
    /// starts where the previous match ended, and an empty match right where the previous match ended is skipped
    /// (the search moves one scalar on). Throws when the search exceeds its step budget.
    func matches(in text: [Unicode.Scalar]) throws -> [Range<Int>] {
        let budget = RegexBudget.current ?? RegexBudget()
        budget.grant(scalars: text.count)
        return try text.withUnsafeBufferPointer { buffer in
            var result: [Range<Int>] = []
            var searchStart = 0
            var lastMatchEnd: Int? = nil
            var machine = RegexMachine(program: program, text: buffer, budget: budget.remaining)
            defer { budget.remaining = machine.budget }
            while searchStart <= buffer.count {
                guard let (start, end) = try machine.search(from: searchStart, budgetError: budgetError(budget.granted))
                else { break }
                if start == end && lastMatchEnd == end {
                    searchStart += 1
                    continue
                }
                result.append(start..<end)
                searchStart = end
                lastMatchEnd = end
            }
            return result
        }
    }

    /// The leftmost match in `text`, with a budget of its own (BoundedRegex, tests).
    func firstMatch(in text: [Unicode.Scalar]) throws -> Range<Int>? {
        let budget = RegexBudget()
        budget.grant(scalars: text.count)
        return try text.withUnsafeBufferPointer { buffer in
            var machine = RegexMachine(program: program, text: buffer, budget: budget.remaining)
            return try machine.search(from: 0, budgetError: budgetError(budget.granted)).map { $0.0..<$0.1 }
        }
    }

    private func budgetError(_ steps: Int) -> TokenizerError {
        .invalid(place, "regex \(TokenizerError.abbreviated(pattern)) needs more than the \(steps) steps allowed for this text "
                 + "(catastrophic backtracking); the pattern must be rewritten")
    }
}

/// A regular expression in the tokenizer's dialect (the Oniguruma syntax this file implements) for uses outside a
/// tokenizer, such as `prima-quantize --keep-float` patterns: compiled with the same limits
/// (``TokenizerLimits/maxRegexNesting``, ``TokenizerLimits/maxRegexInstructions``) and searched with the same step
/// budget (``TokenizerLimits/regexBaseSteps`` plus ``TokenizerLimits/regexStepsPerScalar`` per scalar), so that a
/// hostile pattern is refused or stopped with an error instead of hanging.
public struct BoundedRegex: Sendable {
    private let regex: TokenizerRegex

    /// Compiles `pattern`; `place` names it in the error of a search over its budget (`--keep-float`). Throws
    /// `TokenizerError` (one line naming the pattern and what is wrong) for a pattern it cannot compile.
    public init(_ pattern: String, place: String) throws {
        regex = try TokenizerRegex(pattern, place: place)
    }

    /// Whether the pattern matches somewhere in `text`. Throws `TokenizerError` when the search exceeds its step
    /// budget.
    public func isFound(in text: String) throws -> Bool {
        try regex.firstMatch(in: Array(text.unicodeScalars)) != nil
    }
}

// MARK: - Syntax tree

/// A set of scalars: a regex class, or one of the shorthand classes.
struct ScalarSet: Sendable {
    enum Item: Sendable {
        case range(UInt32, UInt32)
        case categories(CategoryMask, negated: Bool)
        case whitespace(negated: Bool)
        /// Oniguruma word characters; `bare` for \w/\W outside brackets (see UnicodeProperties.isRegexWord).
        case word(negated: Bool, bare: Bool)
        case alphabetic(negated: Bool)
        case hexDigit(negated: Bool)
        case set(ScalarSet)
    }

    var items: [Item] = []
    var negated = false
    var ignoreCase = false
    /// Membership of the 128 ASCII scalars, precomputed by `finish()`.
    private var asciiLow: UInt64 = 0
    private var asciiHigh: UInt64 = 0

    init(items: [Item] = []) { self.items = items }

    private func itemsContain(_ value: UInt32) -> Bool {
        for item in items {
            switch item {
            case let .range(low, high): if value >= low && value <= high { return true }
            case let .categories(mask, negated):
                if mask.contains(UnicodeProperties.categoryMask(value)) != negated { return true }
            case let .whitespace(negated): if UnicodeProperties.isWhitespace(value) != negated { return true }
            case let .word(negated, bare):
                if UnicodeProperties.isRegexWord(value, latin1Table: bare) != negated { return true }
            case let .alphabetic(negated): if UnicodeProperties.isAlphabetic(value) != negated { return true }
            case let .hexDigit(negated):
                let isHex = value >= 0x30 && value <= 0x39 || (value | 0x20) >= 0x61 && (value | 0x20) <= 0x66
                if isHex != negated { return true }
            case let .set(inner): if inner.contains(value) { return true }
            }
        }
        return false
    }

    private func computeContains(_ value: UInt32) -> Bool {
        var found = itemsContain(value)
        if !found && ignoreCase { found = CaseMapping.variants(value).contains { itemsContain($0) } }
        return found != negated
    }

    /// Precomputes the ASCII bitmap; call once the items are final.
    mutating func finish() {
        asciiLow = 0
        asciiHigh = 0
        for value in UInt32(0)..<128 where computeContains(value) {
            if value < 64 { asciiLow |= 1 << UInt64(value) } else { asciiHigh |= 1 << UInt64(value - 64) }
        }
    }

    @inline(__always)
    func contains(_ value: UInt32) -> Bool {
        if value < 64 { return asciiLow & (1 << UInt64(value)) != 0 }
        if value < 128 { return asciiHigh & (1 << UInt64(value - 64)) != 0 }
        return computeContains(value)
    }
}

enum RegexAnchor: Sendable { case lineStart, lineEnd, textStart, textEnd, textEndBeforeNewline, wordBoundary, notWordBoundary }

indirect enum RegexNode {
    case empty
    case literal(UInt32, ignoreCase: Bool)
    case set(ScalarSet)
    case any(dotAll: Bool)
    case sequence([RegexNode])
    case alternation([RegexNode])
    case repetition(RegexNode, min: Int, max: Int?, greedy: Bool, possessive: Bool)
    case look(RegexNode, ahead: Bool, negated: Bool)
    case atomic(RegexNode)
    case anchor(RegexAnchor)

    /// The number of instructions RegexCompiler emits for the node, subprograms included (a Double, so that
    /// nested counted repetitions cannot overflow).
    var programSize: Double {
        switch self {
        case .empty: return 0
        case .literal, .set, .any, .anchor: return 1
        case let .sequence(nodes): return nodes.reduce(0) { $0 + $1.programSize }
        case let .alternation(nodes): return nodes.reduce(0) { $0 + $1.programSize } + 2 * Double(nodes.count - 1)
        case let .repetition(node, minimum, maximum, _, possessive):
            let body = node.programSize
            let copies = Double(minimum) * body
            let rest = maximum.map { Double($0 - minimum) * (body + 1) } ?? (body + 4)
            return copies + rest + (possessive ? 2 : 0)
        case let .look(node, _, _), let .atomic(node): return node.programSize + 2
        }
    }

    /// The fewest and most scalars the node can match (nil: no bound). Counts saturate at 2^40, so that nested
    /// counted repetitions cannot overflow (such patterns are refused by their program size anyway).
    var lengthRange: (min: Int, max: Int?) {
        let cap = 1 << 40
        func add(_ a: Int, _ b: Int) -> Int { min(a + b, cap) }
        func multiply(_ a: Int, _ b: Int) -> Int {
            let (product, overflow) = a.multipliedReportingOverflow(by: b)
            return overflow ? cap : min(product, cap)
        }
        switch self {
        case .empty, .look, .anchor: return (0, 0)
        case .literal, .set, .any: return (1, 1)
        case let .sequence(nodes):
            var low = 0, high: Int? = 0
            for node in nodes {
                let range = node.lengthRange
                low = add(low, range.min)
                high = high.flatMap { total in range.max.map { add(total, $0) } }
            }
            return (low, high)
        case let .alternation(nodes):
            let ranges = nodes.map(\.lengthRange)
            let high = ranges.allSatisfy { $0.max != nil } ? ranges.compactMap(\.max).max() : nil
            return (ranges.map(\.min).min() ?? 0, high)
        case let .repetition(node, minimum, maximum, _, _):
            let range = node.lengthRange
            let high: Int? = range.max == 0 ? 0 : maximum.flatMap { count in range.max.map { multiply(count, $0) } }
            return (multiply(minimum, range.min), high)
        case let .atomic(node): return node.lengthRange
        }
    }

    /// Whether the node can match without consuming anything.
    var canBeEmpty: Bool {
        switch self {
        case .empty, .look, .anchor: return true
        case .literal, .set, .any: return false
        case let .sequence(nodes): return nodes.allSatisfy(\.canBeEmpty)
        case let .alternation(nodes): return nodes.contains(where: \.canBeEmpty)
        case let .repetition(node, min, _, _, _): return min == 0 || node.canBeEmpty
        case let .atomic(node): return node.canBeEmpty
        }
    }
}

// MARK: - Parser

struct RegexParser {
    private let scalars: [Unicode.Scalar]
    private let pattern: String
    private var index = 0
    private var ignoreCase = false
    private var dotAll = false
    /// Groups and classes entered at the current position (the recursion depth of the parser).
    private var depth = 0

    init(pattern: String) {
        self.pattern = pattern
        scalars = Array(pattern.unicodeScalars)
    }

    private func error(_ message: String) -> TokenizerError { .invalidRegex(pattern, message) }

    private var atEnd: Bool { index >= scalars.count }
    private func peek(_ offset: Int = 0) -> Unicode.Scalar? {
        index + offset < scalars.count ? scalars[index + offset] : nil
    }

    mutating func parse() throws -> RegexNode {
        let node = try parseAlternation().node
        if !atEnd { throw error("unbalanced \")\" at position \(index)") }
        return node
    }

    /// Refuses nesting deeper than TokenizerLimits.maxRegexNesting: `height` levels of groups, classes and
    /// quantifiers below the `depth` groups and classes around the current position. Every recursive walk of the
    /// syntax tree (the parser, the node properties, the compiler, the matcher's look-arounds, freeing the tree)
    /// goes at most this deep, so a crafted pattern cannot overflow the stack.
    private func checkNesting(_ height: Int) throws {
        guard depth + height <= TokenizerLimits.maxRegexNesting else {
            throw error("groups, classes and quantifiers nest more than \(TokenizerLimits.maxRegexNesting) deep "
                        + "(at position \(index))")
        }
    }

    /// An alternation and its nesting height (groups, classes and quantifiers inside it).
    private mutating func parseAlternation() throws -> (node: RegexNode, height: Int) {
        // Flags set by (?i) inside a group last until the group ends.
        let savedIgnoreCase = ignoreCase, savedDotAll = dotAll
        defer { ignoreCase = savedIgnoreCase; dotAll = savedDotAll }
        let first = try parseSequence()
        var branches = [first.node], height = first.height
        while peek() == "|" {
            index += 1
            let (branch, branchHeight) = try parseSequence()
            branches.append(branch)
            height = max(height, branchHeight)
        }
        return (branches.count == 1 ? branches[0] : .alternation(branches), height)
    }

    private mutating func parseSequence() throws -> (node: RegexNode, height: Int) {
        var nodes: [RegexNode] = []
        var height = 0
        while let c = peek(), c != "|", c != ")" {
            guard let parsed = try parseAtom() else { continue }
            var atom = parsed.node, atomHeight = parsed.height
            while let quantified = try parseQuantifier(atom) {
                atom = quantified
                atomHeight += 1
                try checkNesting(atomHeight)
            }
            nodes.append(atom)
            height = max(height, atomHeight)
        }
        return (nodes.count == 1 ? nodes[0] : (nodes.isEmpty ? .empty : .sequence(nodes)), height)
    }

    /// Reads digits; nil if there are none.
    private mutating func parseNumber() -> Int? {
        var value = 0, digits = 0
        while let c = peek(), c.value >= 0x30 && c.value <= 0x39 {
            value = min(value * 10 + Int(c.value - 0x30), 1_000_000)
            digits += 1
            index += 1
        }
        return digits > 0 ? value : nil
    }

    private mutating func parseQuantifier(_ atom: RegexNode) throws -> RegexNode? {
        guard let c = peek() else { return nil }
        var minimum = 0, maximum: Int? = nil
        var isInterval = false
        switch c {
        case "*": index += 1
        case "+": minimum = 1; index += 1
        case "?": maximum = 1; index += 1
        case "{":
            // {n} {n,} {n,m} {,m}; anything else makes "{" a literal.
            let start = index
            index += 1
            let low = parseNumber()
            if peek() == "," {
                index += 1
                let high = parseNumber()
                guard peek() == "}", low != nil || high != nil else { index = start; return nil }
                minimum = low ?? 0
                maximum = high
            } else {
                guard peek() == "}", let low else { index = start; return nil }
                minimum = low
                maximum = low
            }
            index += 1
            if let maximum, maximum < minimum { throw error("interval {\(minimum),\(maximum)} is empty") }
            isInterval = true
        default:
            return nil
        }
        if case .anchor = atom { throw error("quantifier after an anchor at position \(index - 1)") }
        if case .look = atom { throw error("quantifier after a look-around at position \(index - 1)") }
        // Oniguruma ends a loop whose body matched empty by its own rule (an empty check that also compares
        // captures), which differs from ending it at the first empty iteration: refused rather than matched
        // differently. Split patterns in real tokenizers never repeat a body that can be empty.
        if maximum.map({ $0 > 1 }) ?? true, atom.canBeEmpty {
            throw error("a repeated group that can match empty, before position \(index), is not supported")
        }
        var greedy = true, possessive = false
        if peek() == "?" {
            greedy = false
            index += 1
        } else if peek() == "+" && !isInterval {
            possessive = true
            index += 1
        }
        return .repetition(atom, min: minimum, max: maximum, greedy: greedy, possessive: possessive)
    }

    /// One atom and its nesting height; nil for constructs that produce nothing (a flag group such as "(?i)", a
    /// comment).
    private mutating func parseAtom() throws -> (node: RegexNode, height: Int)? {
        guard let c = peek() else { throw error("unexpected end") }
        index += 1
        switch c {
        case ".": return (.any(dotAll: dotAll), 0)
        case "^": return (.anchor(.lineStart), 0)
        case "$": return (.anchor(.lineEnd), 0)
        case "[":
            let (set, height) = try parseClass()
            return (.set(set), height)
        case "(": return try parseGroup()
        case "*", "+", "?": throw error("nothing to repeat at position \(index - 1)")
        case "\\": return (try parseEscape(), 0)
        default: return (try literal(c.value), 0)
        }
    }

    /// A literal scalar. Under (?i) Oniguruma also matches multi-scalar case foldings (ß matches "ss"), which this
    /// matcher does not do, so such literals are refused rather than matched differently.
    private func literal(_ value: UInt32) throws -> RegexNode {
        if ignoreCase, let scalar = Unicode.Scalar(value),
           scalar.properties.uppercaseMapping.unicodeScalars.count > 1
            || scalar.properties.lowercaseMapping.unicodeScalars.count > 1 {
            throw error("multi-character case folding of \(String(scalar).debugDescription) under (?i) is not supported")
        }
        return .literal(value, ignoreCase: ignoreCase)
    }

    /// A group after its "(", and its nesting height (one more than its content's).
    private mutating func parseGroup() throws -> (node: RegexNode, height: Int)? {
        depth += 1
        defer { depth -= 1 }
        try checkNesting(0)
        var kind: (ahead: Bool, negated: Bool)? = nil
        var atomic = false
        if peek() == "?" {
            index += 1
            guard let c = peek() else { throw error("unterminated group") }
            switch c {
            case ":": index += 1
            case "=": index += 1; kind = (true, false)
            case "!": index += 1; kind = (true, true)
            case ">": index += 1; atomic = true
            case "#":
                while let d = peek(), d != ")" { index += 1 }
                guard peek() == ")" else { throw error("unterminated comment") }
                index += 1
                return nil
            case "<" where peek(1) == "=" || peek(1) == "!":
                kind = (false, peek(1) == "!")
                index += 2
            case "<", "'":
                let close: Unicode.Scalar = c == "<" ? ">" : "'"
                index += 1
                while let d = peek(), d != close { index += 1 }
                guard peek() == close else { throw error("unterminated group name") }
                index += 1
            default:
                // Flags: (?imx-imx) or (?imx-imx:...)
                var on = true
                var newIgnoreCase = ignoreCase, newDotAll = dotAll
                while let d = peek(), d != ":", d != ")" {
                    switch d {
                    case "-": on = false
                    case "i": newIgnoreCase = on
                    case "m": newDotAll = on
                    case "x": throw error("extended mode (?x) is not supported")
                    default: throw error("unsupported group syntax \"(?\(d)\" at position \(index)")
                    }
                    index += 1
                }
                guard let end = peek() else { throw error("unterminated group") }
                index += 1
                if end == ")" {
                    ignoreCase = newIgnoreCase
                    dotAll = newDotAll
                    return nil
                }
                let savedIgnoreCase = ignoreCase, savedDotAll = dotAll
                ignoreCase = newIgnoreCase
                dotAll = newDotAll
                let (inner, height) = try parseAlternation()
                ignoreCase = savedIgnoreCase
                dotAll = savedDotAll
                guard peek() == ")" else { throw error("missing \")\"") }
                index += 1
                return (inner, height + 1)
            }
        }
        let (inner, height) = try parseAlternation()
        guard peek() == ")" else { throw error("missing \")\"") }
        index += 1
        if let kind {
            if !kind.ahead && inner.lengthRange.max == nil {
                throw error("look-behind of unbounded length is not supported")
            }
            return (.look(inner, ahead: kind.ahead, negated: kind.negated), height + 1)
        }
        if atomic { return (.atomic(inner), height + 1) }
        return (inner, height + 1)
    }

    private mutating func parseHex(maxDigits: Int, braced: Bool) throws -> UInt32 {
        var value: UInt32 = 0, digits = 0
        while digits < maxDigits, let c = peek(), let digit = hexValue(c) {
            value = value * 16 + digit
            digits += 1
            index += 1
        }
        if braced {
            guard peek() == "}" else { throw error("unterminated \\x{...}") }
            index += 1
        }
        guard digits > 0, Unicode.Scalar(value) != nil else { throw error("invalid hexadecimal escape") }
        return value
    }

    private func hexValue(_ c: Unicode.Scalar) -> UInt32? {
        switch c.value {
        case 0x30...0x39: return c.value - 0x30
        case 0x41...0x46: return c.value - 0x41 + 10
        case 0x61...0x66: return c.value - 0x61 + 10
        default: return nil
        }
    }

    /// A single-scalar escape (shared by atoms and classes); nil if `c` is not one.
    private mutating func parseCharacterEscape(_ c: Unicode.Scalar) throws -> UInt32? {
        switch c {
        case "t": return 0x09
        case "n": return 0x0A
        case "r": return 0x0D
        case "f": return 0x0C
        case "v": return 0x0B
        case "a": return 0x07
        case "e": return 0x1B
        case "0":
            var value: UInt32 = 0, digits = 0
            while digits < 2, let d = peek(), d.value >= 0x30 && d.value <= 0x37 {
                value = value * 8 + d.value - 0x30
                digits += 1
                index += 1
            }
            return value
        case "x":
            if peek() == "{" {
                index += 1
                return try parseHex(maxDigits: 8, braced: true)
            }
            return try parseHex(maxDigits: 2, braced: false)
        case "u": return try parseHex(maxDigits: 4, braced: false)
        default:
            if c.properties.isAlphabetic || (c.value >= 0x30 && c.value <= 0x39) { return nil }
            return c.value  // escaped punctuation or symbol: itself
        }
    }

    /// A shorthand class item (\s \d \w \h \p{..}, negated forms); nil if `c` is not one.
    private mutating func parseClassEscape(_ c: Unicode.Scalar, bare: Bool) throws -> ScalarSet.Item? {
        switch c {
        case "s": return .whitespace(negated: false)
        case "S": return .whitespace(negated: true)
        case "d": return .categories(GeneralCategory.Nd.mask, negated: false)
        case "D": return .categories(GeneralCategory.Nd.mask, negated: true)
        case "w": return .word(negated: false, bare: bare)
        case "W": return .word(negated: true, bare: bare)
        case "h": return .hexDigit(negated: false)
        case "H": return .hexDigit(negated: true)
        case "p", "P":
            var negated = c == "P"
            var name = ""
            if peek() == "{" {
                index += 1
                if peek() == "^" {
                    negated.toggle()
                    index += 1
                }
                while let d = peek(), d != "}" {
                    name.unicodeScalars.append(d)
                    index += 1
                }
                guard peek() == "}" else { throw error("unterminated \\p{...}") }
                index += 1
            } else if let d = peek() {
                name.unicodeScalars.append(d)
                index += 1
            }
            return try propertyItem(name, negated: negated)
        default: return nil
        }
    }

    private func propertyItem(_ name: String, negated: Bool) throws -> ScalarSet.Item {
        let key = name.lowercased().replacingOccurrences(of: "_", with: "").replacingOccurrences(of: " ", with: "")
            .replacingOccurrences(of: "-", with: "")
        if key == "alphabetic" || key == "alpha" { return .alphabetic(negated: negated) }
        if key == "whitespace" || key == "space" { return .whitespace(negated: negated) }
        if key == "word" { return .word(negated: negated, bare: false) }
        let groups: [String: CategoryMask] = [
            "l": .letter, "letter": .letter, "m": .mark, "mark": .mark, "combiningmark": .mark,
            "n": .number, "number": .number, "p": .punctuation, "punctuation": .punctuation, "punct": .punctuation,
            "s": .symbol, "symbol": .symbol, "z": .separator, "separator": .separator, "c": .other, "other": .other,
            "lc": [GeneralCategory.Lu.mask, GeneralCategory.Ll.mask, GeneralCategory.Lt.mask],
            "casedletter": [GeneralCategory.Lu.mask, GeneralCategory.Ll.mask, GeneralCategory.Lt.mask],
            "digit": GeneralCategory.Nd.mask, "any": CategoryMask(rawValue: (1 << 30) - 1),
        ]
        if let mask = groups[key] { return .categories(mask, negated: negated) }
        let longNames: [String: GeneralCategory] = [
            "uppercaseletter": .Lu, "lowercaseletter": .Ll, "titlecaseletter": .Lt, "modifierletter": .Lm,
            "otherletter": .Lo, "nonspacingmark": .Mn, "spacingmark": .Mc, "enclosingmark": .Me,
            "decimalnumber": .Nd, "letternumber": .Nl, "othernumber": .No, "connectorpunctuation": .Pc,
            "dashpunctuation": .Pd, "openpunctuation": .Ps, "closepunctuation": .Pe, "initialpunctuation": .Pi,
            "finalpunctuation": .Pf, "otherpunctuation": .Po, "mathsymbol": .Sm, "currencysymbol": .Sc,
            "modifiersymbol": .Sk, "othersymbol": .So, "spaceseparator": .Zs, "lineseparator": .Zl,
            "paragraphseparator": .Zp, "control": .Cc, "cntrl": .Cc, "format": .Cf, "surrogate": .Cs,
            "privateuse": .Co, "unassigned": .Cn,
        ]
        if let category = longNames[key] { return .categories(category.mask, negated: negated) }
        if let category = GeneralCategory.allCases.first(where: { "\($0)".lowercased() == key }) {
            return .categories(category.mask, negated: negated)
        }
        throw error("unsupported property \\p{\(name)} (general categories, Alphabetic and White_Space only)")
    }

    private mutating func parseEscape() throws -> RegexNode {
        guard let c = peek() else { throw error("trailing backslash") }
        index += 1
        switch c {
        case "A": return .anchor(.textStart)
        case "z": return .anchor(.textEnd)
        case "Z": return .anchor(.textEndBeforeNewline)
        case "b": return .anchor(.wordBoundary)
        case "B": return .anchor(.notWordBoundary)
        default: break
        }
        if let item = try parseClassEscape(c, bare: true) {
            var set = ScalarSet(items: [item])
            set.finish()
            return .set(set)
        }
        if let value = try parseCharacterEscape(c) { return try literal(value) }
        if c.value >= 0x31 && c.value <= 0x39 || c == "k" || c == "g" {
            throw error("backreferences and subroutine calls (\\\(c)) are not supported")
        }
        throw error("unsupported escape \\\(c)")
    }

    /// A class after its "[", and its nesting height (one more than the deepest class inside it).
    private mutating func parseClass() throws -> (set: ScalarSet, height: Int) {
        depth += 1
        defer { depth -= 1 }
        try checkNesting(0)
        var height = 1
        var set = ScalarSet()
        set.ignoreCase = ignoreCase
        if peek() == "^" {
            set.negated = true
            index += 1
        }
        var first = true
        while true {
            guard let c = peek() else { throw error("unterminated character class") }
            if c == "]" && !first {
                index += 1
                break
            }
            first = false
            if c == "[" {
                if peek(1) == ":" {
                    set.items.append(try parsePosixClass())
                } else {
                    index += 1
                    let (inner, innerHeight) = try parseClass()
                    set.items.append(.set(inner))
                    height = max(height, innerHeight + 1)
                }
                continue
            }
            if c == "&" && peek(1) == "&" { throw error("class intersection (&&) is not supported") }
            index += 1
            var low: UInt32
            if c == "\\" {
                guard let e = peek() else { throw error("trailing backslash") }
                index += 1
                if let item = try parseClassEscape(e, bare: false) {
                    set.items.append(item)
                    continue
                }
                if e == "b" {
                    low = 0x08
                } else if let value = try parseCharacterEscape(e) {
                    low = value
                } else {
                    throw error("unsupported escape \\\(e) in a class")
                }
            } else {
                low = c.value
            }
            // A range low-high, unless "-" is the last character of the class.
            if peek() == "-", let after = peek(1), after != "]" {
                index += 1
                var high: UInt32
                if after == "\\" {
                    index += 1
                    guard let e = peek() else { throw error("trailing backslash") }
                    index += 1
                    guard let value = try parseCharacterEscape(e) else { throw error("invalid range end \\\(e)") }
                    high = value
                } else {
                    index += 1
                    high = after.value
                }
                guard high >= low else { throw error("invalid range in a class") }
                set.items.append(.range(low, high))
            } else {
                set.items.append(.range(low, low))
            }
        }
        set.finish()
        return (set, height)
    }

    private mutating func parsePosixClass() throws -> ScalarSet.Item {
        // At "[:": read up to ":]".
        index += 2
        var negated = false
        if peek() == "^" {
            negated = true
            index += 1
        }
        var name = ""
        while let c = peek(), c != ":" {
            name.unicodeScalars.append(c)
            index += 1
        }
        guard peek() == ":", peek(1) == "]" else { throw error("unterminated POSIX class") }
        index += 2
        switch name {
        case "alpha": return .alphabetic(negated: negated)
        case "digit": return .categories(GeneralCategory.Nd.mask, negated: negated)
        case "space": return .whitespace(negated: negated)
        case "word": return .word(negated: negated, bare: false)
        case "xdigit": return .hexDigit(negated: negated)
        case "alnum":
            var inner = ScalarSet(items: [.alphabetic(negated: false), .categories(GeneralCategory.Nd.mask, negated: false)])
            inner.negated = negated
            inner.finish()
            return .set(inner)
        // [:upper:] and [:lower:] are Oniguruma's Uppercase/Lowercase properties (Ⅰ and ª included), not Lu/Ll.
        default: throw error("unsupported POSIX class [:\(name):]")
        }
    }
}

// MARK: - Program

enum RegexInstruction: Sendable {
    case scalar(UInt32)
    /// Case-insensitive scalar: compares folded values.
    case foldedScalar(UInt32)
    case set(Int)
    case any
    case anyButNewline
    /// Try the first target, backtrack to the second.
    case split(Int, Int)
    case jump(Int)
    case anchor(RegexAnchor)
    /// A look-around; a look-behind body is tried from the start positions `minLength...maxLength` back.
    case look(Int, ahead: Bool, negated: Bool, minLength: Int, maxLength: Int)
    case atomic(Int)
    case match
}

struct RegexProgram: Sendable {
    /// programs[0] is the pattern; the others are the bodies of look-arounds and atomic groups.
    var programs: [[RegexInstruction]] = [[]]
    var sets: [ScalarSet] = []
}

enum RegexCompiler {
    static func compile(_ node: RegexNode) -> RegexProgram {
        var program = RegexProgram()
        var main: [RegexInstruction] = []
        emit(node, into: &main, program: &program)
        main.append(.match)
        program.programs[0] = main
        return program
    }

    private static func subprogram(_ node: RegexNode, _ program: inout RegexProgram) -> Int {
        program.programs.append([])
        let index = program.programs.count - 1
        var code: [RegexInstruction] = []
        emit(node, into: &code, program: &program)
        code.append(.match)
        program.programs[index] = code
        return index
    }

    private static func emit(_ node: RegexNode, into code: inout [RegexInstruction], program: inout RegexProgram) {
        switch node {
        case .empty:
            break
        case let .literal(value, ignoreCase):
            let folded = CaseMapping.fold(value)
            if ignoreCase && (folded != value || !CaseMapping.variants(value).isEmpty) {
                code.append(.foldedScalar(folded))
            } else {
                code.append(.scalar(value))
            }
        case let .set(set):
            program.sets.append(set)
            code.append(.set(program.sets.count - 1))
        case let .any(dotAll):
            code.append(dotAll ? .any : .anyButNewline)
        case let .sequence(nodes):
            for node in nodes { emit(node, into: &code, program: &program) }
        case let .alternation(branches):
            // split(L1, next); L1: branch; jump end; next: split(L2, ...) ...; last branch
            var jumps: [Int] = []
            for (i, branch) in branches.enumerated() {
                if i < branches.count - 1 {
                    let split = code.count
                    code.append(.split(split + 1, -1))
                    emit(branch, into: &code, program: &program)
                    jumps.append(code.count)
                    code.append(.jump(-1))
                    code[split] = .split(split + 1, code.count)
                } else {
                    emit(branch, into: &code, program: &program)
                }
            }
            for jump in jumps { code[jump] = .jump(code.count) }
        case let .repetition(body, minimum, maximum, greedy, possessive):
            if possessive {
                let index = subprogram(.repetition(body, min: minimum, max: maximum, greedy: true, possessive: false),
                                       &program)
                code.append(.atomic(index))
                return
            }
            for _ in 0..<minimum { emit(body, into: &code, program: &program) }
            if let maximum {
                // Optional copies, nested: (x(x)?)?
                var exits: [Int] = []
                for _ in minimum..<maximum {
                    exits.append(code.count)
                    code.append(.split(-1, -1))
                    emit(body, into: &code, program: &program)
                }
                let end = code.count
                for exit in exits { code[exit] = greedy ? .split(exit + 1, end) : .split(end, exit + 1) }
            } else {
                let loop = code.count
                code.append(.split(-1, -1))
                // The body cannot match empty (RegexParser refuses such loops), so every iteration moves on.
                emit(body, into: &code, program: &program)
                code.append(.jump(loop))
                let end = code.count
                code[loop] = greedy ? .split(loop + 1, end) : .split(end, loop + 1)
            }
        case let .look(body, ahead, negated):
            let range = body.lengthRange
            code.append(.look(subprogram(body, &program), ahead: ahead, negated: negated, minLength: range.min,
                              maxLength: range.max ?? 0))
        case let .atomic(body):
            code.append(.atomic(subprogram(body, &program)))
        case let .anchor(anchor):
            code.append(.anchor(anchor))
        }
    }
}

// MARK: - Matching

/// Runs a program over one text with an explicit backtracking stack.
struct RegexMachine {
    let program: RegexProgram
    let text: UnsafeBufferPointer<Unicode.Scalar>

    /// Backtracking entries (pc, position), reused across searches.
    private var stack: [(Int, Int)] = []
    /// Instructions left before the search gives up.
    private(set) var budget: Int

    init(program: RegexProgram, text: UnsafeBufferPointer<Unicode.Scalar>, budget: Int) {
        self.program = program
        self.text = text
        self.budget = budget
        stack.reserveCapacity(64)
    }

    /// The leftmost match starting at or after `from`: (start, end).
    /// Throws `budgetError` when the step budget runs out.
    mutating func search(from: Int, budgetError: @autoclosure () -> TokenizerError) throws -> (Int, Int)? {
        for start in from...text.count {
            let end = run(0, at: start, requiredEnd: nil, stack: &stack, budget: &budget)
            if budget <= 0 { throw budgetError() }
            if let end { return (start, end) }
        }
        return nil
    }

    private func isWord(_ position: Int) -> Bool {
        position >= 0 && position < text.count && UnicodeProperties.isRegexWord(text[position].value, latin1Table: true)
    }

    private func anchorHolds(_ anchor: RegexAnchor, _ position: Int) -> Bool {
        let n = text.count
        switch anchor {
        case .lineStart: return position == 0 || text[position - 1] == "\n"
        case .lineEnd: return position == n || text[position] == "\n"
        case .textStart: return position == 0
        case .textEnd: return position == n
        case .textEndBeforeNewline: return position == n || (position == n - 1 && text[position] == "\n")
        case .wordBoundary: return isWord(position - 1) != isWord(position)
        case .notWordBoundary: return isWord(position - 1) == isWord(position)
        }
    }

    /// Runs programs[index] from `position`; the end of the first match found (which must be `requiredEnd` if
    /// given), or nil. Each instruction costs one step of `budget`; at zero the run stops with nil.
    private func run(_ index: Int, at position: Int, requiredEnd: Int?, stack: inout [(Int, Int)],
                     budget: inout Int) -> Int? {
        let code = program.programs[index]
        let n = text.count
        let base = stack.count
        defer { stack.removeSubrange(base...) }
        var pc = 0, pos = position
        while true {
            budget -= 1
            if budget <= 0 { return nil }
            var failed = false
            switch code[pc] {
            case let .scalar(value):
                if pos < n && text[pos].value == value { pos += 1; pc += 1 } else { failed = true }
            case let .foldedScalar(value):
                if pos < n && CaseMapping.fold(text[pos].value) == value { pos += 1; pc += 1 } else { failed = true }
            case let .set(set):
                if pos < n && program.sets[set].contains(text[pos].value) { pos += 1; pc += 1 } else { failed = true }
            case .any:
                if pos < n { pos += 1; pc += 1 } else { failed = true }
            case .anyButNewline:
                if pos < n && text[pos] != "\n" { pos += 1; pc += 1 } else { failed = true }
            case let .split(first, second):
                stack.append((second, pos))
                pc = first
            case let .jump(target):
                pc = target
            case let .anchor(anchor):
                if anchorHolds(anchor, pos) { pc += 1 } else { failed = true }
            case let .look(sub, ahead, negated, minLength, maxLength):
                var found = false
                if ahead {
                    found = run(sub, at: pos, requiredEnd: nil, stack: &stack, budget: &budget) != nil
                } else {
                    var start = pos - minLength
                    while start >= max(0, pos - maxLength) && !found {
                        found = run(sub, at: start, requiredEnd: pos, stack: &stack, budget: &budget) != nil
                        start -= 1
                    }
                }
                if budget <= 0 { return nil }
                if found != negated { pc += 1 } else { failed = true }
            case let .atomic(sub):
                let end = run(sub, at: pos, requiredEnd: nil, stack: &stack, budget: &budget)
                if budget <= 0 { return nil }
                if let end {
                    pos = end
                    pc += 1
                } else {
                    failed = true
                }
            case .match:
                if requiredEnd == nil || requiredEnd == pos { return pos }
                failed = true
            }
            if failed {
                // Backtrack to the last choice point.
                guard stack.count > base, let (target, saved) = stack.popLast() else { return nil }
                pc = target
                pos = saved
            }
        }
    }
}
