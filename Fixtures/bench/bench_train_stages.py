"""Training-stage benchmark (issue 11, "Performance"): seconds per optimiser step of each PRIMA stage, prima-train
against the PyTorch + PEFT reference trainer (Formats/python/prima_ref/train.py) on the same checkpoint, data and
settings, same machine and thread count, measured in one run.

Usage (from the repository root, with the venv of Fixtures/requirements.txt; `swift build -c release` first):
    python Fixtures/bench/bench_train_stages.py --image DINO_DIR --text BERT_DIR --decoder QWEN_DIR --work DIR \\
        [--threads 2] [--steps 4] [--stages stage2b,stage3,stage2,stage1] [--batch 8,8,8,4]

The three model directories are Hugging Face directories (full-size random-weight models as
Fixtures/bench/make_full_size.py writes them: ViT-B/16, the Clinical-ModernBERT-shaped BERT with its MLM head,
Qwen3-0.6B or 1.7B). The script
  1. assembles them into one PRIMA checkpoint (`prima-convert import --labels ACK,BCC,MEL,NEV,SCC,SEK`, seeded
     heads), kept in WORK between runs;
  2. writes a PAD-UFES-20-layout case folder of enough cases for STEPS + 1 steps of every stage (fold 0 of 5 by
     lesion): the bundled case folder's rows and images (Fixtures/prima/cases) repeated under new patient, lesion and
     image ids; and, for stage 1, the bundled corpus repeated;
  3. per stage runs `prima-train STAGE --epochs 1 --threads T` (release build, under GNU time for the peak RSS) and
     takes the median of its per-step `seconds` in OUT.jsonl after the first step; then the reference trainer
     `python -m prima_ref.train STAGE … --max-steps STEPS+1 --threads T` (torch.set_num_threads(T), under GNU time)
     and the median of its step times after the first;
  4. prints a Markdown table: the CPU (model and flags), per stage ours and PyTorch's seconds per step, their ratio,
     samples per second, both peak RSS, and for stage 3 an epoch over 2,000 cases estimated from the step time.

Both sides run the same stage arithmetic (the parity fixtures of Fixtures/train/parity prove it step for step); the
timing covers a whole optimiser step: data (decode, augment, tokenize), forward, backward, clipping and AdamW. The
reference trainer's first step includes its setup and is left out, as ours is.
"""
import argparse
import csv
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CASES = REPO / "Fixtures" / "prima" / "cases"
CORPUS = REPO / "Fixtures" / "train" / "corpus.jsonl"
BIN = REPO / ".build" / "release"  # --bin: the directory of the toolkit's binaries
# Docs/prima-model.md's learning rate, weight decay and LoRA rank per stage (StageOptions.defaults).
STAGES = {"stage1": (5e-5, 1e-3, 8), "stage2": (3e-5, 1e-3, 32), "stage2b": (3e-5, 1e-3, 32), "stage3": (1e-5, 3e-2, 16)}


