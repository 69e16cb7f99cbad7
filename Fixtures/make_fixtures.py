#!/usr/bin/env python3
"""Generate the tiny Hugging Face test fixtures of the toolkit (tokenizers + random-weight models).

What it makes (all paths relative to the repository root):

  Fixtures/tokenizers/modernbert/   byte-level BPE tokenizer shaped like ModernBERT-base's
                                    (NFC, ByteLevel(use_regex=True), "[CLS] $A [SEP]" template,
                                    [UNK] [CLS] [SEP] [PAD] [MASK](lstrip) appended after the BPE vocab;
                                    512 ids in all).
  Fixtures/tokenizers/qwen3/        byte-level BPE tokenizer shaped like Qwen3's (NFC, Split(Qwen2 regex,
                                    isolated) + ByteLevel(use_regex=False), ByteLevel post-processor
                                    (trim_offsets=False), <|endoftext|> <|im_start|> <|im_end|> special,
                                    <think> </think> not special; 600 ids in all).
  Fixtures/tokenizers/qwen3-prima/  the same, trained on CORPUS + PRIMA_CORPUS_EXTRA, so that " ACK", " BCC",
                                    " MEL", " NEV", " SCC", " SEK" (PAD-UFES-20's classes) are single, distinct
                                    tokens (the PRIMA decoder scores a class by the first token of " " + code);
                                    used by the PRIMA decoder fixture qwen3-prima-f32 (hidden 48).
  Fixtures/models/<name>/           one directory per fixture, written with transformers' save_pretrained
                                    (config.json, model.safetensors or shards + model.safetensors.index.json,
                                    generation_config.json for Qwen3, the tokenizer files for text models,
                                    preprocessor_config.json for DINOv3). See Fixtures/README.md for the table.
  Fixtures/models/manifest.json     one object per fixture: name, model_type, hf_class, dtype, sharded,
                                    tied_embeddings, lm_head_in_file, has_tokenizer, features, tensor_names.

Both tokenizers are trained with the `tokenizers` library on a small corpus written inline below. Every model is
built from its config, then EVERY parameter is overwritten with seeded random values: Linear/Conv2d weights
N(0, s^2) with s = max(0.05, 1/sqrt(fan_in)) (plain N(0, 0.05) left attention almost uniform at these widths),
embeddings N(0, 0.05), norm weights 1 + N(0, 0.1), biases N(0, 0.05), DINOv3 layer scales 0.1 + N(0, 0.05),
cls/register/mask tokens N(0, 0.5); tied weights stay tied. The bf16/f16 fixtures are the f32 fixtures of the
same family cast, so they hold the same values up to rounding. After saving, each fixture is reloaded with the
Auto class of its architecture (dtype=torch.float32, attn_implementation="eager") and must load with no missing,
unexpected or mismatched keys, with every parameter equal to the saved model's, with the expected tie state, and
must give a finite forward pass. (Plain AutoModel is used for the base-model fixtures; for the MLM/causal-LM ones it
would load a headless base model and report the head/pooler keys, so AutoModelForMaskedLM/ForCausalLM are used.)

Rerun (from the repository root):

    /work/venv-ref/bin/python Fixtures/make_fixtures.py

or with the python of any venv made with `pip install -r Fixtures/requirements.txt`. The script first checks that
the installed versions of torch, transformers, safetensors, h5py, tokenizers and numpy are exactly the ones pinned in
Fixtures/requirements.txt (a local suffix such as "+cu132" is ignored) and exits with a message otherwise, because
other versions may write different bytes. The output is deterministic: two runs give byte-identical files
(Fixtures/tokenizers/{modernbert,qwen3} and Fixtures/models are deleted and rewritten on every run; rerun
Fixtures/tokenizers/make_goldens.py afterwards if the tokenizers changed).

Code shared with make_traces.py and bench/make_full_size.py is in Fixtures/fixture_common.py: the environment
settings, the version check, the torch/transformers setup, the parameter order and the prefix-token, layer-scale and
norm-weight rules of the random weights, the preprocessor_config.json writer and the final chmod.

Notes on what transformers 5.24 writes (found while writing this script):
  * PreTrainedTokenizerFast is an alias of TokenizersBackend; its save_pretrained writes only tokenizer.json and
    tokenizer_config.json ("tokenizer_class": "TokenizersBackend"). special_tokens_map.json is no longer written, so
    this script writes it itself in the format transformers 4.x wrote (and real Hub repos ship): named special
    tokens as {"content", "lstrip", "normalized", "rstrip", "single_word"} objects, json indent 2, sorted keys.
  * save_pretrained drops tied weights: Qwen3 tied models get no lm_head.weight, ModernBertForMaskedLM no
    decoder.weight, BertForMaskedLM no cls.predictions.decoder.{weight,bias}. The fixture
    qwen3-tied-headstored-bf16 therefore has its model.safetensors written with safetensors directly (same tensors
    as qwen3-tied-bf16 plus lm_head.weight, a bit-identical copy of model.embed_tokens.weight,
    metadata {"format": "pt"}), like real Qwen3 checkpoints.
  * ModernBERT v5 config: the legacy global_rope_theta / local_rope_theta are consumed and written as
    rope_parameters = {"full_attention": {"rope_theta": 160000.0, ...}, "sliding_attention": {"rope_theta": 10000.0,
    ...}}; the per-layer pattern is written as layer_types (global_attn_every_n_layers, passed here as the Hub
    config does, is kept as an extra key); local_attention is written, sliding_window (= local_attention // 2) is a
    property and is not.
  * DINOv3ViTImageProcessor needs torchvision and Pillow, which have no release matching torch 2.15 and are not
    pinned. preprocessor_config.json is therefore written from a dict (fixture_common.write_dinov3_preprocessor)
    that is byte-for-byte what DINOv3ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained() writes
    (checked with torchvision 0.29.2 + Pillow in a scratch venv; if torchvision happens to be importable, the script
    re-checks it).
"""

