"""Pictures people would rather look at than read: loss curves, runs side by side and the digit confusion
matrix, how far the number's confidence can be trusted, and how often the readings one edit away hold
the labelled number."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from models.assembly import AssembledNumber
from models.labels import DIGIT_NAMES


def plot_loss_curves(history: Sequence[dict[str, Any]], path: Path) -> Path:
    """Training loss components and validation loss per epoch (left), validation mAP (right)."""
    return _save(loss_curves_figure(history), path)


def loss_curves_figure(history: Sequence[dict[str, Any]]) -> Figure:
    """The figure of `plot_loss_curves`. Both panels share the epoch axis, so that validation metrics
    measured on a few epochs only (`eval_every`) sit at their epochs of the whole run."""
    epochs = [h["epoch"] for h in history]
    fig, (ax_loss, ax_map) = plt.subplots(1, 2, figsize=(11, 4), sharex=True)
    components = [k for k in history[0] if k.startswith("train_loss")] if history else []
    for key in components:
        ax_loss.plot(epochs, [h[key] for h in history], marker="o", label=key.removeprefix("train_"))
    ax_loss.plot(
        epochs, [h.get("val_loss") for h in history], marker="s", linewidth=2, label="validation loss"
    )
    ax_loss.set(xlabel="epoch", ylabel="loss", title="Losses")
    ax_loss.legend(fontsize=7)
    scored = [h for h in history if h.get("val_map") is not None]
    ax_map.plot(
        [h["epoch"] for h in scored], [h["val_map"] for h in scored], marker="o", label="mAP@[.5:.95]"
    )
    ax_map.plot([h["epoch"] for h in scored], [h["val_map50"] for h in scored], marker="o", label="mAP@.5")
    ax_map.plot(
        [h["epoch"] for h in scored], [h["val_accuracy"] for h in scored], marker="o", label="number acc."
    )
    ax_map.set(xlabel="epoch", ylim=(0, 1), title="Validation")
    ax_map.legend(fontsize=7)
    for ax in (ax_loss, ax_map):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.tight_layout()
    return fig


COMPARED_METRICS = {"val_map": "mAP@[.5:.95]", "val_accuracy": "whole-number accuracy"}


def run_comparison_figure(
    runs: Mapping[str, Sequence[dict[str, Any]]], metrics: Mapping[str, str] = COMPARED_METRICS
) -> Figure:
    """One panel per validation metric (key -> title), one line per run (name -> per-epoch history,
    rows as in `metrics.jsonl`); epochs without the metric are left out of that run's line."""
    fig, axes = plt.subplots(1, len(metrics), figsize=(5.5 * len(metrics), 3.8), sharex=True, squeeze=False)
    for ax, (key, title) in zip(axes[0], metrics.items(), strict=True):
        for name, history in runs.items():
            scored = [h for h in history if h.get(key) is not None]
            ax.plot(
                [h["epoch"] for h in scored], [h[key] for h in scored], marker="o", markersize=3, label=name
            )
        ax.set(xlabel="epoch", title=f"Validation {title}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.tight_layout()
    return fig


def plot_run_comparison(
    runs: Mapping[str, Sequence[dict[str, Any]]], path: Path, metrics: Mapping[str, str] = COMPARED_METRICS
) -> Path:
    """`run_comparison_figure` written to `path` as a PNG."""
    return _save(run_comparison_figure(runs, metrics), path)


def turned_figure(results: Mapping[str, Mapping[float, tuple[int, int]]], photos: int) -> Figure:
    """Numbers read right against the turn (`benchmarks/bench_turned.py`), one colour per checkpoint
    (name -> {degrees: (read right turned, read right upright on the same canvas)}): a solid line for
    the turned photos, a dashed one for the upright photos framed alike, out of `photos`."""
    fig, ax = plt.subplots(figsize=(6.5, 4.0))
    for name, counts in results.items():
        degrees = sorted(counts)
        turned = ax.plot(degrees, [counts[d][0] for d in degrees], marker="o", label=f"{name}: turned")
        ax.plot(
            degrees,
            [counts[d][1] for d in degrees],
            marker="s",
            linestyle="--",
            color=turned[0].get_color(),
            label=f"{name}: upright, framed alike",
        )
    ax.set(xlabel="turn (degrees)", ylabel=f"numbers read right (of {photos})", title="Turned photos")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot_turned(results: Mapping[str, Mapping[float, tuple[int, int]]], photos: int, path: Path) -> Path:
    """`turned_figure` written to `path` as a PNG."""
    return _save(turned_figure(results, photos), path)


def columns_figure(examples: Sequence[tuple[np.ndarray, int, AssembledNumber, AssembledNumber]]) -> Figure:
    """Photos whose digits stand in a column (`benchmarks/bench_columns.py`), one panel each: the photo
    (uint8[H, W, 3] RGB), the number it shows, and its readings (`AssembledNumber`s of the same
    detections) as the service assembles them and left to right; the served reading's digit boxes
    (xyxy pixels) outlined green and numbered in reading order. Titles in green where the served
    reading is right, red where not."""
    fig, axes = plt.subplots(
        1, max(1, len(examples)), figsize=(1.7 * max(1, len(examples)), 4.2), squeeze=False
    )
    for ax in axes[0]:
        ax.axis("off")
    for ax, (photo, label, served, flat) in zip(axes[0], examples, strict=False):
        ax.imshow(photo)
        for order, d in enumerate(served.digits, 1):
            x1, y1, x2, y2 = d.box_xyxy
            ax.add_patch(plt.Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, color="lime", linewidth=1))
            ax.text(x2 + 1, y1, str(order), color="lime", fontsize=7, va="top")
        right = served.value == label
        ax.set_title(
            f"shows {label}\nread {served.text or '-'}\nleft to right: {flat.text or '-'}",
            fontsize=8,
            color="green" if right else "red",
        )
    fig.suptitle("Digits in a column, read top to bottom (experiment 158)", fontsize=9)
    fig.tight_layout()
    return fig


