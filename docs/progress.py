"""Draw `models/card/progress.png`: the shipped model's validation figures after each shipped change,
against issue #4's targets, from `models/card/progress.csv` (the model card's results table).

    .venv/bin/python docs/progress.py [--csv models/card/progress.csv] [--out models/card/progress.png]
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

ROOT = Path(__file__).resolve().parents[1]
TARGETS = {"accuracy": 0.90, "map": 0.47}
ACCURACY_SE = 0.0125  # one standard error of the accuracy on 807 images (bootstrap, card experiment 54)
MAP_SE = 0.008  # ... and of mAP


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--csv", type=Path, default=ROOT / "models" / "card" / "progress.csv")
    p.add_argument("--out", type=Path, default=ROOT / "models" / "card" / "progress.png")
    args = p.parse_args()
    with args.csv.open() as handle:
        rows = list(csv.DictReader(handle))
    x = range(len(rows))
    labels = [f"{r['experiment']}: {r['change']}" for r in rows]
    fig, (ax_acc, ax_map) = plt.subplots(2, 1, figsize=(11, 7), sharex=True)
    accuracy = [float(r["accuracy"]) for r in rows]
    ax_acc.plot(x, accuracy, marker="o", label="whole-number accuracy")
    ax_acc.fill_between(
        x,
        [a - ACCURACY_SE for a in accuracy],
        [a + ACCURACY_SE for a in accuracy],
        alpha=0.15,
        label="+- one standard error (807 images)",
    )
    ax_acc.axhline(TARGETS["accuracy"], color="tab:red", linestyle="--", label="issue #4 target 0.90")
    ax_acc.set(
        ylabel="accuracy", title="The shipped model on the validation split, after each shipped change"
    )
    ax_acc.legend(fontsize=8, loc="lower right")
    mean_ap = [float(r["map"]) for r in rows]
    ax_map.plot(x, mean_ap, marker="s", color="tab:green", label="mAP@[.5:.95]")
    ax_map.fill_between(
        x,
        [m - MAP_SE for m in mean_ap],
        [m + MAP_SE for m in mean_ap],
        color="tab:green",
        alpha=0.15,
        label="+- one standard error (807 images)",
    )
    ax_map.axhline(TARGETS["map"], color="tab:red", linestyle="--", label="issue #4 target 0.47")
    ax_map.set(ylabel="mAP")
    ax_map.legend(fontsize=8, loc="lower right")
    ax_map.set_xticks(list(x), labels, rotation=40, ha="right", fontsize=8)
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