from pathlib import Path

from fixture_common import (
    FIXTURES,
    MODELS_DIR,
    check_versions,
    chmod_outputs,
    init_mean_std,
    set_environment,
    setup_torch,
    sorted_parameters,
    write_dinov3_preprocessor,
)

set_environment()  # before `tokenizers` is imported: keeps BPE training single-threaded and deterministic
check_versions(Path(__file__).name, "fixtures")

import copy  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402

import torch  # noqa: E402
import transformers  # noqa: E402
from safetensors import safe_open  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers  # noqa: E402
from tokenizers import pre_tokenizers, processors, trainers  # noqa: E402
from transformers import (  # noqa: E402
    BertConfig,
    BertForMaskedLM,
    BertModel,
    DINOv3ViTConfig,
    DINOv3ViTModel,
    ModernBertConfig,
    ModernBertForMaskedLM,
    PreTrainedTokenizerFast,
    Qwen3Config,
    Qwen3ForCausalLM,
)

setup_torch()

TOKENIZERS_DIR = FIXTURES / "tokenizers"

# --------------------------------------------------------------------------------------------------------------------
# Tokenizer corpus: clinical text about skin lesions and patient risk factors, general English, digits,
# contractions, accents (composed and decomposed, so NFC matters), CJK, emoji, whitespace runs, newlines.
# --------------------------------------------------------------------------------------------------------------------
CORPUS = [
    "The lesion on the patient's left forearm is 4 mm wide and has grown over the last 3 months.",
    "Patient reports itching and occasional bleeding; the lesion is elevated and has changed colour.",
    "Diagnosis: basal cell carcinoma (BCC). Differential: squamous cell carcinoma (SCC), actinic keratosis (ACK).",
    "Seborrheic keratosis (SEK), melanoma (MEL) and nevus (NEV) are the other classes in PAD-UFES-20.",
    "Risk factors: smoker, drinks alcohol, exposed to pesticides, no piped water, no sewage system.",
    "Fitzpatrick skin type II; region: face; diameter 1 = 12 mm, diameter 2 = 9 mm.",
    "Family history: father had skin cancer, mother had breast cancer. Personal history of skin cancer: yes.",
    "The lesion did not hurt, did not bleed, and hasn't grown since the last visit.",
    "She's 67 years old, works outdoors, and doesn't use sunscreen regularly.",
    "He'd noticed a dark, irregular mole on his back; the border is asymmetric and the colour is uneven.",
    "Dermoscopy shows arborizing vessels, blue-grey ovoid nests and ulceration.",
    "Actinic keratoses are rough, scaly patches caused by years of sun exposure.",
    "Melanoma risk increases with the number of nevi, fair skin, red hair and a history of sunburns.",
    "Biopsy confirmed the diagnosis; margins were clear. Follow-up in 6 months.",
    "Age: 54; gender: female; smoke: False; drink: True; itch: True; grew: UNK; hurt: False.",
    "Age: 71; gender: male; region: nose; elevation: True; bleed: False; changed: True.",
    "Region: chest, back, arm, forearm, hand, neck, scalp, ear, lip, thigh, abdomen, foot.",
    "Patients with immunosuppression, such as organ transplant recipients, develop more squamous cell carcinomas.",
    "Ultraviolet radiation is the main environmental risk factor for keratinocyte cancers.",
    "A new or changing lesion in an adult over 50 should be examined by a dermatologist.",
    "The quick brown fox jumps over the lazy dog. Pack my box with five dozen liquor jugs!",
    "I'm sure you'll like it; we've tried it and they're happy. It's what I'd do.",
    "Don't stop: THE END, The End, the end. IT'S DONE, it's done, It'S done.",
    "Numbers: 0 1 2 3 4 5 6 7 8 9 10 42 100 2024 3.14159 1,000,000 -7 +12 1e-6 0x1F 50%.",
    "Phone 555-0199, room 12B, dose 2.5 mg twice a day, BMI 27.4 kg/m2, temperature 37.8 °C.",
    "Dates: 2023-11-05, 05/11/2023, 5 Nov 2023; times: 09:30, 14:45:10.",
    "Accents: café, naïve, résumé, coöperate, São Paulo, Zürich, Ångström, señor, façade, déjà vu.",
    "Decomposed accents: cafe\u0301, nai\u0308ve, re\u0301sume\u0301, Sa\u0303o Paulo, Zu\u0308rich.",
    "Greek and Cyrillic: αβγ δέλτα, Ωμέγα; привет, мир; Ελληνικά.",
    "中文：皮肤病变，基底细胞癌，黑色素瘤。患者有吸烟史。",
    "日本語：皮膚がんのリスク要因は紫外線です。東京、大阪。",
    "한국어: 피부 병변, 흑색종.",
    "Emoji: 🙂 😀 👍🏽 🧑‍⚕️ ❤️ 🔬 ☀️ 🌞🌞",
    "Whitespace runs:    four spaces,\ttab,\t\ttwo tabs,  two spaces,        eight spaces.",
    "Line one\nLine two\n\nLine four after a blank line\r\nWindows line\n   indented line\n",
    "Trailing spaces   \n  leading spaces\n\n\n",
    "Punctuation: (a) [b] {c} <d> \"quoted\" 'single' `code` a/b a\\b a|b a_b a-b a--b a...b!?;:",
    "Symbols: @user #tag $5 & 10% ^ * ~ = + ± × ÷ → ← ≤ ≥ ≈ ∞ € £ ¥ ©.",
    "URLs: https://example.org/path?x=1&y=2, email: doctor@clinic.example.",
    "Mixed: COVID-19, SARS-CoV-2, HbA1c 6.5%, T2DM, HIV+, p53, BRAF V600E.",
    "The model should classify the lesion from the clinical image and the patient's risk factors.",
    "Classify the lesion from the clinical image and the patient's risk factors. Diagnosis: BCC",
    "Classify the lesion from the clinical image and the patient's risk factors. Diagnosis: MEL",
    "image text image text <image> <text> lesion lesions lesional",
    "A short sentence. Another one. And one more, with commas, semicolons; and colons: yes.",
    "They said: \"we'll see\". She replied, 'you're right', and left at 5 o'clock.",
    "Sun exposure, tanning beds, and a history of blistering sunburns in childhood increase risk.",
    "The patient denies pain, but reports that the lesion bleeds when scratched.",
    "Lesion size increased from 3 mm to 7 mm in 8 weeks; urgent referral recommended.",
    "Scaly, erythematous plaque with hyperkeratosis on the dorsum of the hand.",
    "Pearly papule with telangiectasia and a rolled border on the nasal ala.",
    "Stuck-on appearance, waxy surface, milia-like cysts: consistent with seborrheic keratosis.",
    "Uniform brown colour, symmetric shape, regular border: benign melanocytic nevus.",
]