def plot_columns(
    examples: Sequence[tuple[np.ndarray, int, AssembledNumber, AssembledNumber]], path: Path
) -> Path:
    """`columns_figure` written to `path` as a PNG."""
    return _save(columns_figure(examples), path)


MARKERS = ("o", "s", "^", "D", "v")


def quality_figure(
    results: Mapping[str, Mapping[str, Mapping[float, int]]],
    labels: Mapping[str, str],
    photos: int,
    falling: Collection[str] = (),
) -> Figure:
    """Numbers read right in poorer photos (`benchmarks/bench_quality.py`): one panel per kind of harm
    in `labels` (kind -> what its level is, the x axis), one line per checkpoint in the same colour,
    marker and line style in every panel, so that lines on top of each other still show (name ->
    {kind: {level: read right}}, the level that leaves a photo as it is included),
    out of `photos`. The kinds in `falling` harm more as their level falls (a JPEG quality, a scale):
    their axes are inverted, so that every panel runs from the photo as it is to the worst."""
    kinds = list(labels)
    fig, axes = plt.subplots(1, len(kinds), figsize=(3.4 * len(kinds), 3.6), sharey=True, squeeze=False)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, kind in zip(axes[0], kinds, strict=True):
        for i, (name, by_kind) in enumerate(results.items()):
            counts = by_kind.get(kind, {})
            levels = sorted(counts)
            ax.plot(
                levels,
                [counts[v] for v in levels],
                marker=MARKERS[i % len(MARKERS)],
                linestyle=("-", "--", ":")[i % 3],
                color=colours[i % len(colours)],
                label=name,
            )
        if kind in falling:
            ax.invert_xaxis()
        ax.set(xlabel=labels[kind], title=kind)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(f"numbers read right (of {photos})")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot_quality(
    results: Mapping[str, Mapping[str, Mapping[float, int]]],
    labels: Mapping[str, str],
    photos: int,
    path: Path,
    falling: Collection[str] = (),
) -> Path:
    """`quality_figure` written to `path` as a PNG."""
    return _save(quality_figure(results, labels, photos, falling), path)


def plot_confusion_matrix(matrix: np.ndarray, path: Path, title: str) -> Path:
    """11 x 11 counts (digits then none/missed) as a heat map with row-normalised colours."""
    names = [*DIGIT_NAMES, "none"]
    rows = matrix.sum(axis=1, keepdims=True).clip(min=1)
    fig, ax = plt.subplots(figsize=(7, 6))
    ax.imshow(matrix / rows, cmap="Blues", vmin=0, vmax=1)
    for (i, j), count in np.ndenumerate(matrix):
        if count:
            ax.text(
                j,
                i,
                str(count),
                ha="center",
                va="center",
                fontsize=7,
                color="white" if matrix[i, j] / rows[i, 0] > 0.5 else "black",
            )
    ax.set_xticks(range(len(names)), [*DIGIT_NAMES, "missed"])
    ax.set_yticks(range(len(names)), names)
    ax.set(xlabel="predicted", ylabel="ground truth", title=title)
    fig.tight_layout()
    return _save(fig, path)


