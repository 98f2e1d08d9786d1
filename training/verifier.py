"""Fit the number verifier (models/verifier.py) on a labelled split, through the pipeline as served.

    python -m training.verifier --checkpoint models/default --data ../shared/data/svhn-hw2 \
        --split valid --out runs/verifier [--save]

Runs the checkpoint's pipeline over the split (`training.pipeline.run_pipeline`; the evaluator's
options), then measures the verifier by k-fold cross-validation (`--folds` parts of the images, each
part's estimates from a verifier fitted on the others) against the number's own confidence (the
product of its digits' scores): AUC (how well it tells right readings from wrong ones), Brier score,
and the accuracy when only the most confident share of the images is answered. Writes into --out
`verifier_cv.json` (those figures), `verifier_cv.png` (the out-of-fold estimates, drawn as
training.evaluate's confidence.png) and `verifier.json` (the verifier fitted on all the images);
with --save, also into the checkpoint folder, where the service and the evaluator find it.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from models.checkpoint import resolve_checkpoint_dir
from models.verifier import FEATURE_NAMES, NumberVerifier, VerifierMeta, save_verifier
from training.evaluate import annotations_sha256, build_parser, format_coverage, verifier_inputs
from training.exits import run_tool
from training.metrics import confidence_report, number_confidences
from training.pipeline import PipelineRun, run_pipeline
from training.plots import plot_confidence

log = logging.getLogger(__name__)


def fit_verifier(
    features: np.ndarray, right: np.ndarray, l2: float = 1e-2, steps: int = 50
) -> NumberVerifier:
    """Logistic regression of `right` (bool[N]) on `features` (float[N, 5], standardised inside):
    minimises the mean log loss + `l2` x the squared weights (not the bias) by Newton's method
    (deterministic). Raises ValueError with fewer than two images or only one outcome."""
    if len(right) < 2 or right.all() or not right.any():
        raise ValueError(
            f"a verifier needs right and wrong readings to learn from ({int(right.sum())} of {len(right)})"
        )
    mean = features.mean(axis=0)
    scale = features.std(axis=0)
    scale = np.where(scale > 1e-9, scale, 1.0)  # a constant feature: left as it is, its weight stays ~0
    x = np.hstack([(features - mean) / scale, np.ones((len(features), 1))])
    y = right.astype(np.float64)
    penalty = np.diag([*(2 * l2 for _ in FEATURE_NAMES), 0.0])
    theta = np.zeros(x.shape[1])
    for _ in range(steps):
        p = 1 / (1 + np.exp(-(x @ theta)))
        gradient = x.T @ (p - y) / len(y) + penalty @ theta
        hessian = (x * (p * (1 - p))[:, None]).T @ x / len(y) + penalty + 1e-9 * np.eye(len(theta))
        step = np.linalg.solve(hessian, gradient)
        theta -= step
        if np.abs(step).max() < 1e-10:
            break
    return NumberVerifier(
        tuple(float(v) for v in mean),
        tuple(float(v) for v in scale),
        tuple(float(v) for v in theta[:-1]),
        float(theta[-1]),
    )


def cross_validate(
    features: np.ndarray, read: np.ndarray, right: np.ndarray, folds: int, seed: int, l2: float
) -> np.ndarray:
    """Float64[N] out-of-fold p_correct: the images shuffled (`seed`) into `folds` parts, each part's
    read numbers estimated by a verifier fitted on the other parts' read numbers; 0 where no number
    was read."""
    if folds < 2:
        raise ValueError(f"cross-validation needs at least 2 folds, not {folds}")
    estimates = np.zeros(len(right))
    parts = np.array_split(np.random.default_rng(seed).permutation(len(right)), folds)
    for k, held_out in enumerate(parts):
        train = np.concatenate([part for j, part in enumerate(parts) if j != k])
        train = train[read[train]]
        verifier = fit_verifier(features[train], right[train], l2)
        held_read = held_out[read[held_out]]
        estimates[held_read] = verifier.p_correct(features[held_read])
    return estimates


def verifier_summary(confidence: np.ndarray, estimates: np.ndarray, right: np.ndarray) -> dict[str, Any]:
    """AUC, Brier score and coverage table of the number's confidence and of the out-of-fold
    estimates, on the same images."""
    return {
        name: {"brier": float(np.mean((scores - right) ** 2)), **confidence_report(scores, right)}
        for name, scores in (("confidence", confidence), ("p_correct_cv", estimates))
    }


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = build_parser(__doc__)
    p.add_argument("--folds", type=int, default=5, help="cross-validation folds")
    p.add_argument("--seed", type=int, default=0, help="how the images are shuffled into folds")
    p.add_argument("--l2", type=float, default=1e-2, help="weight penalty (on the mean log loss)")
    p.add_argument("--save", action="store_true", help="also write verifier.json into the checkpoint folder")
    return p.parse_args(argv)


def verifier_meta(
    args: argparse.Namespace, run: PipelineRun, read: int, summary: dict[str, Any]
) -> VerifierMeta:
    """What the verifier holds for (`run`'s pipeline), what it was fitted on (the split's images, `read`
    of them with a number) and its cross-validated AUC and Brier score beside the confidence's."""
    return VerifierMeta(
        pipeline=run.identity,
        fitted_on={
            "split": args.split,
            "data": str(args.data),
            "annotations_sha256": annotations_sha256(args),
            "images": len(run.records),
            "read": read,
        },
        metrics={
            "folds": args.folds,
            **{f"{k}_{m}": summary[k][m] for k in ("confidence", "p_correct_cv") for m in ("auc", "brier")},
        },
    )


def print_summary(summary: dict[str, Any], verifier: NumberVerifier) -> None:
    for name in ("confidence", "p_correct_cv"):
        row = summary[name]
        print(
            f"{name:13} AUC {row['auc']:.3f}  Brier {row['brier']:.4f}  answering the most confident: "
            + format_coverage(row["coverage"])
        )
    print(
        "weights (standardised features): "
        + ", ".join(f"{n} {w:+.2f}" for n, w in zip(FEATURE_NAMES, verifier.weights, strict=True))
    )


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    run = run_pipeline(args)
    if not run.labelled:
        raise SystemExit(f"--split {args.split} has no annotations: a verifier learns from labelled numbers")
    features, read, right = verifier_inputs(run)
    confidence, _ = number_confidences(run.records, run.read, run.params)
    estimates = cross_validate(features, read, right, args.folds, args.seed, args.l2)
    summary = {
        "folds": args.folds,
        "seed": args.seed,
        "l2": args.l2,
        **verifier_summary(confidence, estimates, right),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "verifier_cv.json").write_text(json.dumps(summary, indent=2) + "\n")
    plot_confidence(summary["p_correct_cv"], args.out / "verifier_cv.png", "p_correct (out of fold)")
    verifier = fit_verifier(features[read], right[read], args.l2)
    meta = verifier_meta(args, run, int(read.sum()), summary)
    save_verifier(args.out, verifier, meta)
    if args.save:
        path = save_verifier(resolve_checkpoint_dir(args.checkpoint), verifier, meta)
        log.info("wrote %s", path)
    print_summary(summary, verifier)
    return summary


if __name__ == "__main__":
    run_tool(main)
