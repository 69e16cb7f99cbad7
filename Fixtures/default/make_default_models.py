#!/usr/bin/env python3
"""The three untrained backbones of the trained default PRIMA (Fixtures/default/make_default.sh runs this after the split).

Usage: make_default_models.py COHORT SPLIT_CSV OUTDIR

Writes OUTDIR/stage1-corpus.jsonl (below) and OUTDIR/{image,text,decoder}/ as Hugging Face directories (config.json, model.safetensors, tokenizer or
preprocessor files), which `prima-convert import` turns into the starting checkpoint. No pretrained backbone
exists offline, so the backbones start from transformers' own initialisation (`_init_weights`, normal with
initializer_range 0.02, LayerNorm 1/0, DINOv3 tokens and layer scales as transformers sets them) under a fixed
torch seed per model, on one thread with deterministic algorithms: two runs write byte-identical files.

Shapes: the real backbones' architectures (DINOv3 ViT with 4 registers, a BERT masked-LM encoder, Qwen3 with
GQA and head_dim ≠ hidden/heads), made narrow so that the trained checkpoint stays a few MB:

  image    DINOv3ViTModel   hidden 64, 3 layers, 4 heads, MLP 128, patch 8, 64 × 64 input (8 × 8 patches)
  text     BertForMaskedLM  hidden 64, 2 layers, 4 heads, MLP 128, max_position 256, its own byte-level BPE (below)
  decoder  Qwen3ForCausalLM hidden 64, 2 layers, 4 heads / 2 kv heads, head_dim 16, MLP 128, max_position 512,
                            untied lm_head (std 1/8, LM_HEAD_STD), the qwen3-prima tokenizer (each " CODE" of the six classes one token)

The text encoder's tokenizer is a byte-level BPE like ModernBERT's (vocabulary at most TEXT_VOCAB; 1,777 here),
trained by the pinned `tokenizers` on the default's stage-1 corpus, which this script also writes
(OUTDIR/stage1-corpus.jsonl): the cohort's risk-factor records and one "patient record" per training case of the
split, its metadata text rendered by prima_ref.metadata (the renderer of Formats/prima-model.md; never a held-out
case, never a diagnosis). Stage 1's masked LM on these records stands in for the clinical pretraining a real
Clinical ModernBERT brings: it teaches the text encoder which value belongs to which field. A real clinical
encoder's vocabulary also holds the words of a patient record whole ("forearm", "64", "pesticide"); the test
fixtures' byte-level BPE (Fixtures/models/bert-mlm-f32, 507 tokens) cuts them into bytes. With the fixtures'
tokenizer and the 20 risk-factor records alone, a record took about 215 tokens, stage 1 did not move the masked-LM
loss from chance and the trained decoder read little of the metadata (Fixtures/default/README.md, "How it got
here"). With this vocabulary a record takes 82 tokens on average and at most 110; max_position 256 for the text
encoder and 512 for the decoder (prompt, 16 image tokens, about 55 text tokens) leave room.
"""

import json
import os
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from fixture_common import MODELS_DIR, REPO, check_versions, set_environment, setup_torch, write_dinov3_preprocessor  # noqa: E402

sys.path.insert(0, str(REPO / "Formats" / "python"))

set_environment()
check_versions("make_default_models.py", "default backbones")

import torch  # noqa: E402
from prima_ref.metadata import Schema, read_csv  # noqa: E402
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers  # noqa: E402
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
TEXT_VOCAB = 2048
TEXT_SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
PATIENT_RECORD = "patient record"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


def build(cls, config, seed):
    torch.manual_seed(seed)
    model = cls(config)
    model.eval()
    return model


def stage1_corpus(cohort, split_csv):
    """The default's stage-1 corpus as JSON Lines: the lines of the cohort's risk-factor corpus as they are, then one
    record {"name": PATIENT_RECORD, "summary": the case's metadata text, "details": ""} per training case of the
    split, in the cohort's row order (no held-out case, no diagnosis), written by json.dumps(ensure_ascii=False).
    TrainedDefaultTests rebuilds these bytes and checks them against the digest stage 1 recorded."""
    lines = [line for line in (cohort / "risk-factors.jsonl").read_text(encoding="utf-8").splitlines() if line.strip()]
    training = {row["img_id"] for row in read_csv(split_csv) if row["split"] == "train"}
    schema = Schema.pad_ufes_20()
    for row in read_csv(cohort / "metadata.csv"):
        if row["img_id"] in training:
            record = {"name": PATIENT_RECORD, "summary": schema.render(row, source=row["img_id"]), "details": ""}
            lines.append(json.dumps(record, ensure_ascii=False))
    return lines


def record_text(record):
    """A corpus record as the masked LM reads it (Formats/prima-training.md §3.6): "name: summary details"."""
    name, summary, details = (record[key].strip(" \t") for key in ("name", "summary", "details"))
    body = " ".join(part for part in (summary, details) if part)
    return f"{name}: {body}" if body else f"{name}:"


def train_text_tokenizer(texts, out):
    """Writes the text encoder's tokenizer to `out`: byte-level BPE (NFC, ByteLevel pre-tokenizer and decoder, the
    special tokens first, [CLS] text [SEP]), the tokenizer_config.json and special_tokens_map.json of the test
    fixtures' BERT tokenizer, which name the same special tokens."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=TEXT_VOCAB, special_tokens=list(TEXT_SPECIAL_TOKENS),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tokenizer.train_from_iterator(texts, trainer)
    cls, sep = (tokenizer.token_to_id(t) for t in ("[CLS]", "[SEP]"))
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]", special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    out.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(out / "tokenizer.json"))
    for name in TOKENIZER_FILES[1:]:
        shutil.copyfile(MODELS_DIR / "bert-mlm-f32" / name, out / name)


def save(model, out, tokenizer_dir=None):
    model.save_pretrained(str(out))
    if tokenizer_dir is not None:
        for name in TOKENIZER_FILES:
            shutil.copyfile(tokenizer_dir / name, out / name)
    for path in out.iterdir():
        os.chmod(path, 0o644)


def main():
    if len(sys.argv) != 4:
        sys.exit("usage: make_default_models.py COHORT SPLIT_CSV OUTDIR")
    cohort, split_csv, root = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
    root.mkdir(parents=True, exist_ok=True)

    image = DINOv3ViTConfig(hidden_size=64, num_hidden_layers=3, num_attention_heads=4, intermediate_size=128,
                            patch_size=8, image_size=IMAGE_SIZE, num_register_tokens=4, use_gated_mlp=False,
                            hidden_act="gelu", layer_norm_eps=1e-5, rope_theta=100.0, query_bias=True,
                            key_bias=False, value_bias=True, proj_bias=True, mlp_bias=True)
    save(build(DINOv3ViTModel, image, SEEDS["image"]), root / "image")
    write_dinov3_preprocessor(root / "image", IMAGE_SIZE, IMAGE_SIZE)

    corpus = stage1_corpus(cohort, split_csv)
    (root / "stage1-corpus.jsonl").write_bytes("".join(line + "\n" for line in corpus).encode("utf-8"))
    bert_tok_dir = root / "text-tokenizer"
    train_text_tokenizer([record_text(json.loads(line)) for line in corpus], bert_tok_dir)
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
