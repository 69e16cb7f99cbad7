// Post-processors: add the model's special tokens around the encoded texts and assign type ids (tokenizers
// src/processors/). The tokenizer first sets every encoding's type ids to its index (0, or 1 for the second of a
// pair), calls `process`, then concatenates the results (PostProcessor::process in src/tokenizer/mod.rs).

protocol PostProcessor: Sendable {
    /// How many tokens `process` adds with add_special_tokens, for truncation to leave room for them.
    func addedTokens(isPair: Bool) -> Int
    func process(_ encodings: [Encoding], addSpecialTokens: Bool) -> [Encoding]
}

/// `TemplateProcessing`: templates of special tokens and sequences ($A, $B), each piece with its type id.
struct TemplateProcessor: PostProcessor {
    enum Piece: Sendable {
        case sequence(second: Bool, typeId: Int)
        case special(ids: [Int], typeId: Int)
    }
    let single: [Piece]
    let pair: [Piece]

    private static func count(_ template: [Piece]) -> Int {
        template.reduce(0) { total, piece in
            if case let .special(ids, _) = piece { return total + ids.count }
            return total
        }
    }

    func addedTokens(isPair: Bool) -> Int { Self.count(isPair ? pair : single) }

    func process(_ encodings: [Encoding], addSpecialTokens: Bool) -> [Encoding] {
        let template = encodings.count == 2 ? pair : single
        var result: [Encoding] = []
        for piece in template {
            switch piece {
            case let .sequence(second, typeId):
                var encoding = encodings[second && encodings.count > 1 ? 1 : 0]
                encoding.setTypeIds(typeId)
                result.append(encoding)
            case let .special(ids, typeId):
                if addSpecialTokens { result.append(Encoding(special: ids, typeId: typeId)) }
            }
        }
        return result
    }

    static func load(_ node: JSONNode) throws -> TemplateProcessor {
        var specials: [String: [Int]] = [:]
        if let map = try node.optional("special_tokens") {
            for key in try map.keys() {
                let entry = try map.required(key)
                specials[key] = try entry.required("ids").array().map { try $0.int() }
            }
        }
        func template(_ name: String) throws -> [Piece] {
            guard let list = try node.optional(name) else { return [] }
            return try list.array().map { item in
                if let sequence = try item.member("Sequence") {
                    let id = try sequence.required("id").string()
                    guard id == "A" || id == "B" else { throw sequence.error("sequence id must be \"A\" or \"B\"") }
                    return .sequence(second: id == "B", typeId: try sequence.optional("type_id")?.int() ?? 0)
                }
                if let special = try item.member("SpecialToken") {
                    let id = try special.required("id").string()
                    guard let ids = specials[id] else {
                        throw special.error("special token \(id.debugDescription) is not in special_tokens")
                    }
                    return .special(ids: ids, typeId: try special.optional("type_id")?.int() ?? 0)
                }
                throw item.error("expected {\"Sequence\": ...} or {\"SpecialToken\": ...}")
            }
        }
        return TemplateProcessor(single: try template("single"), pair: try template("pair"))
    }
}

/// `BertProcessing`: [CLS] A [SEP] and [CLS] A [SEP] B [SEP], type ids 0 then 1 (processors/bert.rs).
struct BertProcessor: PostProcessor {
    let cls: Int
    let sep: Int

    func addedTokens(isPair: Bool) -> Int { isPair ? 3 : 2 }

    func process(_ encodings: [Encoding], addSpecialTokens: Bool) -> [Encoding] {
        guard addSpecialTokens else { return encodings }
        var result = [Encoding(special: [cls], typeId: 0), encodings[0], Encoding(special: [sep], typeId: 0)]
        if encodings.count > 1 {
            result.append(encodings[1])
            result.append(Encoding(special: [sep], typeId: 1))
        }
        return result
    }
}

/// `RobertaProcessing`: <s> A </s> and <s> A </s></s> B </s>, every type id 0 (processors/roberta.rs).
struct RobertaProcessor: PostProcessor {
    let cls: Int
    let sep: Int

    func addedTokens(isPair: Bool) -> Int { isPair ? 4 : 2 }

    func process(_ encodings: [Encoding], addSpecialTokens: Bool) -> [Encoding] {
        let zeroed = encodings.map { encoding -> Encoding in
            var copy = encoding
            copy.setTypeIds(0)
            return copy
        }
        guard addSpecialTokens else { return zeroed }
        var result = [Encoding(special: [cls], typeId: 0), zeroed[0], Encoding(special: [sep], typeId: 0)]
        if zeroed.count > 1 {
            result.append(Encoding(special: [sep], typeId: 0))
            result.append(zeroed[1])
            result.append(Encoding(special: [sep], typeId: 0))
        }
        return result
    }
}

/// `ByteLevel` as a post-processor only trims offsets, which this implementation does not produce.
struct PassThroughProcessor: PostProcessor {
    func addedTokens(isPair: Bool) -> Int { 0 }
    func process(_ encodings: [Encoding], addSpecialTokens: Bool) -> [Encoding] { encodings }
}

/// `Sequence`: processors in order.
struct SequenceProcessor: PostProcessor {
    let processors: [any PostProcessor]
    func addedTokens(isPair: Bool) -> Int { processors.reduce(0) { $0 + $1.addedTokens(isPair: isPair) } }
    func process(_ encodings: [Encoding], addSpecialTokens: Bool) -> [Encoding] {
        processors.reduce(encodings) { $1.process($0, addSpecialTokens: addSpecialTokens) }
    }
}

enum PostProcessorFactory {
    /// Builds a post-processor from its tokenizer.json object, keyed by the exact `type` strings of the tokenizers
    /// library. Null gives nil (the texts are concatenated, no tokens added).
    static func make(_ node: JSONNode) throws -> (any PostProcessor)? {
        if node.isNull { return nil }
        let type = try node.required("type").string()
        func pair(_ key: String) throws -> Int {
            let value = try node.required(key)
            let items = try value.array()
            guard items.count == 2 else { throw value.error("expected [token, id]") }
            return try items[1].int()
        }
        switch type {
        case "TemplateProcessing": return try TemplateProcessor.load(node)
        case "BertProcessing": return BertProcessor(cls: try pair("cls"), sep: try pair("sep"))
        case "RobertaProcessing": return RobertaProcessor(cls: try pair("cls"), sep: try pair("sep"))
        case "ByteLevel": return PassThroughProcessor()
        case "Sequence":
            let items = try node.required("processors").array()
            return SequenceProcessor(processors: try items.compactMap { try make($0) })
        default:
            throw TokenizerError.unsupportedComponent(node.document.source,
                                                      node.path.isEmpty ? "post_processor" : node.path, type)
        }
    }
}