# Added to CORPUS for the qwen3-prima tokenizer only: the PRIMA decoder scores each class by the first token of
# " " + code, and with CORPUS alone " MEL"/" NEV" both start with "Ġ" and " SCC"/" SEK" with "ĠS". Lines in the form
# of the decoder input's end (prompt, answer prefix, code) make every " CODE" one token of its own.
PAD_UFES_CODES = ("ACK", "BCC", "MEL", "NEV", "SCC", "SEK")
PRIMA_CORPUS_EXTRA = [
    f"Classify the lesion from the clinical image and the patient's risk factors. Diagnosis: {a}; not {b}, {c}."
    for a, b, c in zip(PAD_UFES_CODES, PAD_UFES_CODES[1:] + PAD_UFES_CODES[:1], PAD_UFES_CODES[2:] + PAD_UFES_CODES[:2])
] + ["PAD-UFES-20 classes: " + ", ".join(PAD_UFES_CODES) + "; Diagnosis: " + " or ".join(PAD_UFES_CODES) + "."]


def corpus_iterator(corpus=CORPUS):
    # A few passes with different joins, so that pair counts are not all tied.
    for line in corpus:
        yield line
    for i in range(0, len(corpus), 3):
        yield " ".join(corpus[i : i + 3])
    yield "\n".join(corpus)


