#!/usr/bin/env python3
"""Write FULL-SIZE random-weight Hugging Face models for speed and memory benchmarks.

The models have the same configs as the real checkpoints (see /work/shared/notes/numerics.md) but seeded random
weights, so nothing has to be downloaded. They are large (fp32: qwen3-0.6b ~2.4 GB, qwen3-1.7b ~6.9 GB; the tied
lm_head is not stored) and must NOT be written inside the repository: the output directory is given on the command line and the
script refuses any path inside the repo.

Usage (from the repository root, with /work/venv-ref or any venv made from Fixtures/requirements.txt):

    /work/venv-ref/bin/python Fixtures/bench/make_full_size.py OUT_DIR                  # all models, fp32
    /work/venv-ref/bin/python Fixtures/bench/make_full_size.py OUT_DIR --only qwen3-0.6b
    /work/venv-ref/bin/python Fixtures/bench/make_full_size.py OUT_DIR --only qwen3-1.7b --dtype bf16

Each model goes to OUT_DIR/<name>/ (config.json, model.safetensors or shards + index, generation_config.json for
Qwen3, preprocessor_config.json for DINOv3; no tokenizer files: the fixture tokenizers do not cover these vocabs).

Names:
  qwen3-0.6b       Qwen3ForCausalLM, hidden 1024, intermediate 3072, 28 layers, 16 heads / 8 kv heads, head_dim 128,
                   vocab 151936, tied, rope_theta 1e6, rms_norm_eps 1e-6, max_position_embeddings 40960
  qwen3-1.7b       Qwen3ForCausalLM, hidden 2048, intermediate 6144, otherwise as above
  dinov3-vits16    DINOv3ViTModel, 384 / 1536 / 12 layers / 6 heads, patch 16, 4 registers, gelu MLP, rope_theta 100
  dinov3-vitb16    DINOv3ViTModel, 768 / 3072 / 12 layers / 12 heads, otherwise as vits16
  modernbert-base  ModernBertForMaskedLM, 768 / 1152 / 22 layers / 12 heads, vocab 50368, global layer every 3rd,
                   local_attention 128, rope 160000 (global) / 10000 (local), tied decoder
  clinical-bert    BertForMaskedLM (Clinical ModernBERT's real architecture), 22 layers, hidden 768, 12 heads,
                   intermediate 1152, max_position_embeddings 8192, vocab 50368, layer_norm_eps 1e-5, pad 50283, tied

Memory: the model is built on the meta device, then allocated once (to_empty) in the target dtype and filled tensor
by tensor in place, and save_pretrained/safetensors writes straight from those buffers; peak RSS is about 1x the
model size plus the Python/torch baseline (printed at the end). Values: Linear/Conv/embedding weights N(0, 0.02),
norm weights 1 + N(0, 0.1), biases N(0, 0.02), DINOv3 layer scales 0.1 + N(0, 0.05), cls/register/mask tokens
N(0, 0.5), generated with a seeded torch.Generator in sorted parameter order (deterministic for a given torch).

Shared with make_fixtures.py through Fixtures/fixture_common.py (put on sys.path below): the parameter order and
the prefix-token, layer-scale and norm-weight rules of the random values, the preprocessor_config.json writer,
the environment settings and transformers' logging setup. Unlike the fixture scripts, this one does not check the
pinned versions.
"""

import argparse
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # Fixtures/, for fixture_common
from fixture_common import (  # noqa: E402
    REPO,
    chmod_outputs,
    init_mean_std,
    set_environment,
    setup_torch,
    sorted_parameters,
    write_dinov3_preprocessor,
)

set_environment(single_threaded_tokenizers=False)

import torch  # noqa: E402
import transformers  # noqa: E402
from transformers import (  # noqa: E402
    BertConfig,
    BertForMaskedLM,
    DINOv3ViTConfig,
    DINOv3ViTModel,
    ModernBertConfig,
    ModernBertForMaskedLM,
    Qwen3Config,
    Qwen3ForCausalLM,
)

setup_torch(deterministic=False)


def qwen3(hidden, intermediate):
    return Qwen3ForCausalLM, Qwen3Config(
        vocab_size=151936,
        hidden_size=hidden,
        intermediate_size=intermediate,
        num_hidden_layers=28,
        num_attention_heads=16,
        num_key_value_heads=8,
        head_dim=128,
        hidden_act="silu",
        max_position_embeddings=40960,
        rms_norm_eps=1e-6,
        rope_theta=1_000_000.0,
        attention_bias=False,
        attention_dropout=0.0,
        use_sliding_window=False,
        max_window_layers=28,
        tie_word_embeddings=True,
        bos_token_id=151643,
        eos_token_id=151645,
    )


def dinov3(hidden, intermediate, heads):
    return DINOv3ViTModel, DINOv3ViTConfig(
        patch_size=16,
        hidden_size=hidden,
        intermediate_size=intermediate,
        num_hidden_layers=12,
        num_attention_heads=heads,
        hidden_act="gelu",
        use_gated_mlp=False,
        layer_norm_eps=1e-5,
        rope_theta=100.0,
        image_size=224,
        num_register_tokens=4,
        query_bias=True,
        key_bias=False,
        value_bias=True,
        proj_bias=True,
        mlp_bias=True,
        layerscale_value=1.0,
        pos_embed_shift=None,
        pos_embed_jitter=None,
        pos_embed_rescale=2.0,
    )


