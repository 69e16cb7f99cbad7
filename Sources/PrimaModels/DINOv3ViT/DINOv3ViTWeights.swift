import PrimaJSON

/// DINOv3 ViT's configuration (transformers `DINOv3ViTConfig`) and weight layout (Formats/prima-checkpoint.md §4.2).
public struct DINOv3ViTConfig: ArchitectureConfig, Equatable {
    public static let architecture = Architecture.dinov3ViT

    public let hiddenSize: Int          // C
    public let intermediateSize: Int    // I
    public let layerCount: Int          // L
    public let headCount: Int           // H, D = C / H
    public let patchSize: Int           // p
    public let channelCount: Int
    public let registerCount: Int       // R
    public let hiddenAct: String
    public let useGatedMLP: Bool
    public let layerNormEps: Double
    public let ropeTheta: Double
    public let queryBias, keyBias, valueBias, projBias, mlpBias: Bool
    public let imageSize: Int

    public init(json: JSONObject) throws(ModelConfigError) {
        let config = ConfigReader(json: json)
        hiddenSize = try config.size("hidden_size")
        intermediateSize = try config.size("intermediate_size")
        layerCount = try config.size("num_hidden_layers")
        headCount = try config.size("num_attention_heads")
        try ConfigReader.requireDivisible(hiddenSize, by: headCount, "hidden_size must be a multiple of num_attention_heads")
        try config.requireDerivedHeadDim(hiddenSize: hiddenSize, headCount: headCount)
        // 2D RoPE splits each head into four quarter-width frequency bands (y, x, y, x).
        try ConfigReader.requireDivisible(hiddenSize / headCount, by: 4, "head size must be a multiple of 4 for 2D RoPE")
        patchSize = try config.size("patch_size", default: 16)
        channelCount = try config.size("num_channels", default: 3)
        registerCount = try config.count("num_register_tokens", default: 0)
        hiddenAct = try config.activation("hidden_act", default: "gelu")
        useGatedMLP = try config.bool("use_gated_mlp", default: false)
        layerNormEps = try config.epsilon("layer_norm_eps", default: 1e-5)
        var theta = try config.ropeTheta("rope_theta", default: 100)
        if let rope = try config.object("rope_parameters"), rope["rope_theta"] != nil {
            theta = try ConfigReader(json: rope).ropeTheta("rope_theta")
        }
        ropeTheta = theta
        queryBias = try config.bool("query_bias", default: true)
        keyBias = try config.bool("key_bias", default: false)
        valueBias = try config.bool("value_bias", default: true)
        projBias = try config.bool("proj_bias", default: true)
        mlpBias = try config.bool("mlp_bias", default: true)
        imageSize = try config.size("image_size", default: 224)
        guard patchSize <= imageSize else {
            throw ModelConfigError("config.json: patch_size \(patchSize) is larger than image_size \(imageSize)")
        }
    }

    public var fields: [(String, ConfigValue)] {
        [("hidden_size", .int(hiddenSize)), ("intermediate_size", .int(intermediateSize)),
         ("num_hidden_layers", .int(layerCount)), ("num_attention_heads", .int(headCount)),
         ("patch_size", .int(patchSize)), ("num_channels", .int(channelCount)),
         ("num_register_tokens", .int(registerCount)), ("hidden_act", .string(hiddenAct)),
         ("use_gated_mlp", .bool(useGatedMLP)), ("layer_norm_eps", .double(layerNormEps)),
         ("rope_theta", .double(ropeTheta)), ("query_bias", .bool(queryBias)), ("key_bias", .bool(keyBias)),
         ("value_bias", .bool(valueBias)), ("proj_bias", .bool(projBias)), ("mlp_bias", .bool(mlpBias)),
         ("image_size", .int(imageSize))]
    }

