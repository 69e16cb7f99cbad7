#!/usr/bin/env python3
"""Write the tokenizer goldens that PrimaTokenizersTests compares with, exactly (Fixtures/tokenizers/goldens.json).

The reference is the Python `tokenizers` library (the Rust implementation behind transformers' fast tokenizers),
called directly: `Tokenizer.from_file(...).encode(text, add_special_tokens=...)` and `.decode(ids,
skip_special_tokens=...)`. transformers adds nothing to the ids of these tokenizers (its TokenizersBackend calls the
same Rust encode).

Inputs:
  * every line of Fixtures/tokenizers/corpus.txt (split on "\\n" only, empty lines included), then EXTRA_TEXTS
    (newlines, carriage returns, Unicode spaces and other things a line cannot hold), then the whole corpus as one
    text; and FUZZ_COUNT seeded random strings over FUZZ_ALPHABET (random.Random(SEED)): the first
    TOKENIZER_FUZZ_COUNT go through every tokenizer, the first COMPONENT_FUZZ_COUNT through the components, and all
    of them through the GPT-2 (ByteLevel) and Qwen2 split regexes;
  * pairs of consecutive corpus lines, for the pair templates;
  * padding/truncation cases (PADDING_CASES), each on a few texts.

Tokenizers:
  * the two fixtures, Fixtures/tokenizers/{modernbert,qwen3}/tokenizer.json (made by Fixtures/make_fixtures.py);
  * three variants trained here on the corpus, written to Fixtures/tokenizers/variants/, to cover the pipeline
    components the fixtures do not use (see build_variants()).

Components: component_cases() records, for normalizers, pre-tokenizers and decoders (including ones no tokenizer
here uses), the component's JSON and its output: normalize_str for normalizers, pre_tokenize_str (the pieces) for
pre-tokenizers, decode for decoders. The fuzz strings through the GPT-2 (ByteLevel) and Qwen2 split regexes check the
regex matcher character class by character class.

Rerun (from the repository root):

    /work/venv-ref/bin/python Fixtures/tokenizers/make_goldens.py

It checks that the installed versions are exactly those pinned in Fixtures/requirements.txt (through
Fixtures/fixture_common.py, like make_traces.py), keeps `tokenizers` single-threaded (deterministic BPE training),
and writes the same bytes on every run; it prints a sha256 of the files written.
"""

import hashlib
import json
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from fixture_common import REPO, check_versions, set_environment  # noqa: E402

set_environment()
check_versions("make_goldens.py", "tokenizer goldens")

import tokenizers  # noqa: E402
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers  # noqa: E402
from tokenizers import pre_tokenizers, processors, trainers  # noqa: E402

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "corpus.txt"
VARIANTS_DIR = HERE / "variants"
OUTPUT = HERE / "goldens.json"
SEED = 20261129
FUZZ_COUNT = 300  # all of them go through the GPT-2 and Qwen2 regex pre-tokenizers
TOKENIZER_FUZZ_COUNT = 100  # the first ones also go through every tokenizer
COMPONENT_FUZZ_COUNT = 60  # and through the other components

EXTRA_TEXTS = [
    "line one\nline two\n\nline four after an empty line",
    "Windows line\r\nends\r\n\r\nhere\r\n",
    "bare\rcarriage return",
    "\n",
    "\n\n\n",
    "  \n  \n",
    "\t\n\t",
    "trailing newline\n",
    "<|im_start|>system\nYou are a dermatology assistant.<|im_end|>\n<|im_start|>user\nIs it benign?<|im_end|>\n",
    "no\u00a0break\u00a0spaces, ideographic\u3000space, en\u2002space, line\u2028separator, next\u0085line, "
    "vertical\u000btab, form\u000cfeed",
    "zero\u200bwidth space and zero\u200dwidth joiner and soft\u00adhyphen",
    "long s contraction 'ſ and Kelvin \u212a and 'K",
    "x" * 300,
    "melanoma" * 40,
    "The " + "very " * 60 + "long sentence.",
    "\u00e9\u0301 double accent, \u1e9b\u0323 long s with dots, \u0130stanbul, \u00df, \u03a3\u0391\u03a3 final sigma",
    "private use \ue000 and unassigned \U000e0001 tag, surrogate-free \U0001f9ec",
]