def confidence_figure(report: Mapping[str, Any], what: str = "confidence") -> Figure:
    """Two panels from `training.metrics.confidence_report` of a score named `what`: left, the share
    of numbers read right in each bin of the score (bars, with their image counts) against the bin's
    mean score (dots; on the diagonal when the score is calibrated); right, the accuracy of the
    answers when only the most confident share of the images is answered."""
    fig, (ax_bins, ax_cover) = plt.subplots(1, 2, figsize=(11, 4))
    bins = [b for b in report["bins"] if b["images"]]
    lows = [b["low"] for b in bins]
    widths = [b["high"] - b["low"] for b in bins]
    centres = [low + width / 2 for low, width in zip(lows, widths, strict=True)]
    ax_bins.bar(
        lows,
        [b["accuracy"] for b in bins],
        width=widths,
        align="edge",
        alpha=0.6,
        edgecolor="black",
        label="read right",
    )
    for b, centre in zip(bins, centres, strict=True):
        ax_bins.text(centre, min(b["accuracy"], 0.93) + 0.02, str(int(b["images"])), ha="center", fontsize=7)
    ax_bins.plot(
        centres,
        [b["mean_confidence"] for b in bins],
        "o",
        color="tab:red",
        label=f"mean {what}",
    )
    ax_bins.plot([0, 1], [0, 1], linestyle=":", color="grey")
    ax_bins.set(
        xlim=(0, 1),
        ylim=(0, 1),
        xlabel=f"{what} (bins; image counts above the bars)",
        ylabel="share",
        title=f"Numbers read right by {what} (AUC {report['auc']:.3f})",
    )
    ax_bins.legend(fontsize=7, loc="upper left")
    cover = report["coverage"]
    ax_cover.plot([c["coverage"] for c in cover], [c["accuracy"] for c in cover], marker="o")
    for c in cover:
        ax_cover.annotate(
            f"{c['min_confidence']:.2f}",
            (c["coverage"], c["accuracy"]),
            textcoords="offset points",
            xytext=(0, 6),
            ha="center",
            fontsize=7,
        )
    ax_cover.set(
        xlabel="share answered, surest first (label: lowest score answered)",
        ylabel="accuracy of the answers",
        title="Answering only the surest readings",
    )
    fig.tight_layout()
    return fig


def plot_confidence(report: Mapping[str, Any], path: Path, what: str = "confidence") -> Path:
    """`confidence_figure` written to `path` as a PNG."""
    return _save(confidence_figure(report, what), path)


def alternatives_figure(rows: Sequence[Mapping[str, float]], images: int) -> Figure:
    """`training.metrics.alternatives_coverage`'s rows as a line (points, not bars: the axis need not
    start at 0): for each k, the share of the `images` whose labelled number is the one read (k = 0,
    the accuracy) or among its first k alternatives, each point labelled with its count."""
    fig, ax = plt.subplots(figsize=(6.0, 3.6))
    ks = [int(row["k"]) for row in rows]
    shares = [row["share"] for row in rows]
    ax.plot(ks, shares, marker="o", color="#1565c0")
    for k, row in zip(ks, rows, strict=True):
        ax.annotate(
            f"{row['share']:.3f}\n({int(row['right'])})",
            (k, row["share"]),
            textcoords="offset points",
            xytext=(0, 6),
            ha="center",
            va="bottom",
            fontsize=7,
        )
    low = min(shares)
    ax.set(
        xlabel="k: alternatives offered (0: the number read alone)",
        ylabel=f"share of the {images} images",
        title="The labelled number is the one read, or among its first k alternatives",
        ylim=(max(0.0, low - 0.05), 1.0),
    )
    ax.title.set_fontsize(9)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def plot_alternatives(rows: Sequence[Mapping[str, float]], images: int, path: Path) -> Path:
    """`alternatives_figure` written to `path` as a PNG."""
    return _save(alternatives_figure(rows, images), path)


