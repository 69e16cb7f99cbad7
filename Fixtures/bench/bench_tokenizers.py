#!/usr/bin/env python3
"""Tokenizer benchmark: load time of a large tokenizer.json and encoding throughput, PrimaTokenizers (through
`prima-convert tokenize --stats`, release build) against the Python `tokenizers` library, same machine, same run.

Usage (from the repository root, with /work/venv-ref or any venv made from Fixtures/requirements.txt):

    /work/venv-ref/bin/python Fixtures/bench/make_bench_tokenizer.py /work/bench-tok     # once, outside the repo
    /work/venv-ref/bin/python Fixtures/bench/bench_tokenizers.py /work/bench-tok [--repeat 5]

DIR holds tokenizer.json and bench_text.txt (written by make_bench_tokenizer.py). Measured, each the median of
--repeat runs after one warm-up run:
  * load: Python `Tokenizer.from_file(path)` in a fresh process (the Rust side parses the JSON into the model);
    ours: the time `prima-convert tokenize --stats` reports for `Tokenizer(contentsOfFile:)`;
  * encode, one thread, every line of bench_text.txt: Python `tok.encode(line)` in a loop (what a Python caller
    pays per text), and `tok.encode_batch(lines)` with RAYON_NUM_THREADS=1 (the Rust loop without Python overhead);
    ours: the encode time --stats reports (stdin reading and output formatting excluded);
  * also Python `encode_batch` with 2 threads, for reference (our command encodes on one thread);
  * process wall time and peak RSS (GNU time) of the whole `prima-convert tokenize` run.
It also checks that both sides give the same ids for every line, and prints a Markdown table for Docs/benchmarks.md.
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

WORKER = r"""
import json, sys, time
from tokenizers import Tokenizer
path, text_path, mode = sys.argv[1], sys.argv[2], sys.argv[3]
start = time.perf_counter()
tok = Tokenizer.from_file(path)
load = time.perf_counter() - start
result = {"load": load}
if mode != "load":
    lines = open(text_path, encoding="utf-8").read().split("\n")[:-1]
    start = time.perf_counter()
    if mode == "loop":
        ids = [tok.encode(line).ids for line in lines]
    else:
        ids = [e.ids for e in tok.encode_batch(lines)]
    result["encode"] = time.perf_counter() - start
    result["tokens"] = sum(len(i) for i in ids)
    if len(sys.argv) > 4:
        with open(sys.argv[4], "w") as f:
            for i in ids:
                f.write(json.dumps(i) + "\n")
print(json.dumps(result))
"""


def python_run(tokenizer, text, mode, threads, ids_out=None):
    env = dict(os.environ, RAYON_NUM_THREADS=str(threads), TOKENIZERS_PARALLELISM="true" if threads > 1 else "false")
    args = [sys.executable, "-c", WORKER, str(tokenizer), str(text), mode] + ([str(ids_out)] if ids_out else [])
    return json.loads(subprocess.run(args, env=env, check=True, capture_output=True, text=True).stdout)


STATS = re.compile(r"loaded .* in ([0-9.]+) s .*encoded (\d+) lines, (\d+) bytes, (\d+) tokens in ([0-9.]+) s")


def ours_run(binary, tokenizer, text, ids_out, workdir):
    timing = workdir / "time.txt"
    with open(text, "rb") as stdin, open(ids_out, "wb") as stdout:
        completed = subprocess.run(["/usr/bin/time", "-f", "%e %M", "-o", str(timing), str(binary), "tokenize",
                                    str(tokenizer), "--stats"], stdin=stdin, stdout=stdout, stderr=subprocess.PIPE,
                                   check=True, text=True)
    match = STATS.search(completed.stderr)
    if not match:
        sys.exit(f"bench_tokenizers.py: cannot read the --stats line in: {completed.stderr!r}")
    wall, rss_kb = timing.read_text().split()
    return {"load": float(match.group(1)), "bytes": int(match.group(3)), "tokens": int(match.group(4)),
            "encode": float(match.group(5)), "wall": float(wall), "rss_mb": int(rss_kb) / 1024}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("dir", type=Path)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--no-build", action="store_true", help="use the existing release build")
    args = parser.parse_args()
    tokenizer, text = args.dir / "tokenizer.json", args.dir / "bench_text.txt"
    if not args.no_build:
        subprocess.run(["swift", "build", "-c", "release", "--product", "prima-convert"], cwd=REPO, check=True,
                       stdout=subprocess.DEVNULL)
    binary = REPO / ".build" / "release" / "prima-convert"
    text_bytes = len(text.read_bytes().replace(b"\n", b""))
    lines = text.read_text(encoding="utf-8").count("\n")

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        # Warm-ups (page cache, first-use tables), and the ids of both sides for the parity check.
        python_run(tokenizer, text, "batch", 1, work / "python_ids.txt")
        ours_run(binary, tokenizer, text, work / "ours_ids.txt", work)
        python_ids = (work / "python_ids.txt").read_text().splitlines()
        ours_ids = (work / "ours_ids.txt").read_text().splitlines()
        same = sum(1 for a, b in zip(python_ids, ours_ids) if json.loads(a) == json.loads(b))
        parity = f"{same}/{len(python_ids)} lines identical" + ("" if len(python_ids) == len(ours_ids) else
                                                                f" (line counts {len(python_ids)} vs {len(ours_ids)})")

        results = {"py_load": [], "py_loop": [], "py_batch1": [], "py_batch2": [], "ours": []}
        for _ in range(args.repeat):
            results["py_load"].append(python_run(tokenizer, text, "load", 1))
            results["py_loop"].append(python_run(tokenizer, text, "loop", 1))
            results["py_batch1"].append(python_run(tokenizer, text, "batch", 1))
            results["py_batch2"].append(python_run(tokenizer, text, "batch", 2))
            results["ours"].append(ours_run(binary, tokenizer, text, work / "ours_ids.txt", work))

    def median(name, key):
        return statistics.median(r[key] for r in results[name])

    size_mb = tokenizer.stat().st_size / 1e6
    tokens = results["ours"][0]["tokens"]
    mb = text_bytes / 1e6
    print(f"tokenizer.json: {size_mb:.1f} MB; text: {lines} lines, {mb:.2f} MB, {tokens} tokens; "
          f"ids: {parity}; medians of {args.repeat} runs\n")
    print("| measurement | Python tokenizers | PrimaTokenizers | ratio (ours / Python) |")
    print("|---|---|---|---|")
    py_load, our_load = median("py_load", "load"), median("ours", "load")
    print(f"| load tokenizer.json | {py_load:.3f} s | {our_load:.3f} s | {our_load / py_load:.2f} |")
    our_encode = median("ours", "encode")
    for label, name in [("encode, 1 thread, `encode` per line", "py_loop"),
                        ("encode, 1 thread, `encode_batch`", "py_batch1")]:
        t = median(name, "encode")
        print(f"| {label} | {t:.3f} s ({mb / t:.2f} MB/s) | {our_encode:.3f} s ({mb / our_encode:.2f} MB/s) "
              f"| {our_encode / t:.2f} |")
    t2 = median("py_batch2", "encode")
    print(f"| encode, 2 threads, `encode_batch` (reference) | {t2:.3f} s ({mb / t2:.2f} MB/s) | - | - |")
    print(f"\nprima-convert tokenize, whole process: {median('ours', 'wall'):.2f} s wall, "
          f"peak RSS {max(r['rss_mb'] for r in results['ours']):.0f} MB")


if __name__ == "__main__":
    main()