# Characters chosen to exercise every class the split regexes distinguish: ASCII and non-ASCII letters
# (Lu/Ll/Lt/Lm/Lo), digits and other numbers (Nd/Nl/No), \s in its Unicode breadth, \r\n, the apostrophe and the
# contraction letters in both cases (plus U+017F, which case-folds to s), punctuation, symbols, marks, format
# characters, emoji and private use.
FUZZ_ALPHABET = (
    list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
    + list("stremvldSTREMVLD") * 3
    + ["'"] * 12
    + [" "] * 14
    + ["\t", "\n", "\r", "\u000b", "\u000c", "\u0085", "\u00a0", "\u1680", "\u2003", "\u2028", "\u2029", "\u202f",
       "\u3000"]
    + list("0123456789") + ["\u0663", "\uff11", "\u00b2", "\u00bd", "\u2162", "\u2460"]
    + list("éÉßøŒſǅʰ") + ["\u03a3", "\u03c3", "\u0416", "\u05d0", "\u0627", "\u4e2d", "\u65e5", "\u3042", "\ud55c"]
    + list(".,;:!?-_()[]{}<>/\\\"#$%&*+=@^`|~") + ["\u2014", "\u2019", "\u00bf", "\u00a9", "\u20ac"]
    + ["\u0301", "\u0308", "\u200d", "\u200b", "\u00ad", "\ue000"]
    + ["\U0001f600", "\U0001f9ec", "\U0001f1eb"]
)

# (truncation kwargs or None, padding kwargs or None). `pad_id`/`pad_token` None = the tokenizer's pad token.
PADDING_CASES = [
    ({"max_length": 8}, None),
    ({"max_length": 8, "direction": "left"}, None),
    ({"max_length": 3}, None),
    (None, {"length": 40}),
    ({"max_length": 12}, {"length": 16}),
    (None, {"length": 10, "pad_to_multiple_of": 8}),
    (None, {"length": 24, "direction": "left"}),
]
PADDING_TEXT_INDICES = [0, 10, 16, 38]  # corpus lines: clinical, empty, CJK, special token inside

PAD_TOKENS = {"modernbert": "[PAD]", "qwen3": "<|endoftext|>"}


def read_corpus():
    text = CORPUS.read_text(encoding="utf-8")
    assert text.endswith("\n")
    return text[:-1].split("\n"), text


def fuzz_texts():
    rng = random.Random(SEED)
    out = []
    for _ in range(FUZZ_COUNT):
        n = rng.randint(1, 24)
        out.append("".join(rng.choice(FUZZ_ALPHABET) for _ in range(n)))
    return out


# ----------------------------------------------------------------------------------------------------------------
# Variants: small tokenizers trained on the corpus, each covering components the fixtures do not use.
# ----------------------------------------------------------------------------------------------------------------
def train(tok, trainer, corpus_lines):
    tok.train_from_iterator(corpus_lines * 3, trainer=trainer)
    return tok


def canonical(tok):
    """The tokenizer with its model vocabulary renumbered deterministically. BpeTrainer gives the initial alphabet
    (and, with a continuing_subword_prefix, its prefixed copies) ids in hash-map order, which changes from run to
    run; the merges and everything else are deterministic. Order: the trainer's special tokens (ids unchanged), then
    the other alphabet tokens by string, then the merge results in merge order."""
    state = json.loads(tok.to_str())
    model = state["model"]
    vocab = model["vocab"]
    prefix = model.get("continuing_subword_prefix") or ""
    merged = []
    for a, b in model["merges"]:
        token = a + (b[len(prefix):] if prefix and b.startswith(prefix) else b)
        if token not in merged:
            merged.append(token)
    merged_set = set(merged)
    specials = sorted((t for t in vocab if any(t == a["content"] for a in state["added_tokens"])), key=vocab.get)
    alphabet = sorted(t for t in vocab if t not in merged_set and t not in specials)
    order = specials + alphabet + [t for t in merged if t in vocab]
    assert sorted(order) == sorted(vocab) and [vocab[t] for t in specials] == list(range(len(specials)))
    model["vocab"] = {t: i for i, t in enumerate(order)}
    return Tokenizer.from_str(json.dumps(state))


