#!/usr/bin/env python3
"""The lesion-level split of the trained default and its bundled held-out cases (make_default.sh runs this).

Usage: make_default_split.py COHORT OUTDIR

Reads COHORT/metadata.csv (written by prima-cohort) and writes

  OUTDIR/split.csv                   img_id,split for every row of the cohort: `val` for the held-out cases, `train`
                                     for the rest (Formats/prima-training.md §3.2; prima-train --split)
  OUTDIR/heldout/metadata.csv        the held-out rows, PAD-UFES-20's 26 columns, in the cohort's row order
  OUTDIR/heldout/imgs_part_1/*.png   their images, copied byte for byte
  OUTDIR/heldout/sample.png, sample.json
                                     the first held-out case, for `prima-diagnose --image --metadata` (JSON: the
                                     CSV's keys minus img_id, diagnostic and biopsed; yes/no as JSON booleans,
                                     numbers as numbers, blank as null, UNK as "UNK")

The held-out side is chosen by rule, without randomness: per class, whole lesions (the pair patient_id,
lesion_id) in order of their first row, until the class has HELD_OUT_PER_CLASS images or more. The cohort's rows
are already in a seeded random order (Docs/cohort.md), so these are a random draw of lesions. Equal numbers per
class (not the cohort's balance, where 96 cases would hold two melanomas) give every class enough cases for its
F1 to mean something. Lesions never straddle the split; a patient may (lesion-level split, the paper's
PAD-UFES-20 protocol). Standard library only; the same cohort gives the same bytes.
"""

import csv
import io
import json
import shutil
import sys
from pathlib import Path

HELD_OUT_PER_CLASS = 16
CLASSES = ("ACK", "BCC", "MEL", "NEV", "SCC", "SEK")
NOT_IN_JSON = ("img_id", "diagnostic", "biopsed")


def csv_text(header, rows):
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue()


def json_value(value):
    if value == "":
        return None
    if value in ("True", "False"):
        return value == "True"
    try:
        number = float(value)
    except ValueError:
        return value
    return int(number) if number == int(number) else number


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: make_default_split.py COHORT OUTDIR")
    cohort, out = Path(sys.argv[1]), Path(sys.argv[2])
    with open(cohort / "metadata.csv", newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader)
        rows = list(reader)
    col = {name: i for i, name in enumerate(header)}
    lesion_rows = {}
    for row in rows:
        lesion_rows.setdefault((row[col["patient_id"]], row[col["lesion_id"]]), []).append(row)
    held_lesions, count = set(), {c: 0 for c in CLASSES}
    for lesion, members in lesion_rows.items():  # dicts keep first-appearance order
        label = members[0][col["diagnostic"]]
        if count[label] < HELD_OUT_PER_CLASS:
            held_lesions.add(lesion)
            count[label] += len(members)
    held = [row for row in rows if (row[col["patient_id"]], row[col["lesion_id"]]) in held_lesions]

    held_ids = {row[col["img_id"]] for row in held}
    heldout = out / "heldout"
    if heldout.exists():
        shutil.rmtree(heldout)
    (heldout / "imgs_part_1").mkdir(parents=True)
    (out / "split.csv").write_text(
        csv_text(["img_id", "split"],
                 [[row[col["img_id"]], "val" if row[col["img_id"]] in held_ids else "train"] for row in rows]),
        encoding="utf-8")
    (heldout / "metadata.csv").write_text(csv_text(header, held), encoding="utf-8")
    images = {p.name: p for p in cohort.glob("imgs_part_*/*.png")}
    for row in held:
        shutil.copyfile(images[row[col["img_id"]]], heldout / "imgs_part_1" / row[col["img_id"]])
    first = held[0]
    shutil.copyfile(images[first[col["img_id"]]], heldout / "sample.png")
    sample = {name: json_value(first[i]) for i, name in enumerate(header) if name not in NOT_IN_JSON}
    sample["patient_id"], sample["lesion_id"] = first[col["patient_id"]], first[col["lesion_id"]]
    (heldout / "sample.json").write_text(json.dumps(sample, indent=2) + "\n", encoding="utf-8")
    print(f"held out {len(held)} of {len(rows)} cases ({len(held_lesions)} lesions): "
          + ", ".join(f"{c} {count[c]}" for c in CLASSES) + f"; sample {first[col['img_id']]} ({first[col['diagnostic']]})")


if __name__ == "__main__":
    main()