QWEN2_PRETOKENIZE_REGEX = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
)

MODERNBERT_VOCAB = 512  # 507 BPE tokens + 5 special tokens
QWEN3_VOCAB = 600  # 595 BPE tokens + 5 added tokens


def _added(content, special=True, lstrip=False):
    return AddedToken(content, single_word=False, lstrip=lstrip, rstrip=False, normalized=False, special=special)


def write_special_tokens_map(tok, out_dir, additional=()):
    """special_tokens_map.json as transformers 4.x wrote it (v5 no longer writes the file)."""
    by_content = {t.content: t for t in tok.added_tokens_decoder.values()}

    def entry(content):
        t = by_content[content]
        return {
            "content": t.content,
            "lstrip": t.lstrip,
            "normalized": t.normalized,
            "rstrip": t.rstrip,
            "single_word": t.single_word,
        }

    out = {}
    for key, value in tok.special_tokens_map.items():
        if key in ("additional_special_tokens", "extra_special_tokens"):
            continue
        out[key] = entry(str(value))
    if additional:
        out["additional_special_tokens"] = list(additional)
    with open(out_dir / "special_tokens_map.json", "w", encoding="utf-8") as f:
        f.write(json.dumps(out, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


def build_modernbert_tokenizer(out_dir):
    tok = Tokenizer(models.BPE(unk_token=None, fuse_unk=False, byte_fallback=False))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    specials = [_added("[UNK]"), _added("[CLS]"), _added("[SEP]"), _added("[PAD]"), _added("[MASK]", lstrip=True)]
    trainer = trainers.BpeTrainer(
        vocab_size=MODERNBERT_VOCAB - len(specials),
        min_frequency=0,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[],
    )
    tok.train_from_iterator(corpus_iterator(), trainer=trainer)
    assert tok.get_vocab_size() == MODERNBERT_VOCAB - len(specials), tok.get_vocab_size()
    # Specials go after the BPE vocabulary, as in ModernBERT-base (ids 50280..50284 there).
    tok.add_special_tokens(specials)
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B [SEP]",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        pad_token="[PAD]",
        mask_token=_added("[MASK]", lstrip=True),
        model_max_length=128,
        padding_side="right",
        model_input_names=["input_ids", "attention_mask"],
    )
    assert len(fast) == MODERNBERT_VOCAB, len(fast)
    fast.save_pretrained(out_dir)
    write_special_tokens_map(fast, out_dir)
    return fast


def build_qwen3_tokenizer(out_dir, corpus=CORPUS):
    tok = Tokenizer(models.BPE(unk_token=None, fuse_unk=False, byte_fallback=False))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN2_PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()  # its constructor ignores options; set below as in Qwen3's tokenizer.json
    tok.post_processor = processors.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)
    added = [
        _added("<|endoftext|>"),
        _added("<|im_start|>"),
        _added("<|im_end|>"),
        _added("<think>", special=False),
        _added("</think>", special=False),
    ]
    trainer = trainers.BpeTrainer(
        vocab_size=QWEN3_VOCAB - len(added),
        min_frequency=0,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[],
    )
    tok.train_from_iterator(corpus_iterator(corpus), trainer=trainer)
    assert tok.get_vocab_size() == QWEN3_VOCAB - len(added), tok.get_vocab_size()
    # decoders.ByteLevel() always serializes add_prefix_space/trim_offsets/use_regex = true; Qwen3's
    # tokenizer.json has false for all three (they do not change decoding). Patch through the JSON form.
    state = json.loads(tok.to_str())
    state["decoder"] = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}
    tok = Tokenizer.from_str(json.dumps(state))
    # Added tokens go after the BPE vocabulary, as in Qwen3 (ids 151643.. there).
    tok.add_special_tokens(added[:3])
    tok.add_tokens(added[3:])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=None,
        unk_token=None,
        eos_token=_added("<|im_end|>"),
        pad_token=_added("<|endoftext|>"),
        model_max_length=128,
        padding_side="right",
    )
    assert len(fast) == QWEN3_VOCAB, len(fast)
    fast.save_pretrained(out_dir)
    write_special_tokens_map(fast, out_dir, additional=["<|im_start|>", "<|im_end|>"])
    return fast