def build_variants(corpus_lines):
    """Three tokenizers, written to variants/<name>.json:

    bpe-suffix-whitespace  BPE with unk_token, continuing_subword_prefix "##" and end_of_word_suffix "</w>" (characters
                           the corpus lacks become [UNK]); normalizer Sequence[NFKD, StripAccents,
                           Lowercase, Strip]; pre-tokenizer Whitespace; BertProcessing; BPEDecoder; added tokens
                           with lstrip+rstrip, single_word and normalized=true; truncation 96 and fixed padding 40
                           stored in the file.
    bpe-metaspace          BPE with fuse_unk and ignore_merges, merges in the legacy "a b" string form; normalizer
                           Sequence[Replace(Regex \\s+ -> " "), NFKC]; pre-tokenizer Metaspace(prepend_scheme
                           "first"); TemplateProcessing with a pair template and type ids; Metaspace decoder; a
                           non-special added token with rstrip.
    bytelevel-llama3       byte-level BPE with no normalizer; pre-tokenizer Sequence[Split(Llama-3 regex, isolated),
                           ByteLevel(use_regex=false)] (the Llama-3 regex differs from Qwen2's by \\p{N}{1,3});
                           RobertaProcessing; ByteLevel decoder; a special added token.
    """
    VARIANTS_DIR.mkdir(exist_ok=True)
    written = {}

    # 1. bpe-suffix-whitespace
    tok = Tokenizer(models.BPE(unk_token="[UNK]", continuing_subword_prefix="##", end_of_word_suffix="</w>"))
    tok.normalizer = normalizers.Sequence(
        [normalizers.NFKD(), normalizers.StripAccents(), normalizers.Lowercase(), normalizers.Strip()])
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    specials = ["[UNK]", "[CLS]", "[SEP]", "[PAD]", "[MASK]"]
    tok = canonical(train(tok, trainers.BpeTrainer(vocab_size=420, min_frequency=2, show_progress=False,
                                                   special_tokens=specials, continuing_subword_prefix="##",
                                                   end_of_word_suffix="</w>"), corpus_lines))
    tok.add_special_tokens([AddedToken("[MASK]", lstrip=True, rstrip=True, normalized=False, special=True)])
    tok.add_tokens([AddedToken("<ent>", single_word=True, normalized=False),
                    AddedToken("Melanoma", normalized=True),
                    AddedToken("mm²", normalized=False)])
    tok.post_processor = processors.BertProcessing(("[SEP]", tok.token_to_id("[SEP]")),
                                                   ("[CLS]", tok.token_to_id("[CLS]")))
    tok.decoder = decoders.BPEDecoder(suffix="</w>")
    tok.enable_truncation(max_length=96)
    tok.enable_padding(length=40, pad_id=tok.token_to_id("[PAD]"), pad_token="[PAD]")
    written["bpe-suffix-whitespace"] = tok

    # 2. bpe-metaspace
    tok = Tokenizer(models.BPE(unk_token="<unk>", fuse_unk=True))
    tok.normalizer = normalizers.Sequence([normalizers.Replace(Regex(r"\s+"), " "), normalizers.NFKC()])
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="first", split=True)
    specials = ["<unk>", "<s>", "</s>", "<pad>"]
    tok = canonical(train(tok, trainers.BpeTrainer(vocab_size=500, min_frequency=2, show_progress=False,
                                                   special_tokens=specials), corpus_lines))
    tok.add_tokens([AddedToken("<sep>", rstrip=True, normalized=False)])
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s>:1 $B:1 </s>:1",
        special_tokens=[("<s>", tok.token_to_id("<s>")), ("</s>", tok.token_to_id("</s>"))])
    tok.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="first", split=True)
    state = json.loads(tok.to_str())
    state["model"]["ignore_merges"] = True
    state["model"]["merges"] = [" ".join(pair) for pair in state["model"]["merges"]]  # legacy "a b" form
    written["bpe-metaspace"] = Tokenizer.from_str(json.dumps(state))

    # 3. bytelevel-llama3
    llama3 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
              r"|\s*[\r\n]+|\s+(?!\S)|\s+")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(llama3), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    specials = ["<s>", "</s>", "<pad>"]
    tok = canonical(train(tok, trainers.BpeTrainer(vocab_size=600, min_frequency=2, show_progress=False,
                                                   special_tokens=specials,
                                                   initial_alphabet=pre_tokenizers.ByteLevel.alphabet()),
                          corpus_lines))
    tok.add_special_tokens([AddedToken("<|eot|>", special=True, normalized=False)])
    tok.post_processor = processors.RobertaProcessing(("</s>", tok.token_to_id("</s>")),
                                                      ("<s>", tok.token_to_id("<s>")))
    tok.decoder = decoders.ByteLevel()
    written["bytelevel-llama3"] = tok

    for name, tok in written.items():
        text = json.dumps(json.loads(tok.to_str()), ensure_ascii=False, indent=2) + "\n"
        (VARIANTS_DIR / f"{name}.json").write_text(text, encoding="utf-8")
    return {name: VARIANTS_DIR / f"{name}.json" for name in written}


