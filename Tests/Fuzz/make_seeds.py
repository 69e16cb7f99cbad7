#!/usr/bin/env python3
"""Writes the seed inputs of every fuzz target into seeds/TARGET/ (deterministic: the same files on every run).

Seeds are small valid inputs taken from the repository's fixtures plus hand-made edge cases; run.sh starts
libFuzzer from them and from corpus/TARGET (what earlier runs found, minimised). Standard library and h5py (for the schema stored in the bundled checkpoint).
Usage: /usr/bin/python3 Tests/Fuzz/make_seeds.py
"""
import hashlib
import json
import pathlib
import shutil
import struct

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parents[1]
FIXTURES = ROOT / "Fixtures"


def write(target, data):
    if isinstance(data, str):
        data = data.encode("utf-8")
    directory = HERE / "seeds" / target
    directory.mkdir(parents=True, exist_ok=True)
    (directory / hashlib.sha1(data).hexdigest()).write_bytes(data)


def safetensors(tensors, metadata=None):
    """A safetensors file: {name: (dtype, shape, bytes)} laid out in the given order."""
    header, data = {}, b""
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, (dtype, shape, raw) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + data


def main():
    shutil.rmtree(HERE / "seeds", ignore_errors=True)

    # safetensors: hand-made small files covering every dtype, 0-d and empty tensors, metadata.
    floats = struct.pack("<4f", 1.0, -2.0, 0.5, 3.25)
    write("safetensors", safetensors({"w": ("F32", [2, 2], floats)}))
    write("safetensors", safetensors({"a": ("F16", [2], b"\x00\x3c\x00\xc0"), "b": ("BF16", [1], b"\x80\x3f")},
                                     metadata={"format": "pt"}))
    write("safetensors", safetensors({"s": ("F32", [], floats[:4]), "e": ("F32", [0, 3], b"")}))
    write("safetensors", safetensors({"i": ("I64", [1], struct.pack("<q", 7)), "u": ("U8", [3], b"abc"),
                                      "t": ("BOOL", [2], b"\x00\x01"), "h": ("I8", [2], b"\x7f\x80")}))
    write("safetensors", safetensors({}))
    write("safetensors", safetensors({}, metadata={}))

    # json: the fixtures' small JSON files and edge cases of the grammar.
    for path in sorted(FIXTURES.glob("models/*/config.json")) + sorted(FIXTURES.glob("models/*/tokenizer_config.json")):
        write("json", path.read_bytes())
    for text in ['{}', '[]', '0', '-0.0e-0', '"\\u00e9\\ud83d\\ude00"', '[1, 2.5, -3e300, true, false, null]',
                 '{"a": {"b": [{"c": "d"}]}}', '9007199254740993', '"\\/\\b\\f\\n\\r\\t"', ' \t\r\n{"k" : 1 } ']:
        write("json", text)

    # tokenizer: every fixture tokenizer.json, alone and with a NUL and a text to encode.
    texts = ["Hello world", "  Leading spaces and CAPS 123 4567 ", "naïve café — déjà vu", "日本語のテキスト 😀👍🏽",
             "don't won't I'm", "\t\n\r mixed\u00a0whitespace\u2003", ""]
    tokenizers = sorted(FIXTURES.glob("tokenizers/*/tokenizer.json")) + sorted(FIXTURES.glob("tokenizers/variants/*.json"))
    for index, path in enumerate(tokenizers):
        data = path.read_bytes()
        write("tokenizer", data)
        write("tokenizer", data + b"\x00" + texts[index % len(texts)].encode())
    minimal_wordpiece = {"version": "1.0", "truncation": None, "padding": None, "added_tokens": [],
                         "normalizer": {"type": "BertNormalizer", "clean_text": True, "handle_chinese_chars": True,
                                        "strip_accents": None, "lowercase": True},
                         "pre_tokenizer": {"type": "BertPreTokenizer"}, "post_processor": None, "decoder": None,
                         "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
                                   "max_input_chars_per_word": 100,
                                   "vocab": {"[UNK]": 0, "hello": 1, "world": 2, "##s": 3, "a": 4}}}
    write("tokenizer", json.dumps(minimal_wordpiece).encode() + b"\x00hello worlds a")
    split_bpe = {"version": "1.0", "truncation": None, "padding": None, "added_tokens": [], "normalizer": None,
                 "pre_tokenizer": {"type": "Split", "pattern": {"Regex": "\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+|\\s+"},
                                   "behavior": "Isolated", "invert": False},
                 "post_processor": None, "decoder": None,
                 "model": {"type": "BPE", "dropout": None, "unk_token": "?", "continuing_subword_prefix": None,
                           "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
                           "vocab": {"?": 0, "a": 1, "b": 2, "ab": 3, "1": 4, " ": 5}, "merges": ["a b"]}}
    write("tokenizer", json.dumps(split_bpe).encode() + b"\x00ab ab 111 ?!")

    # metadata-csv: the bundled case folder's table, and edge cases of quoting and blanks.
    csv = (FIXTURES / "prima" / "cases" / "metadata.csv").read_bytes()
    write("metadata-csv", csv)
    lines = csv.split(b"\n")
    write("metadata-csv", b"\r\n".join(lines[:3]) + b"\r\n")
    write("metadata-csv", lines[0] + b"\n")
    write("metadata-csv", lines[0].replace(b",", b";") + b"\n")
    write("metadata-csv", lines[0] + b"\n" + lines[1].replace(b"NECK", b"\"NE,CK\"") + b"\n\"unterminated\n")

    # metadata-json: the sample record and variations of types and blanks.
    sample = (FIXTURES / "prima" / "cases" / "sample.json").read_bytes()
    write("metadata-json", sample)
    record = json.loads(sample)
    for key in list(record)[:5]:
        variant = dict(record)
        variant[key] = None
        write("metadata-json", json.dumps(variant))
    write("metadata-json", json.dumps({"age": "55", "region": "face", "itch": "UNK", "diameter_1": 1e308}))
    write("metadata-json", "{}")

    # metadata-schema: the schema the bundled checkpoint stores, as prima-convert import writes it.
    import h5py  # Debian's python3-h5py, which .ci/install-deps installs

    with h5py.File(FIXTURES / "prima" / "tiny-prima.h5", "r") as checkpoint:
        schema = bytes(checkpoint["prima/files/metadata_schema.json"][()])
    write("metadata-schema", schema)
    parsed = json.loads(schema)
    parsed["fields"] = parsed["fields"][:3]
    write("metadata-schema", json.dumps(parsed, indent=1))
    for text in ['{"format": "prima-metadata-schema", "version": 1, "fields": []}', '{}', '[]']:
        write("metadata-schema", text)

    # checkpoint: the bundled PRIMA checkpoint (all three components and /prima), and copies with one attribute or
    # link removed, so that the fuzzer starts from files that pass and files that fail at different checks.
    tiny = (FIXTURES / "prima" / "tiny-prima.h5").read_bytes()
    write("checkpoint", tiny)
    for victim in ("prima", "decoder/config", "text_encoder/files/config.json"):
        copy = HERE / "seeds" / "checkpoint.tmp"
        copy.write_bytes(tiny)
        with h5py.File(copy, "r+") as checkpoint:
            del checkpoint[victim]
        write("checkpoint", copy.read_bytes())
        copy.unlink()

    # png: every small fixture image, corrupt ones included.
    for path in sorted(FIXTURES.glob("images/**/*.png")):
        if path.stat().st_size <= 16384:
            write("png", path.read_bytes())


if __name__ == "__main__":
    main()