# --------------------------------------------------------------------------------------------------------------------
# Random weights (parameter order and the prefix-token, layer-scale and norm rules: fixture_common.py)
# --------------------------------------------------------------------------------------------------------------------
def perturb_(model, seed):
    """Overwrite every parameter with seeded random values. Tied parameters appear once in named_parameters()
    and are written in place, so ties survive."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for leaf, module, p in sorted_parameters(model):
            noise = torch.randn(p.shape, generator=gen, dtype=torch.float32)
            mean_std = init_mean_std(leaf, module)
            if mean_std is not None:
                mean, std = mean_std
                value = mean + std * noise if mean else std * noise  # no + 0.0: keeps -0.0 as is
            elif leaf == "weight" and isinstance(module, (torch.nn.Linear, torch.nn.Conv2d)):
                # N(0, 0.05) would leave attention almost uniform at these widths (max prob ~0.07 over 21
                # tokens), which hides RoPE/mask bugs; use N(0, 1/fan_in) but never below 0.05.
                fan_in = p[0].numel()
                value = max(0.05, fan_in**-0.5) * noise
            else:  # embeddings, biases
                value = 0.05 * noise
            p.copy_(value.to(p.dtype))
    return model


def cast(model, dtype):
    m = copy.deepcopy(model).to(dtype)
    m.eval()
    return m


# --------------------------------------------------------------------------------------------------------------------
# Model configs
# --------------------------------------------------------------------------------------------------------------------
def dinov3_config(gated):
    return DINOv3ViTConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        patch_size=8,
        image_size=32,
        num_register_tokens=0 if gated else 4,
        use_gated_mlp=gated,
        hidden_act="silu" if gated else "gelu",
        layer_norm_eps=1e-5,
        rope_theta=100.0,
        query_bias=True,
        key_bias=False,
        value_bias=True,
        proj_bias=True,
        mlp_bias=True,
    )


def modernbert_config(tok):
    # Legacy (Hub, v4) spelling on purpose: v5 converts it to layer_types / rope_parameters.
    return ModernBertConfig(
        vocab_size=len(tok),
        hidden_size=32,
        num_hidden_layers=4,
        num_attention_heads=4,
        intermediate_size=48,
        hidden_activation="gelu",
        max_position_embeddings=128,
        global_attn_every_n_layers=3,
        local_attention=8,
        global_rope_theta=160000.0,
        local_rope_theta=10000.0,
        norm_eps=1e-5,
        norm_bias=False,
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.cls_token_id,
        eos_token_id=tok.sep_token_id,
        cls_token_id=tok.cls_token_id,
        sep_token_id=tok.sep_token_id,
        tie_word_embeddings=True,
    )


def bert_config(tok):
    return BertConfig(
        vocab_size=len(tok),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=48,
        hidden_act="gelu",
        max_position_embeddings=64,
        type_vocab_size=2,
        layer_norm_eps=1e-5,
        pad_token_id=tok.pad_token_id,
        tie_word_embeddings=True,
    )


def qwen3_config(tok, tied, hidden_size=32, intermediate_size=64):
    vocab = -(-len(tok) // 64) * 64  # more embedding rows than tokens, like the real model
    return Qwen3Config(
        vocab_size=vocab,
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        hidden_act="silu",
        max_position_embeddings=128,
        rms_norm_eps=1e-6,
        rope_theta=1_000_000.0,
        attention_bias=False,
        use_sliding_window=False,
        tie_word_embeddings=tied,
        bos_token_id=tok.convert_tokens_to_ids("<|endoftext|>"),
        eos_token_id=tok.convert_tokens_to_ids("<|im_end|>"),
    )


def build(cls, config, seed):
    torch.manual_seed(seed)
    model = cls(config)
    model.eval()
    return perturb_(model, seed)


def write_preprocessor(out_dir):
    text = write_dinov3_preprocessor(out_dir, 32, 32)
    try:  # cross-check against the real class when its optional backends are installed
        from transformers import DINOv3ViTImageProcessor

        real = DINOv3ViTImageProcessor(size={"height": 32, "width": 32}).to_json_string()
    except ImportError:
        return
    assert real == text, "preprocessor_config.json differs from DINOv3ViTImageProcessor's"


# --------------------------------------------------------------------------------------------------------------------
# Saving, checking, manifest
# --------------------------------------------------------------------------------------------------------------------
DTYPE_NAMES = {torch.float32: "f32", torch.float16: "f16", torch.bfloat16: "bf16"}
AUTO_CLASS = {
    "DINOv3ViTModel": transformers.AutoModel,
    "BertModel": transformers.AutoModel,
    "ModernBertForMaskedLM": transformers.AutoModelForMaskedLM,
    "BertForMaskedLM": transformers.AutoModelForMaskedLM,
    "Qwen3ForCausalLM": transformers.AutoModelForCausalLM,
}
# (output projection, input embedding) for the models that have an LM head
LM_HEAD = {
    "ModernBertForMaskedLM": ("decoder.weight", "model.embeddings.tok_embeddings.weight"),
    "BertForMaskedLM": ("cls.predictions.decoder.weight", "bert.embeddings.word_embeddings.weight"),
    "Qwen3ForCausalLM": ("lm_head.weight", "model.embed_tokens.weight"),
}


def safetensors_files(d):
    return sorted(p for p in d.iterdir() if p.suffix == ".safetensors")


def tensor_names(d):
    names = []
    for path in safetensors_files(d):
        with safe_open(str(path), "pt") as f:
            names.extend(f.keys())
    assert len(names) == len(set(names))
    return sorted(names)


def sample_inputs(hf_class, config):
    gen = torch.Generator().manual_seed(1234)
    if hf_class == "DINOv3ViTModel":
        return {"pixel_values": torch.randn(2, 3, 32, 40, generator=gen)}  # non-square: 4x5 patch grid
    ids = torch.randint(0, config.vocab_size, (2, 20), generator=gen)
    mask = torch.ones_like(ids)
    mask[1, 14:] = 0
    return {"input_ids": ids, "attention_mask": mask}


def verify_reload(d, hf_class, ref_model, tied):
    """Reload through the Auto class; no missing/unexpected/mismatched keys; same values; finite forward."""
    auto = AUTO_CLASS[hf_class]
    reloaded, info = auto.from_pretrained(
        str(d), dtype=torch.float32, attn_implementation="eager", output_loading_info=True
    )
    reloaded.eval()
    assert type(reloaded).__name__ == hf_class, (d.name, type(reloaded).__name__)
    for key in ("missing_keys", "unexpected_keys", "mismatched_keys", "error_msgs"):
        assert not info.get(key), (d.name, key, info.get(key))
    ref = dict(ref_model.named_parameters(remove_duplicate=False))
    got = dict(reloaded.named_parameters(remove_duplicate=False))
    assert ref.keys() == got.keys(), (d.name, ref.keys() ^ got.keys())
    for name, p in ref.items():
        assert got[name].dtype == torch.float32
        assert torch.equal(got[name], p.detach().float()), (d.name, name)
    if hf_class in LM_HEAD:
        head, emb = LM_HEAD[hf_class]
        same = got[head].data_ptr() == got[emb].data_ptr()
        assert same == tied, (d.name, "tie state after reload", same)
    with torch.no_grad():
        out = reloaded(**sample_inputs(hf_class, reloaded.config))
    first = out.logits if hasattr(out, "logits") else out.last_hidden_state
    assert torch.isfinite(first).all() and first.abs().max() > 0, d.name


def save_model(name, model, tok_dir=None, max_shard_size=None, preprocessor=False):
    d = MODELS_DIR / name
    kwargs = {"max_shard_size": max_shard_size} if max_shard_size else {}
    model.save_pretrained(str(d), **kwargs)
    if tok_dir is not None:
        for fname in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
            shutil.copyfile(tok_dir / fname, d / fname)
    if preprocessor:
        write_preprocessor(d)
    return d


def check_tied(model, hf_class, expect):
    if hf_class not in LM_HEAD:
        return None
    head, emb = LM_HEAD[hf_class]
    params = dict(model.named_parameters(remove_duplicate=False))
    tied = params[head].data_ptr() == params[emb].data_ptr()
    assert tied == expect, (hf_class, tied)
    return tied


def write_headstored(src_dir, dst_name):
    """Copy of src_dir whose model.safetensors ALSO holds lm_head.weight == model.embed_tokens.weight (bitwise)."""
    d = MODELS_DIR / dst_name
    shutil.copytree(src_dir, d)
    path = d / "model.safetensors"
    tensors = {}
    with safe_open(str(path), "pt") as f:
        assert f.metadata() == {"format": "pt"}
        for k in f.keys():
            tensors[k] = f.get_tensor(k)
    assert "lm_head.weight" not in tensors, "save_pretrained now writes lm_head.weight; revisit this fixture"
    tensors["lm_head.weight"] = tensors["model.embed_tokens.weight"].clone()
    save_file(tensors, str(path), metadata={"format": "pt"})
    return d


def main():
    # Only this script's outputs are replaced: Fixtures/tokenizers also holds the tokenizer goldens
    # (corpus.txt, goldens.json, variants/), which Fixtures/tokenizers/make_goldens.py writes from these files.
    mb_tok_dir, qw_tok_dir = TOKENIZERS_DIR / "modernbert", TOKENIZERS_DIR / "qwen3"
    qp_tok_dir = TOKENIZERS_DIR / "qwen3-prima"
    for d in (mb_tok_dir, qw_tok_dir, qp_tok_dir, MODELS_DIR):
        if d.exists():
            shutil.rmtree(d)
        d.mkdir(parents=True)

    mb_tok = build_modernbert_tokenizer(mb_tok_dir)
    qw_tok = build_qwen3_tokenizer(qw_tok_dir)
    qp_tok = build_qwen3_tokenizer(qp_tok_dir, CORPUS + PRIMA_CORPUS_EXTRA)
    class_ids = [qp_tok.encode(" " + code, add_special_tokens=False)[0] for code in PAD_UFES_CODES]
    assert len(set(class_ids)) == len(PAD_UFES_CODES), class_ids

    dino_mlp = build(DINOv3ViTModel, dinov3_config(gated=False), seed=101)
    dino_gated = build(DINOv3ViTModel, dinov3_config(gated=True), seed=102)
    modernbert = build(ModernBertForMaskedLM, modernbert_config(mb_tok), seed=201)
    bert_mlm = build(BertForMaskedLM, bert_config(mb_tok), seed=301)
    bert_pooler = build(BertModel, bert_config(mb_tok), seed=302)
    qwen_tied = build(Qwen3ForCausalLM, qwen3_config(qw_tok, tied=True), seed=401)
    qwen_untied = build(Qwen3ForCausalLM, qwen3_config(qw_tok, tied=False), seed=402)
    # The PRIMA decoder: 48 wide, so that the fusion heads map the 32-wide encoders to a different width.
    qwen_prima = build(Qwen3ForCausalLM, qwen3_config(qp_tok, tied=False, hidden_size=48, intermediate_size=96),
                       seed=403)

    dino_feat = ["patch_size=8", "4 heads x head_dim 8", "no k bias", "layer_scale", "rope_theta=100", "final norm"]
    mb_feat = ["4 layers: full,sliding,sliding,full", "local_attention=8 (|i-j|<=4)", "rope 160000/10000",
               "GeGLU Wi", "no attn_norm in layer 0", "no biases but decoder.bias", "tied decoder (not in file)"]
    bert_feat = ["post-LN", "abs+token_type pos emb", "max_pos=64", "layer_norm_eps=1e-5", "modernbert tokenizer"]
    qw_feat = ["GQA 4q/2kv", "head_dim=16 (heads*head_dim=64 != hidden 32)", "q_norm/k_norm", "rope_theta=1e6",
               "vocab 640 > 600 tokenizer ids"]

    # name, model, hf_class, tokenizer dir, features, extra save kwargs
    fixtures = [
        ("dinov3-mlp-reg4-f32", dino_mlp, "DINOv3ViTModel", None,
         dino_feat + ["4 registers", "gelu MLP"], {"preprocessor": True}),
        ("dinov3-gated-noreg-f32", dino_gated, "DINOv3ViTModel", None,
         dino_feat + ["0 registers: register_tokens stored as a zero-size [1, 0, 32] tensor",
                      "gated MLP (SwiGLU, silu)"], {"preprocessor": True}),
        ("dinov3-mlp-reg4-bf16", cast(dino_mlp, torch.bfloat16), "DINOv3ViTModel", None,
         dino_feat + ["4 registers", "gelu MLP", "bf16 cast of dinov3-mlp-reg4-f32"], {"preprocessor": True}),
        ("modernbert-mlm-f32", modernbert, "ModernBertForMaskedLM", mb_tok_dir, mb_feat, {}),
        ("modernbert-mlm-f16", cast(modernbert, torch.float16), "ModernBertForMaskedLM", mb_tok_dir,
         mb_feat + ["f16 cast of modernbert-mlm-f32"], {}),
        ("bert-mlm-f32", bert_mlm, "BertForMaskedLM", mb_tok_dir,
         bert_feat + ["bert. prefix", "cls.predictions.* head", "tied decoder (not in file)", "no pooler"], {}),
        ("bert-pooler-f32", bert_pooler, "BertModel", mb_tok_dir,
         bert_feat + ["no prefix", "pooler.dense"], {}),
        ("bert-mlm-bf16", cast(bert_mlm, torch.bfloat16), "BertForMaskedLM", mb_tok_dir,
         bert_feat + ["bert. prefix", "cls.predictions.* head", "tied decoder (not in file)", "no pooler",
                      "bf16 cast of bert-mlm-f32"], {}),
        ("qwen3-tied-f32", qwen_tied, "Qwen3ForCausalLM", qw_tok_dir,
         qw_feat + ["tied lm_head (not in file)"], {}),
        ("qwen3-untied-f32", qwen_untied, "Qwen3ForCausalLM", qw_tok_dir,
         qw_feat + ["untied lm_head"], {}),
        ("qwen3-tied-bf16", cast(qwen_tied, torch.bfloat16), "Qwen3ForCausalLM", qw_tok_dir,
         qw_feat + ["tied lm_head (not in file)", "bf16 cast of qwen3-tied-f32"], {}),
        ("qwen3-untied-f16-sharded", cast(qwen_untied, torch.float16), "Qwen3ForCausalLM", qw_tok_dir,
         qw_feat + ["untied lm_head", "f16 cast of qwen3-untied-f32", "sharded (max_shard_size 48KB)"],
         {"max_shard_size": "48KB"}),
        ("qwen3-prima-f32", qwen_prima, "Qwen3ForCausalLM", qp_tok_dir,
         ["GQA 4q/2kv", "hidden 48 (encoders are 32 wide)", "head_dim=16 (heads*head_dim=64 != hidden 48)",
          "MLP 96", "q_norm/k_norm", "rope_theta=1e6", "vocab 640 > 600 tokenizer ids", "untied lm_head",
          "qwen3-prima tokenizer: ' ACK' ' BCC' ' MEL' ' NEV' ' SCC' ' SEK' are single distinct tokens"], {}),
    ]

    manifest = []
    for name, model, hf_class, tok_dir, features, kw in fixtures:
        assert type(model).__name__ == hf_class
        tied = check_tied(model, hf_class, expect=bool(getattr(model.config, "tie_word_embeddings", False)))
        d = save_model(name, model, tok_dir=tok_dir, **kw)
        verify_reload(d, hf_class, model, tied)
        manifest.append(manifest_entry(name, model, hf_class, d, tied, tok_dir is not None, features))
        if name == "qwen3-tied-bf16":
            hs = write_headstored(d, "qwen3-tied-headstored-bf16")
            verify_reload(hs, hf_class, model, True)
            manifest.append(
                manifest_entry(
                    "qwen3-tied-headstored-bf16", model, hf_class, hs, True, True,
                    qw_feat + ["tied lm_head ALSO stored in file (bit-identical to embed_tokens)",
                               "same weights as qwen3-tied-bf16", "safetensors written directly"],
                )
            )

    sharded = next(m for m in manifest if m["name"] == "qwen3-untied-f16-sharded")
    n_shards = len(safetensors_files(MODELS_DIR / sharded["name"]))
    assert n_shards >= 3 and (MODELS_DIR / sharded["name"] / "model.safetensors.index.json").exists(), n_shards

    with open(MODELS_DIR / "manifest.json", "w", encoding="utf-8") as f:
        f.write(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    chmod_outputs(TOKENIZERS_DIR, MODELS_DIR)

    total = sum(p.stat().st_size for p in FIXTURES.rglob("*") if p.is_file())
    assert total < 15 * 1024 * 1024, total
    for m in manifest:
        print(f"{m['name']:32s} {m['dtype']:5s} tensors={len(m['tensor_names']):3d}"
              f" sharded={m['sharded']!s:5s} tied={m['tied_embeddings']!s:5s} lm_head_in_file={m['lm_head_in_file']}")
    digest = hashlib.sha256()
    outputs = list(mb_tok_dir.rglob("*")) + list(qw_tok_dir.rglob("*")) + list(qp_tok_dir.rglob("*"))
    for p in sorted(outputs + list(MODELS_DIR.rglob("*"))):
        if p.is_file():
            digest.update(str(p.relative_to(FIXTURES)).encode() + b"\0" + p.read_bytes())
    print(f"Fixtures/ total size: {total} bytes; sha256 over tokenizers/ and models/: {digest.hexdigest()}")


def manifest_entry(name, model, hf_class, d, tied, has_tok, features):
    names = tensor_names(d)
    lm_head_in_file = LM_HEAD[hf_class][0] in names if hf_class in LM_HEAD else None
    return {
        "name": name,
        "model_type": model.config.model_type,
        "hf_class": hf_class,
        "dtype": DTYPE_NAMES[model.dtype],
        "sharded": (d / "model.safetensors.index.json").exists(),
        "tied_embeddings": tied,
        "lm_head_in_file": lm_head_in_file,
        "has_tokenizer": has_tok,
        "features": features,
        "tensor_names": names,
    }


if __name__ == "__main__":
    main()