# ----------------------------------------------------------------------------------------------------------------
# Goldens
# ----------------------------------------------------------------------------------------------------------------
def encode_all(tok, texts):
    """ids with and without special tokens, and both decodes of the ids with special tokens. The attention mask is
    recorded only for tokenizers whose file sets padding (it is all ones otherwise)."""
    rows = []
    for text in texts:
        with_special = tok.encode(text, add_special_tokens=True)
        without = tok.encode(text, add_special_tokens=False)
        row = {
            "text": text,
            "ids": with_special.ids,
            "ids_no_special": without.ids,
            "decoded": tok.decode(with_special.ids, skip_special_tokens=False),
            "decoded_skip_special": tok.decode(with_special.ids, skip_special_tokens=True),
        }
        if tok.padding is not None:
            row["attention_mask"] = with_special.attention_mask
        rows.append(row)
    return rows


def encode_pairs(tok, lines):
    rows = []
    for a, b in zip(lines[:12], lines[1:13]):
        enc = tok.encode(a, b, add_special_tokens=True)
        rows.append({"a": a, "b": b, "ids": enc.ids, "type_ids": enc.type_ids,
                     "ids_no_special": tok.encode(a, b, add_special_tokens=False).ids})
    return rows


def padding_cases(tok, pad_token, lines):
    rows = []
    for truncation, padding in PADDING_CASES:
        tok.no_truncation()
        tok.no_padding()
        case = {"truncation": None, "padding": None, "encodings": []}
        if truncation is not None:
            params = {"max_length": truncation["max_length"], "stride": 0, "strategy": "longest_first",
                      "direction": truncation.get("direction", "right")}
            tok.enable_truncation(**params)
            case["truncation"] = params
        if padding is not None:
            params = {"length": padding["length"], "pad_id": tok.token_to_id(pad_token), "pad_type_id": 0,
                      "pad_token": pad_token, "direction": padding.get("direction", "right"),
                      "pad_to_multiple_of": padding.get("pad_to_multiple_of")}
            tok.enable_padding(**params)
            case["padding"] = params
        for i in PADDING_TEXT_INDICES:
            for special in (True, False):
                enc = tok.encode(lines[i], add_special_tokens=special)
                case["encodings"].append({"text": lines[i], "add_special_tokens": special, "ids": enc.ids,
                                          "attention_mask": enc.attention_mask, "type_ids": enc.type_ids,
                                          "special_tokens_mask": enc.special_tokens_mask})
        rows.append(case)
    tok.no_truncation()
    tok.no_padding()
    return rows