    public var expectedTensors: [String: ExpectedTensor] {
        let c = hiddenSize
        var t = ExpectedTensorBuilder()
        t.require("embed.cls_token", [1, 1, c])
        t.allow("embed.mask_token", [1, 1, c])
        // With no registers, transformers still saves an empty [1, 0, C] parameter.
        if registerCount > 0 { t.require("embed.register_tokens", [1, registerCount, c]) } else { t.allow("embed.register_tokens", [1, 0, c]) }
        t.require("embed.patch.weight", [c, channelCount, patchSize, patchSize])
        t.require("embed.patch.bias", [c])
        for n in 0..<layerCount {
            let l = "layers.\(n)."
            t.norm(l + "attn_norm", width: c, bias: true)
            t.linear(l + "attn.q", out: c, in: c, bias: queryBias)
            t.linear(l + "attn.k", out: c, in: c, bias: keyBias)
            t.linear(l + "attn.v", out: c, in: c, bias: valueBias)
            t.linear(l + "attn.o", out: c, in: c, bias: projBias)
            t.require(l + "ls1", [c])
            t.norm(l + "mlp_norm", width: c, bias: true)
            if useGatedMLP { t.linear(l + "mlp.gate", out: intermediateSize, in: c, bias: mlpBias) }
            t.linear(l + "mlp.up", out: intermediateSize, in: c, bias: mlpBias)
            t.linear(l + "mlp.down", out: c, in: intermediateSize, bias: mlpBias)
            t.require(l + "ls2", [c])
        }
        t.norm("final_norm", width: c, bias: true)
        return t.tensors
    }

    public var tiedPairs: [TiedPair] { [] }

    /// Hugging Face ↔ canonical names (§4.2).
    public static let names = NameTable(
        bodyPrefixes: ["model.", ""],
        body: [
            ("embeddings.cls_token", "embed.cls_token"),
            ("embeddings.mask_token", "embed.mask_token"),
            ("embeddings.register_tokens", "embed.register_tokens"),
            ("embeddings.patch_embeddings.weight", "embed.patch.weight"),
            ("embeddings.patch_embeddings.bias", "embed.patch.bias"),
            ("layer.N.norm1.weight", "layers.N.attn_norm.weight"),
            ("layer.N.norm1.bias", "layers.N.attn_norm.bias"),
            ("layer.N.attention.q_proj.weight", "layers.N.attn.q.weight"),
            ("layer.N.attention.q_proj.bias", "layers.N.attn.q.bias"),
            ("layer.N.attention.k_proj.weight", "layers.N.attn.k.weight"),
            ("layer.N.attention.k_proj.bias", "layers.N.attn.k.bias"),
            ("layer.N.attention.v_proj.weight", "layers.N.attn.v.weight"),
            ("layer.N.attention.v_proj.bias", "layers.N.attn.v.bias"),
            ("layer.N.attention.o_proj.weight", "layers.N.attn.o.weight"),
            ("layer.N.attention.o_proj.bias", "layers.N.attn.o.bias"),
            ("layer.N.layer_scale1.lambda1", "layers.N.ls1"),
            ("layer.N.norm2.weight", "layers.N.mlp_norm.weight"),
            ("layer.N.norm2.bias", "layers.N.mlp_norm.bias"),
            ("layer.N.mlp.gate_proj.weight", "layers.N.mlp.gate.weight"),
            ("layer.N.mlp.gate_proj.bias", "layers.N.mlp.gate.bias"),
            ("layer.N.mlp.up_proj.weight", "layers.N.mlp.up.weight"),
            ("layer.N.mlp.up_proj.bias", "layers.N.mlp.up.bias"),
            ("layer.N.mlp.down_proj.weight", "layers.N.mlp.down.weight"),
            ("layer.N.mlp.down_proj.bias", "layers.N.mlp.down.bias"),
            ("layer.N.layer_scale2.lambda1", "layers.N.ls2"),
            ("norm.weight", "final_norm.weight"),
            ("norm.bias", "final_norm.bias"),
        ],
        heads: [],
        dropped: [])
}
