#!/usr/bin/env python3
"""The three untrained backbones of the trained default PRIMA (Fixtures/default/make_default.sh runs this first).

Usage: make_default_models.py OUTDIR

Writes OUTDIR/{image,text,decoder}/ as Hugging Face directories (config.json, model.safetensors, tokenizer or
preprocessor files), which `prima-convert import` turns into the starting checkpoint. No pretrained backbone
exists offline, so the backbones start from transformers' own initialisation (`_init_weights`, normal with
initializer_range 0.02, LayerNorm 1/0, DINOv3 tokens and layer scales as transformers sets them) under a fixed
torch seed per model, on one thread with deterministic algorithms: two runs write byte-identical files.

Shapes: the real backbones' architectures (DINOv3 ViT with 4 registers, a BERT masked-LM encoder, Qwen3 with
GQA and head_dim ≠ hidden/heads), made narrow so that the trained checkpoint stays a few MB:

  image    DINOv3ViTModel   hidden 64, 3 layers, 4 heads, MLP 128, patch 8, 64 × 64 input (8 × 8 patches)
  text     BertForMaskedLM  hidden 64, 2 layers, 4 heads, MLP 128, max_position 256, the bert-mlm-f32 tokenizer
  decoder  Qwen3ForCausalLM hidden 64, 2 layers, 4 heads / 2 kv heads, head_dim 16, MLP 128, max_position 512,
                            untied lm_head (std 1/8, LM_HEAD_STD), the qwen3-prima tokenizer (each " CODE" of the six classes one token)

max_position 256 for the text encoder holds the longest metadata text of the cohort (about 215 tokens with this
tokenizer; Fixtures/models/bert-mlm-f32 keeps 64, which would cut most of the risk factors off), and the decoder's
512 holds the prompt, 16 image tokens and about 110 text tokens.
"""

import os
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from fixture_common import MODELS_DIR, check_versions, set_environment, setup_torch, write_dinov3_preprocessor  # noqa: E402

set_environment()
check_versions("make_default_models.py", "default backbones")

import torch  # noqa: E402
from transformers import (  # noqa: E402
    AutoTokenizer,
    BertConfig,
    BertForMaskedLM,
    DINOv3ViTConfig,
    DINOv3ViTModel,
    Qwen3Config,
    Qwen3ForCausalLM,
)

setup_torch()
SEEDS = {"image": 1201, "text": 1202, "decoder": 1203, "lm_head": 1204}
# The decoder's untied LM head is drawn with std 1/sqrt(hidden) instead of initializer_range 0.02. The final RMSNorm
# pins the last hidden state at norm sqrt(64) = 8 and stage 3 trains neither the norm nor the head, so a class logit
# can be at most 8 x its head row's norm: about 0.16 x 8 = 1.3 at std 0.02, which caps the probability of the right
# class near 0.4 (measured: stage 3's training loss stalled at 1.07 while stage 2b's classifier reached 0.8). Rows of
# norm about 1 give logits up to about 8, the range a pretrained LM head has.
LM_HEAD_STD = 64 ** -0.5
IMAGE_SIZE = 64
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


def build(cls, config, seed):
    torch.manual_seed(seed)
    model = cls(config)
    model.eval()
    return model


def save(model, out, tokenizer_dir=None):
    model.save_pretrained(str(out))
    if tokenizer_dir is not None:
        for name in TOKENIZER_FILES:
            shutil.copyfile(tokenizer_dir / name, out / name)
    for path in out.iterdir():
        os.chmod(path, 0o644)


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: make_default_models.py OUTDIR")
    root = Path(sys.argv[1])
    root.mkdir(parents=True, exist_ok=True)

    image = DINOv3ViTConfig(hidden_size=64, num_hidden_layers=3, num_attention_heads=4, intermediate_size=128,
                            patch_size=8, image_size=IMAGE_SIZE, num_register_tokens=4, use_gated_mlp=False,
                            hidden_act="gelu", layer_norm_eps=1e-5, rope_theta=100.0, query_bias=True,
                            key_bias=False, value_bias=True, proj_bias=True, mlp_bias=True)
    save(build(DINOv3ViTModel, image, SEEDS["image"]), root / "image")
    write_dinov3_preprocessor(root / "image", IMAGE_SIZE, IMAGE_SIZE)

    bert_tok_dir = MODELS_DIR / "bert-mlm-f32"
    bert_tok = AutoTokenizer.from_pretrained(str(bert_tok_dir))
    text = BertConfig(vocab_size=len(bert_tok), hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                      intermediate_size=128, hidden_act="gelu", max_position_embeddings=256, type_vocab_size=2,
                      layer_norm_eps=1e-5, pad_token_id=bert_tok.pad_token_id, tie_word_embeddings=True)
    save(build(BertForMaskedLM, text, SEEDS["text"]), root / "text", bert_tok_dir)

    qwen_tok_dir = MODELS_DIR / "qwen3-prima-f32"
    qwen_tok = AutoTokenizer.from_pretrained(str(qwen_tok_dir))
    decoder = Qwen3Config(vocab_size=-(-len(qwen_tok) // 64) * 64, hidden_size=64, intermediate_size=128,
                          num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                          hidden_act="silu", max_position_embeddings=512, rms_norm_eps=1e-6, rope_theta=1_000_000.0,
                          attention_bias=False, use_sliding_window=False, tie_word_embeddings=False,
                          bos_token_id=qwen_tok.convert_tokens_to_ids("<|endoftext|>"),
                          eos_token_id=qwen_tok.convert_tokens_to_ids("<|im_end|>"))
    qwen = build(Qwen3ForCausalLM, decoder, SEEDS["decoder"])
    with torch.no_grad():  # a pretrained LM head's logit range (see LM_HEAD_STD)
        qwen.lm_head.weight.normal_(0.0, LM_HEAD_STD, generator=torch.Generator().manual_seed(SEEDS["lm_head"]))
    save(qwen, root / "decoder", qwen_tok_dir)
    shutil.copyfile(qwen_tok_dir / "generation_config.json", root / "decoder" / "generation_config.json")


if __name__ == "__main__":
    main()