def component_cases(texts, fuzz):
    """The inputs once ("short": the texts and the first COMPONENT_FUZZ_COUNT fuzz strings; "all": the texts and all
    the fuzz), then per component its JSON, which inputs it ran on, and its outputs in input order: the normalized
    string (null when unchanged) or the list of pre-tokenizer pieces. Decoder cases are [tokens, decoded]."""
    qwen2 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
             r"|\s*[\r\n]+|\s+(?!\S)|\s+")
    short = texts + fuzz[:COMPONENT_FUZZ_COUNT]  # most components: the texts and some fuzz
    everything = texts + fuzz  # the regex pre-tokenizers: all the fuzz
    normalizer_list = [
        normalizers.NFC(), normalizers.NFD(), normalizers.NFKC(), normalizers.NFKD(), normalizers.Lowercase(),
        normalizers.Strip(left=True, right=True), normalizers.Strip(left=False, right=True),
        normalizers.StripAccents(), normalizers.Replace(" ", "\u2581"), normalizers.Replace(Regex(r"\s+"), " "),
        normalizers.Replace(Regex(r"[0-9]"), "#"), normalizers.Prepend("\u2581"),
        normalizers.Sequence([normalizers.NFD(), normalizers.StripAccents(), normalizers.Lowercase()]),
        normalizers.BertNormalizer(),
        normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=False, strip_accents=False, lowercase=False),
    ]
    pre_tokenizer_list = [
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        pre_tokenizers.ByteLevel(add_prefix_space=True, use_regex=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        pre_tokenizers.Split(Regex(qwen2), behavior="isolated", invert=False),
        pre_tokenizers.Whitespace(), pre_tokenizers.WhitespaceSplit(),
        pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always", split=True),
        pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="never", split=False),
        pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.Digits(individual_digits=False),
        pre_tokenizers.Punctuation(), pre_tokenizers.Punctuation(behavior="merged_with_next"),
        pre_tokenizers.BertPreTokenizer(), pre_tokenizers.CharDelimiterSplit("-"),
    ]
    for behavior in ("removed", "isolated", "merged_with_previous", "merged_with_next", "contiguous"):
        for invert in (False, True):
            pre_tokenizer_list.append(pre_tokenizers.Split(Regex(r"\s+|[,.;:]"), behavior=behavior, invert=invert))
    pre_tokenizer_list += [
        pre_tokenizers.Split(" ", behavior="merged_with_previous"),
        pre_tokenizers.Split(Regex(r"(?i:ab|c)+|\d{2,3}?|[^\s\w]|\b"), behavior="isolated"),
        pre_tokenizers.Split(Regex(r"(?=[A-Z])|x*"), behavior="removed"),
        pre_tokenizers.Split(Regex(r"\p{Lu}\p{Ll}*|\p{Nd}+|[\p{P}\p{S}]|\w+"), behavior="isolated"),
        pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Digits(individual_digits=True)]),
    ]
    rows = []
    for n in normalizer_list:
        outputs = [n.normalize_str(t) for t in short]
        rows.append({"kind": "normalizer", "config": json.loads(n.__getstate__()), "inputs": "short",
                     "outputs": [None if out == t else out for t, out in zip(short, outputs)]})
    for i, p in enumerate(pre_tokenizer_list):
        inputs = "all" if i in (0, 3) else "short"  # ByteLevel with the GPT-2 regex, and the Qwen2 Split
        rows.append({"kind": "pre_tokenizer", "config": json.loads(p.__getstate__()), "inputs": inputs,
                     "outputs": [[piece for piece, _ in p.pre_tokenize_str(t)]
                                 for t in (everything if inputs == "all" else short)]})
    token_lists = [
        ["\u0120hello", "\u0120w", "orld", "[MASK]", "\u00c3\u00a9", "\u00e2\u0122\u0136", "\u00f0\u0141", "\u013a"],
        ["\u2581Hello", "\u2581wor", "ld", "\u2581", "<0x41>", "!"],
        ["hel", "lo</w>", "wor", "ld</w>", "!</w>"],
        ["hello", "##wor", "##ld", "!", "do", "n't", "."],
        [],
    ]
    decoder_list = [
        decoders.ByteLevel(), decoders.Metaspace(prepend_scheme="always"), decoders.Metaspace(prepend_scheme="never"),
        decoders.BPEDecoder(suffix="</w>"), decoders.WordPiece(prefix="##", cleanup=True),
        decoders.Sequence([decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse(),
                           decoders.Strip(content=" ", left=1, right=0)]),
    ]
    for d in decoder_list:
        rows.append({"kind": "decoder", "config": json.loads(d.__getstate__()),
                     "cases": [[tokens, d.decode(tokens)] for tokens in token_lists]})
    return {"inputs": {"short": short, "all": everything}, "cases": rows}


def dump(obj, indent=0):
    """JSON with one line per leaf list or case, so that diffs of goldens.json stay readable."""
    pad = "  " * indent
    if isinstance(obj, dict) and obj:
        items = [f'{pad}  {json.dumps(k)}: {dump(v, indent + 1).lstrip()}' for k, v in obj.items()]
        return pad + "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(obj, list) and obj and all(isinstance(x, (dict, list)) for x in obj) and indent < 5:
        return pad + "[\n" + ",\n".join(dump(x, indent + 1) for x in obj) + "\n" + pad + "]"
    return pad + json.dumps(obj, ensure_ascii=False)


def main():
    lines, whole = read_corpus()
    fuzz = fuzz_texts()
    texts = lines + EXTRA_TEXTS + [whole]
    variant_paths = build_variants(lines)
    paths = {"modernbert": HERE / "modernbert" / "tokenizer.json", "qwen3": HERE / "qwen3" / "tokenizer.json"}
    paths.update(variant_paths)

    goldens = {
        "generator": "Fixtures/tokenizers/make_goldens.py",
        "tokenizers_version": tokenizers.__version__,
        "seed": SEED,
        "tokenizers": {},
        "components": component_cases(texts, fuzz),
    }
    for name, path in paths.items():
        tok = Tokenizer.from_file(str(path))
        entry = {
            "path": str(path.relative_to(REPO)),
            "encodings": encode_all(tok, texts + fuzz[:TOKENIZER_FUZZ_COUNT]),
            "pairs": encode_pairs(tok, lines),
        }
        if name in PAD_TOKENS:
            entry["padding_cases"] = padding_cases(tok, PAD_TOKENS[name], lines)
        goldens["tokenizers"][name] = entry

    OUTPUT.write_text(dump(goldens) + "\n", encoding="utf-8")
    digest = hashlib.sha256()
    for p in [OUTPUT] + sorted(variant_paths.values()):
        digest.update(p.read_bytes())
        print(f"wrote {p.relative_to(REPO)} ({p.stat().st_size} bytes)")
    print(f"sha256 over goldens.json and variants/: {digest.hexdigest()}")


if __name__ == "__main__":
    main()