def confirm_figure(report: Mapping[str, Any], default: float | None = None) -> Figure:
    """`training.metrics.confirmation_rates`' report as three panels over its `min_score`s (left to
    right as it lists them, "read only" for None): the share of photos whose labelled number passes
    (left); the share of each other kind of number that passes (middle, log scale; none passing is
    drawn at the floor under it); and, asked which of its street's numbers a photo shows, how many
    answer with the label, none or another (right, each labelled with its count); `default` marked on
    each."""
    rows = report["rows"]
    pairs = report["pairs"]
    names = ["read\nonly" if r["min_score"] is None else f"{r['min_score']:g}" for r in rows]
    xs = np.arange(len(rows))
    fig, (ax_label, ax_other, ax_street) = plt.subplots(1, 3, figsize=(15.0, 3.9))
    shares = [r["label"] for r in rows]
    ax_label.plot(xs, shares, marker="o", color="#2e7d32")
    for x, share in zip(xs, shares, strict=True):
        ax_label.annotate(
            f"{share:.3f}", (x, share), textcoords="offset points", xytext=(0, 6), ha="center", fontsize=7
        )
    ax_label.set(
        ylabel=f"share of the {pairs['label']} photos",
        title="The photo's labelled number passes",
        ylim=(max(0.0, min(shares) - 0.03), min(1.0, max(shares) + 0.03)),
    )
    others = [k for k in pairs if k != "label"]
    floor = 0.5 / max(max(pairs[k] for k in others), 1)
    for kind in others:
        values = [max(r[kind], floor) for r in rows]
        ax_other.plot(xs, values, marker="o", label=f"{kind} ({pairs[kind]})")
    ax_other.set_yscale("log")
    ax_other.set(ylabel="share of those numbers that pass", title="Another number passes (false accepts)")
    ax_other.legend(fontsize=7)
    street = report["street"]
    for kind, colour in (("right", "#2e7d32"), ("none", "#78909c"), ("wrong", "#c62828")):
        counts = [r[kind] for r in street]
        ax_street.plot(xs, counts, marker="o", color=colour, label={"right": "the label"}.get(kind, kind))
        for x, c in zip(xs, counts, strict=True):
            ax_street.annotate(
                f"{c}", (x, c), textcoords="offset points", xytext=(0, 5), ha="center", fontsize=7
            )
    ax_street.set(
        ylabel="photos answered with",
        title="Which of its street's numbers (label, +-2, +-4)? The surest that passes",
        ylim=(0, sum(street[0][k] for k in ("right", "wrong", "none")) * 1.08),
    )
    ax_street.legend(fontsize=7, loc="center right")
    marked = [i for i, r in enumerate(rows) if default is not None and r["min_score"] == default]
    for ax in (ax_label, ax_other, ax_street):
        ax.set_xticks(xs, names)
        ax.set_xlabel("min_score: an alternative passes from this edit score")
        ax.title.set_fontsize(9)
        ax.grid(alpha=0.3)
        for i in marked:
            ax.axvline(i, color="grey", linestyle="--", linewidth=1)
    fig.tight_layout()
    return fig


def plot_confirm(report: Mapping[str, Any], path: Path, default: float | None = None) -> Path:
    """`confirm_figure` written to `path` as a PNG."""
    return _save(confirm_figure(report, default), path)


def plot_refiner(history: Sequence[dict[str, Any]], path: Path) -> Path:
    """Box-refiner training per epoch: losses (left), mean IoU of the validation boxes with their
    labels before and after refinement (right)."""
    epochs = [h["epoch"] for h in history]
    fig, (ax_loss, ax_iou) = plt.subplots(1, 2, figsize=(10, 3.6))
    ax_loss.plot(epochs, [h["train_loss"] for h in history], marker="o", label="train")
    ax_loss.plot(epochs, [h["val_loss"] for h in history], marker="s", label="validation")
    ax_loss.set(xlabel="epoch", ylabel="smooth L1 (x5 box units)", title="Loss")
    ax_iou.plot(
        epochs, [h["val_iou_before"] for h in history], linestyle="--", label="jittered label (input)"
    )
    ax_iou.plot(epochs, [h["val_iou_after"] for h in history], marker="s", label="refined")
    ax_iou.set(xlabel="epoch", ylabel="mean IoU with the label", title="Validation boxes")
    return _save_epoch_panels(fig, (ax_loss, ax_iou), path)


def plot_pretraining(history: Sequence[dict[str, Any]], path: Path) -> Path:
    """Crop-classifier pretraining per epoch: losses (left), crop accuracy (right)."""
    epochs = [h["epoch"] for h in history]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 3.6))
    ax_loss.plot(epochs, [h["train_loss"] for h in history], marker="o", label="train (label smoothing 0.1)")
    ax_loss.plot(epochs, [h["val_loss"] for h in history], marker="s", label="validation")
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy", title="Loss")
    ax_acc.plot(epochs, [h["train_accuracy"] for h in history], marker="o", label="train")
    ax_acc.plot(epochs, [h["val_accuracy"] for h in history], marker="s", label="validation")
    ax_acc.set(xlabel="epoch", ylim=(0, 1), title="Digit-crop accuracy")
    return _save_epoch_panels(fig, (ax_loss, ax_acc), path)


def _save_epoch_panels(fig: Figure, axes: Sequence[Axes], path: Path) -> Path:
    """Legends and whole-epoch ticks on `axes`, then `fig` written to `path` and closed."""
    for ax in axes:
        ax.legend(fontsize=7)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.tight_layout()
    return _save(fig, path)


def _save(fig: Figure, path: Path) -> Path:
    """`fig` written to `path` (PNG, 110 dpi) and closed."""
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
