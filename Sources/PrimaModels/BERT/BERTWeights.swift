import PrimaJSON

/// BERT's configuration (transformers `BertConfig`) and weight layout (Formats/prima-checkpoint.md §4.4).
/// Clinical ModernBERT's weights are BERT-shaped: this is the architecture that loads them.
public struct BERTConfig: TextEncoderConfig, Equatable {
    public static let architecture = Architecture.bert

    public let vocabSize: Int
    public let hiddenSize: Int          // C
    public let intermediateSize: Int    // I
    public let layerCount: Int
    public let headCount: Int
    public let hiddenAct: String
    public let layerNormEps: Double
    public let maxPositionEmbeddings: Int
    public let typeVocabSize: Int
    public let padTokenID: Int
    public let tieWordEmbeddings: Bool

    public init(json: JSONObject) throws(ModelConfigError) {
        let config = ConfigReader(json: json)
        vocabSize = try config.size("vocab_size")
        hiddenSize = try config.size("hidden_size")
        intermediateSize = try config.size("intermediate_size")
        layerCount = try config.size("num_hidden_layers")
        headCount = try config.size("num_attention_heads")
        try ConfigReader.requireDivisible(hiddenSize, by: headCount, "hidden_size must be a multiple of num_attention_heads")
        try config.requireDerivedHeadDim(hiddenSize: hiddenSize, headCount: headCount)
        hiddenAct = try config.activation("hidden_act", default: "gelu")
        layerNormEps = try config.epsilon("layer_norm_eps", default: 1e-12)
        maxPositionEmbeddings = try config.size("max_position_embeddings", default: 512)
        typeVocabSize = try config.size("type_vocab_size", default: 2)
        padTokenID = try config.int("pad_token_id", default: 0)
        tieWordEmbeddings = try config.bool("tie_word_embeddings", default: true)
        let positions = try config.string("position_embedding_type", default: "absolute")
        guard positions == "absolute" else {
            throw ModelConfigError("config.json: position_embedding_type \"\(positions)\" is not supported (only absolute)")
        }
    }

    public var fields: [(String, ConfigValue)] {
        [("vocab_size", .int(vocabSize)), ("hidden_size", .int(hiddenSize)), ("intermediate_size", .int(intermediateSize)),
         ("num_hidden_layers", .int(layerCount)), ("num_attention_heads", .int(headCount)),
         ("hidden_act", .string(hiddenAct)), ("layer_norm_eps", .double(layerNormEps)),
         ("max_position_embeddings", .int(maxPositionEmbeddings)), ("type_vocab_size", .int(typeVocabSize)),
         ("pad_token_id", .int(padTokenID)), ("tie_word_embeddings", .bool(tieWordEmbeddings))]
    }

    public var expectedTensors: [String: ExpectedTensor] {
        let c = hiddenSize
        var t = ExpectedTensorBuilder()
        t.require("embed.tokens", [vocabSize, c])
        t.require("embed.positions", [maxPositionEmbeddings, c])
        t.require("embed.token_types", [typeVocabSize, c])
        t.norm("embed.norm", width: c, bias: true)
        for n in 0..<layerCount {
            let l = "layers.\(n)."
            for projection in ["q", "k", "v", "o"] { t.linear(l + "attn." + projection, out: c, in: c, bias: true) }
            t.norm(l + "attn_out_norm", width: c, bias: true)
            t.linear(l + "mlp.up", out: intermediateSize, in: c, bias: true)
            t.linear(l + "mlp.down", out: c, in: intermediateSize, bias: true)
            t.norm(l + "mlp_out_norm", width: c, bias: true)
        }
        t.linear("pooler.dense", out: c, in: c, bias: true, required: false)
        t.linear("mlm.dense", out: c, in: c, bias: true, required: false)
        t.norm("mlm.norm", width: c, bias: true, required: false)
        t.linear("mlm.decoder", out: vocabSize, in: c, bias: true, required: false)
        return t.tensors
    }

    public var tiedPairs: [TiedPair] {
        tieWordEmbeddings ? [TiedPair(alias: "mlm.decoder.weight", target: "embed.tokens", head: "mlm.dense.weight")] : []
    }

    /// Hugging Face ↔ canonical names (§4.4).
    public static let names = NameTable(
        bodyPrefixes: ["bert.", ""],
        body: [
            ("embeddings.word_embeddings.weight", "embed.tokens"),
            ("embeddings.position_embeddings.weight", "embed.positions"),
            ("embeddings.token_type_embeddings.weight", "embed.token_types"),
            ("embeddings.LayerNorm.weight", "embed.norm.weight"),
            ("embeddings.LayerNorm.bias", "embed.norm.bias"),
            ("encoder.layer.N.attention.self.query.weight", "layers.N.attn.q.weight"),
            ("encoder.layer.N.attention.self.query.bias", "layers.N.attn.q.bias"),
            ("encoder.layer.N.attention.self.key.weight", "layers.N.attn.k.weight"),
            ("encoder.layer.N.attention.self.key.bias", "layers.N.attn.k.bias"),
            ("encoder.layer.N.attention.self.value.weight", "layers.N.attn.v.weight"),
            ("encoder.layer.N.attention.self.value.bias", "layers.N.attn.v.bias"),
            ("encoder.layer.N.attention.output.dense.weight", "layers.N.attn.o.weight"),
            ("encoder.layer.N.attention.output.dense.bias", "layers.N.attn.o.bias"),
            ("encoder.layer.N.attention.output.LayerNorm.weight", "layers.N.attn_out_norm.weight"),
            ("encoder.layer.N.attention.output.LayerNorm.bias", "layers.N.attn_out_norm.bias"),
            ("encoder.layer.N.intermediate.dense.weight", "layers.N.mlp.up.weight"),
            ("encoder.layer.N.intermediate.dense.bias", "layers.N.mlp.up.bias"),
            ("encoder.layer.N.output.dense.weight", "layers.N.mlp.down.weight"),
            ("encoder.layer.N.output.dense.bias", "layers.N.mlp.down.bias"),
            ("encoder.layer.N.output.LayerNorm.weight", "layers.N.mlp_out_norm.weight"),
            ("encoder.layer.N.output.LayerNorm.bias", "layers.N.mlp_out_norm.bias"),
            ("pooler.dense.weight", "pooler.dense.weight"),
            ("pooler.dense.bias", "pooler.dense.bias"),
        ],
        heads: [
            ("cls.predictions.transform.dense.weight", "mlm.dense.weight"),
            ("cls.predictions.transform.dense.bias", "mlm.dense.bias"),
            ("cls.predictions.transform.LayerNorm.weight", "mlm.norm.weight"),
            ("cls.predictions.transform.LayerNorm.bias", "mlm.norm.bias"),
            ("cls.predictions.decoder.weight", "mlm.decoder.weight"),
            ("cls.predictions.bias", "mlm.decoder.bias"),
        ],
        dropped: [
            ("embeddings.position_ids", "legacy position-id buffer (recomputed at run time)"),
            ("cls.seq_relationship.", "next-sentence-prediction head (not used by PRIMA)"),
            ("classifier.", "sequence-classification head (not used by PRIMA)"),
        ],
        duplicateNames: ["cls.predictions.decoder.bias": "cls.predictions.bias"])
}