def cpu() -> str:
    info = Path("/proc/cpuinfo").read_text()
    model = re.search(r"model name\s*:\s*(.*)", info).group(1).strip()
    flags = set(re.search(r"flags\s*:\s*(.*)", info).group(1).split())
    kept = [f for f in ("avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "amx_tile") if f in flags]
    return f"{model} ({os.cpu_count()} CPUs; {', '.join(kept)})"


def timed(command, env=None):
    """Runs `command` under GNU time: (stdout, peak RSS in MiB); raises on failure."""
    result = subprocess.run(["/usr/bin/time", "-f", "RSS_KB %M"] + command, capture_output=True, text=True, env=env)
    if result.returncode != 0:
        sys.exit(f"{' '.join(command[:3])}…: exit {result.returncode}\n{result.stderr[-2000:]}")
    rss = int(re.findall(r"RSS_KB (\d+)", result.stderr)[-1]) / 1024
    return result.stdout, rss


def case_folder(work: Path, count: int) -> Path:
    """`count` cases: the bundled rows and images repeated under new ids (every lesion its own patient)."""
    folder = work / f"cases-{count}"
    if (folder / "metadata.csv").exists():
        return folder
    (folder / "imgs").mkdir(parents=True, exist_ok=True)
    with open(CASES / "metadata.csv", newline="") as f:
        reader = csv.DictReader(f)
        fields, rows = reader.fieldnames, list(reader)
    images = {p.name: p for p in CASES.rglob("*.png")}
    out = []
    for i in range(count):
        row = dict(rows[i % len(rows)])
        source = images[row["img_id"]]
        row["patient_id"], row["lesion_id"], row["img_id"] = f"PAT_{9000 + i}", str(20000 + i), f"PAT_{9000 + i}_{20000 + i}_{i}.png"
        shutil.copyfile(source, folder / "imgs" / row["img_id"])
        out.append(row)
    with open(folder / "metadata.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(out)
    return folder


def corpus(work: Path, count: int) -> Path:
    lines = [line for line in CORPUS.read_text().splitlines() if line.strip()]
    path = work / f"corpus-{count}.jsonl"
    path.write_text("\n".join(lines[i % len(lines)] for i in range(count)) + "\n")
    return path


def ours(stage, checkpoint, data, work, batch, threads):
    output = work / f"ours-{stage}.h5"
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
    lr, decay, rank = STAGES[stage]
    flag = "--corpus" if stage == "stage1" else "--data"
    _, rss = timed([str(BIN / "prima-train"), stage, "--checkpoint", str(checkpoint), flag, str(data), "-o", str(output),
                    "--epochs", "1", "--batch-size", str(batch), "--lr", str(lr), "--weight-decay", str(decay), "--rank", str(rank),
                    "--threads", str(threads), "--no-progress", "--log", str(work / f"ours-{stage}.jsonl")]
                   + ([] if stage == "stage1" else ["--folds", "5"]), env=env)
    steps = [json.loads(line) for line in (work / f"ours-{stage}.jsonl").read_text().splitlines()]
    seconds = [e["seconds"] for e in steps if e.get("event") == "step"][1:]
    for suffix in (".h5", "-best.h5", "-curves.png", ".jsonl"):
        Path(str(work / f"ours-{stage}") + suffix).unlink(missing_ok=True)
    return statistics.median(seconds), len(seconds), rss


def reference(stage, checkpoint, data, work, batch, threads, steps, python):
    lr, decay, rank = STAGES[stage]
    stdout, rss = timed([python, "-m", "prima_ref.train", stage, "--checkpoint", str(checkpoint), "--data", str(data),
                         "-o", str(work / f"py-{stage}"), "--epochs", "1", "--batch-size", str(batch), "--lr", str(lr),
                         "--weight-decay", str(decay), "--rank", str(rank), "--threads", str(threads), "--max-steps", str(steps + 1)]
                        + ([] if stage == "stage1" else ["--folds", "5"]),
                        env={**os.environ, "PYTHONPATH": str(REPO / "Formats" / "python")})
    # The first step prints `seconds nan` (its time holds the setup): only the others are numbers.
    seconds = [float(m) for m in re.findall(r"seconds ([0-9][0-9.]*)", stdout)]
    return statistics.median(seconds), len(seconds), rss


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--image", required=True)
    p.add_argument("--text", required=True)
    p.add_argument("--decoder", required=True)
    p.add_argument("--work", required=True)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--steps", type=int, default=4, help="timed steps per stage (after one untimed)")
    p.add_argument("--stages", default="stage2b,stage3,stage2,stage1")
    p.add_argument("--batch", default="8,8,8,4", help="batch sizes of stage1,stage2,stage2b,stage3")
    p.add_argument("--bin", default=str(REPO / ".build" / "release"), help="the toolkit's binaries (default: the release build)")
    args = p.parse_args()
    global BIN
    BIN = Path(args.bin)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    batches = dict(zip(["stage1", "stage2", "stage2b", "stage3"], [int(b) for b in args.batch.split(",")]))
    checkpoint = work / "prima-bench.h5"
    if not checkpoint.exists():
        # Full-size random-weight directories have no tokenizers: the fixture ones are linked in beside their
        # files, as bench_pipeline.py does (ModernBERT's for the text, qwen3-prima's for the decoder).
        sys.path.insert(0, str(Path(__file__).parent))
        from bench_pipeline import TOKENIZERS, link_dir

        def with_tokenizer(directory: str, kind: str) -> str:
            model = Path(directory)
            if (model / "tokenizer.json").exists():
                return directory
            return str(link_dir(work / kind, [*sorted(p for p in model.iterdir() if p.is_file()), *sorted(TOKENIZERS[kind].iterdir())]))

        subprocess.run([str(BIN / "prima-convert"), "import", "--image-encoder", args.image, "--text-encoder", with_tokenizer(args.text, "text"),
                        "--decoder", with_tokenizer(args.decoder, "decoder"), "--labels", "ACK,BCC,MEL,NEV,SCC,SEK", "-o", str(checkpoint),
                        "--no-progress"], check=True)
    rows = []
    for stage in args.stages.split(","):
        batch = batches[stage]
        examples = (args.steps + 1) * batch
        # Fold 0 of 5 trains on about 4/5 of the lesions; stage 2 pairs one lesion's images, each its own here.
        data = corpus(work, examples) if stage == "stage1" else case_folder(work, -(-examples * 5 // 4) + 5)
        mine, measured, mine_rss = ours(stage, checkpoint, data, work, batch, args.threads)
        theirs, _, their_rss = reference(stage, checkpoint, data, work, batch, args.threads, args.steps, sys.executable)
        rows.append((stage, batch, mine, theirs, measured, mine_rss, their_rss))
        print(f"{stage}: ours {mine:.3f} s/step, PyTorch {theirs:.3f} s/step", file=sys.stderr)
    print(f"CPU: {cpu()}; {args.threads} threads on both sides")
    print()
    print("| stage | batch | ours s/step | PyTorch s/step | ours / PyTorch | ours samples/s | peak RSS ours / PyTorch (MiB) |")
    print("|---|---|---|---|---|---|---|")
    for stage, batch, mine, theirs, measured, mine_rss, their_rss in rows:
        print(f"| {stage} | {batch} | {mine:.3f} | {theirs:.3f} | {mine / theirs:.2f} | {batch / mine:.1f} | {mine_rss:.0f} / {their_rss:.0f} |")
    for stage, batch, mine, *_ in rows:
        if stage == "stage3":
            print(f"\nStage 3 epoch over 2,000 cases (batch {batch}): ours ≈ {2000 / batch * mine / 60:.1f} min")


if __name__ == "__main__":
    main()
