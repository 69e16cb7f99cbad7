#!/usr/bin/env python3
"""Write a large byte-level BPE tokenizer.json (about 10 MB, 150k vocabulary, Qwen3's pipeline) and a text to encode,
for the tokenizer load-time and throughput benchmark (Fixtures/bench/bench_tokenizers.py).

Real tokenizers of this size (Qwen3's is 11 MB: 151,643 BPE tokens and 151,387 merges) cannot be downloaded here, so
this trains one with the `tokenizers` library on a synthetic corpus: a seeded lexicon of random words made of
syllables (Latin letters with some accented, Greek, Cyrillic and CJK words), drawn with Zipf-like frequencies, mixed
with numbers, punctuation and clinical phrases. The pipeline is Qwen3's (normalizer NFC, pre-tokenizer
Sequence[Split(Qwen2 regex, isolated), ByteLevel(use_regex=false)], ByteLevel post-processor and decoder) and the
added tokens are Qwen3's first three. The outputs must NOT go inside the repository: the directory is given on the
command line and the script refuses any path inside the repo.

Usage (from the repository root, with /work/venv-ref or any venv made from Fixtures/requirements.txt):

    /work/venv-ref/bin/python Fixtures/bench/make_bench_tokenizer.py OUT_DIR [--vocab 150000]

writes OUT_DIR/tokenizer.json and OUT_DIR/bench_text.txt (about 4 MB of lines from the same generator with a different
seed, plus every line of Fixtures/tokenizers/corpus.txt). Deterministic for a given `tokenizers` version (BPE
training runs single-threaded). Takes a few minutes.
"""
import argparse
import itertools
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from fixture_common import FIXTURES, REPO, set_environment  # noqa: E402

set_environment()

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers  # noqa: E402
from tokenizers import pre_tokenizers, processors, trainers  # noqa: E402

QWEN2_PRETOKENIZE_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
LATIN_SYLLABLES = [c + v for c in "bcdfghjklmnprstvwz" for v in "aeiou"] + ["th", "ch", "sh", "qu", "str", "pl"]
ACCENTED = list("éèêëàâäîïôöùûüçñ")
GREEK = "αβγδεζηθικλμνξοπρστυφχψω"
CYRILLIC = "абвгдежзийклмнопрстуфхцчшщыэюя"
CJK = [chr(c) for c in range(0x4E00, 0x4E00 + 3000)]
PHRASES = ["pigmented lesion", "basal cell carcinoma", "melanoma in situ", "Breslow thickness", "dermoscopy",
           "risk factors", "family history", "sunburn", "immunosuppressed", "naevus count", "It's", "they'll"]


def make_lexicon(rng, size):
    words = []
    for i in range(size):
        kind = rng.random()
        if kind < 0.80:
            word = "".join(rng.choice(LATIN_SYLLABLES) for _ in range(rng.randint(1, 5)))
            if rng.random() < 0.15:
                k = rng.randrange(len(word))
                word = word[:k] + rng.choice(ACCENTED) + word[k + 1:]
            if rng.random() < 0.2:
                word = word.capitalize()
        elif kind < 0.88:
            word = "".join(rng.choice(GREEK) for _ in range(rng.randint(2, 8)))
        elif kind < 0.95:
            word = "".join(rng.choice(CYRILLIC) for _ in range(rng.randint(2, 9)))
        else:
            word = "".join(rng.choice(CJK) for _ in range(rng.randint(1, 4)))
        words.append(word)
    return words


def make_lines(rng, lexicon, count):
    # Zipf-like: word i has weight 1 / (i + 10)
    cumulative = list(itertools.accumulate(1.0 / (i + 10) for i in range(len(lexicon))))
    lines = []
    for _ in range(count):
        n = rng.randint(4, 30)
        parts = rng.choices(lexicon, cum_weights=cumulative, k=n)
        for j in range(len(parts)):
            r = rng.random()
            if r < 0.05:
                parts[j] = str(rng.randint(0, 100000))
            elif r < 0.08:
                parts[j] = rng.choice(PHRASES)
            elif r < 0.12:
                parts[j] += rng.choice([",", ".", ";", ":", "!", "?", ")", "'s"])
        lines.append(" ".join(parts))
    return lines


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--vocab", type=int, default=150_000)
    parser.add_argument("--lexicon", type=int, default=400_000)
    parser.add_argument("--train-lines", type=int, default=400_000)
    parser.add_argument("--bench-lines", type=int, default=40_000)
    args = parser.parse_args()
    out = args.out.resolve()
    if out == REPO or REPO in out.parents:
        sys.exit(f"make_bench_tokenizer.py: {out} is inside the repository; write the benchmark files elsewhere")
    out.mkdir(parents=True, exist_ok=True)

    rng = random.Random(20261129)
    lexicon = make_lexicon(rng, args.lexicon)
    train_lines = make_lines(rng, lexicon, args.train_lines)

    tok = Tokenizer(models.BPE(unk_token=None, fuse_unk=False, byte_fallback=False))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_PRETOKENIZE_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
    ])
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=args.vocab, min_frequency=2, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(train_lines, trainer=trainer)
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False)
                            for t in ("<|endoftext|>", "<|im_start|>", "<|im_end|>")])
    tok.save(str(out / "tokenizer.json"))

    bench_rng = random.Random(7)
    corpus = (FIXTURES / "tokenizers" / "corpus.txt").read_text(encoding="utf-8").splitlines()
    bench_lines = make_lines(bench_rng, lexicon, args.bench_lines) + corpus
    (out / "bench_text.txt").write_text("\n".join(bench_lines) + "\n", encoding="utf-8")

    size = (out / "tokenizer.json").stat().st_size
    text_size = (out / "bench_text.txt").stat().st_size
    print(f"wrote {out / 'tokenizer.json'}: {size / 1e6:.1f} MB, vocab {tok.get_vocab_size()}; "
          f"{out / 'bench_text.txt'}: {len(bench_lines)} lines, {text_size / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
