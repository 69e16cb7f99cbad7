// Bounded text growth: the stages of a tokenizer pipeline (normalizers, pre-tokenizers, decoders) may add at most
// TokenizerLimits.maxTextGrowth scalars to the text of one encode or decode call. One budget (GrowthBudget.current)
// is shared by every stage and every piece of the call, as RegexBudget is for the regex searches, so that neither
// a chain of stages nor many short pieces multiply it. Each stage is charged by its caller right after it runs
// (the Sequence stages and Tokenizer, which know where the stage is in the file); a Replace, the one stage whose
// growth has no fixed factor, also checks the budget before it allocates its result.

/// The scalars the stages of one encode or decode call may still add to its text.
final class GrowthBudget: @unchecked Sendable {  // one instance per call, used by that call's thread only
    var remaining = TokenizerLimits.maxTextGrowth

    /// The budget of the current encode or decode call (or tokenizer load); nil outside one (each stage then has
    /// a budget of its own).
    @TaskLocal static var current: GrowthBudget?

    /// Runs `body` with a fresh budget shared by every stage it runs.
    static func sharing<R>(_ body: () throws -> R) rethrows -> R {
        try $current.withValue(GrowthBudget(), operation: body)
    }

    /// The error for a stage at `place` (`tokenizer.json: normalizer.normalizers[1]`) that would make the text
    /// `after` scalars long (from `before`) when less growth is left.
    private static func tooLong(_ place: String, before: Int, after: Int) -> TokenizerError {
        .invalid(place, "this stage makes the text \(after) characters long (from \(before)), past the limit of "
                 + "\(TokenizerLimits.maxTextGrowth) characters the tokenizer's stages may add to one text")
    }

    /// Throws unless growing the text from `before` to `after` scalars fits in what is left; charges nothing (the
    /// caller charges the stage once it has run).
    static func check(before: Int, after: Int, place: String) throws {
        guard after > before else { return }
        if after - before > (current?.remaining ?? TokenizerLimits.maxTextGrowth) {
            throw tooLong(place, before: before, after: after)
        }
    }

    /// Charges a stage at `place` that turned `before` scalars into `after`; throws when the budget is exceeded.
    static func charge(from before: Int, to after: Int, place: String) throws {
        guard after > before else { return }
        guard let budget = current else { return try check(before: before, after: after, place: place) }
        guard after - before <= budget.remaining else { throw tooLong(place, before: before, after: after) }
        budget.remaining -= after - before
    }
}

/// Pipeline stages that charge the budget for their own stages (the Sequence stages); their callers do not charge
/// them again.
protocol ChargesItsStages {}

/// Runs one stage that produces `output` from a text of `inputCount` scalars and charges its growth to the budget,
/// unless the stage charges its own stages.
func charged<Output>(_ stage: Any, place: String, inputCount: Int, count: (Output) -> Int,
                     _ run: () throws -> Output) throws -> Output {
    let output = try run()
    if !(stage is ChargesItsStages) { try GrowthBudget.charge(from: inputCount, to: count(output), place: place) }
    return output
}