def modernbert_base():
    # Hub config.json spelling (legacy fields); v5 writes layer_types / rope_parameters from them.
    return ModernBertForMaskedLM, ModernBertConfig(
        vocab_size=50368,
        hidden_size=768,
        intermediate_size=1152,
        num_hidden_layers=22,
        num_attention_heads=12,
        hidden_activation="gelu",
        max_position_embeddings=8192,
        norm_eps=1e-5,
        norm_bias=False,
        global_attn_every_n_layers=3,
        local_attention=128,
        global_rope_theta=160000.0,
        local_rope_theta=10000.0,
        attention_bias=False,
        mlp_bias=False,
        decoder_bias=True,
        classifier_bias=False,
        classifier_activation="gelu",
        classifier_pooling="mean",
        pad_token_id=50283,
        bos_token_id=50281,
        cls_token_id=50281,
        eos_token_id=50282,
        sep_token_id=50282,
        tie_word_embeddings=True,
    )


def clinical_bert():
    return BertForMaskedLM, BertConfig(
        vocab_size=50368,
        hidden_size=768,
        num_hidden_layers=22,
        num_attention_heads=12,
        intermediate_size=1152,
        hidden_act="gelu",
        max_position_embeddings=8192,
        type_vocab_size=2,
        layer_norm_eps=1e-5,
        pad_token_id=50283,
        tie_word_embeddings=True,
    )


MODELS = {
    "qwen3-0.6b": lambda: qwen3(1024, 3072),
    "qwen3-1.7b": lambda: qwen3(2048, 6144),
    "dinov3-vits16": lambda: dinov3(384, 1536, 6),
    "dinov3-vitb16": lambda: dinov3(768, 3072, 12),
    "modernbert-base": modernbert_base,
    "clinical-bert": clinical_bert,
}
SEEDS = {name: 1000 + i for i, name in enumerate(MODELS)}
DTYPES = {"fp32": torch.float32, "f32": torch.float32, "bf16": torch.bfloat16, "f16": torch.float16}


def fill_(model, seed):
    """Fill every parameter in place (sorted names; tied parameters appear once): the prefix-token, layer-scale and
    norm-weight rules of fixture_common.init_mean_std, N(0, 0.02) for everything else."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for leaf, module, p in sorted_parameters(model):
            mean, std = init_mean_std(leaf, module) or (0.0, 0.02)
            p.normal_(mean, std, generator=gen)


def peak_rss_bytes():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


def make(name, out_root, dtype, max_shard_size):
    cls, config = MODELS[name]()
    out = out_root / name
    t0 = time.perf_counter()
    with torch.device("meta"):
        model = cls(config)
    model = model.to(dtype)
    model.to_empty(device="cpu")
    model.tie_weights()
    model.eval()
    t1 = time.perf_counter()
    fill_(model, SEEDS[name])
    t2 = time.perf_counter()
    if getattr(config, "tie_word_embeddings", False) and hasattr(model, "get_output_embeddings"):
        out_emb = model.get_output_embeddings()
        if out_emb is not None:
            assert out_emb.weight.data_ptr() == model.get_input_embeddings().weight.data_ptr(), "tie lost"
    model.save_pretrained(str(out), max_shard_size=max_shard_size)
    if cls is DINOv3ViTModel:
        write_dinov3_preprocessor(out, 224, 224)  # what DINOv3ViTImageProcessor() writes (224x224)
    chmod_outputs(out)
    t3 = time.perf_counter()
    n_params = sum(p.numel() for p in model.parameters())
    model_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    disk = sum(f.stat().st_size for f in out.iterdir() if f.is_file())
    del model
    print(
        f"{name}: {n_params:,} params ({model_bytes / 1e9:.3f} GB in memory as {str(dtype).split('.')[1]}), "
        f"{disk / 1e9:.3f} GB on disk in {out} | build {t1 - t0:.1f}s, fill {t2 - t1:.1f}s, save {t3 - t2:.1f}s, "
        f"total {t3 - t0:.1f}s | peak RSS so far {peak_rss_bytes() / 1e9:.2f} GB",
        flush=True,
    )


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out_dir", type=Path, help="directory to write into (outside the repository)")
    ap.add_argument("--only", choices=sorted(MODELS), help="write just this model")
    ap.add_argument("--dtype", choices=["fp32", "bf16", "f16"], default="fp32", help="storage dtype (default fp32)")
    ap.add_argument(
        "--max-shard-size", default="50GB", help='passed to save_pretrained (default "50GB" = one file), e.g. "2GB"'
    )
    args = ap.parse_args()

    out_root = args.out_dir.resolve()
    if out_root == REPO or REPO in out_root.parents:
        sys.exit(f"make_full_size.py: refusing to write inside the repository ({REPO}); pick another directory")
    out_root.mkdir(parents=True, exist_ok=True)
    print(f"torch {torch.__version__}, transformers {transformers.__version__}; writing to {out_root}", flush=True)
    names = [args.only] if args.only else list(MODELS)
    for name in names:
        make(name, out_root, DTYPES[args.dtype], args.max_shard_size)


if __name__ == "__main__":
    main()
