"""How likely is a whole number read right? A small verifier estimates it from what the pipeline saw.

The number's confidence (the product of its digits' scores, `AssembledNumber.confidence`) ranks the
readings poorly: on the validation split, numbers read at >= 0.95 are right only ~90 % of the time,
and answering only the most confident 70 % of the photos reads 0.90 against 0.855 for all (training
.evaluate's confidence report). What it does not see is what the assembly left out: a digit the
detector saw in the number's row but scored under the threshold (a digit probably missed), and
another digit the detector also saw on a used digit's box (a rival reading). The verifier is a
logistic regression on five such numbers per reading (`FEATURE_NAMES`), fitted on a labelled split
by `python -m training.verifier`; its output `p_correct` is the estimated probability that the
number is the photo's labelled one.

A verifier lives in a checkpoint folder as `verifier.json`: its coefficients, and the pipeline it was
fitted on (`pipeline_identity`: the sha256 of the detector's, refiner's, reader's and rescorer's
weights, the assembly thresholds and the zoom settings). Its estimate only holds for that pipeline,
so `current_verifier` returns it only where the serving pipeline is the same. The search of large
photos can be limited to those read doubtfully (`ZoomParams.search_below_p`, `models.zoom.search_again`),
which the verifier itself decides: `gate_verifier` returns it for those decisions where the pipeline
is the same up to that limit's value, so that a verifier can be fitted on the limited pipeline.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from models.assembly import AssembledNumber, AssemblyParams, Detection
from models.atomic import write_text
from models.boxes import box_height, box_iou
from models.zoom import ZoomParams

log = logging.getLogger(__name__)

VERIFIER_FILE = "verifier.json"
FEATURE_NAMES = (
    "log_confidence",  # log of the number's confidence (the product of its digits' scores), >= log 1e-6
    "min_score",  # the least confident digit's score
    "digits",  # how many digits the number has
    "left_out",  # best score of a site outside the number, in its row: a digit the assembly left out
    "rival",  # best score of a detection of another digit on one of the number's digits (IoU > 0.5)
)
SAME_PLACE_IOU = 0.3  # a site overlapping a used digit this much is that digit's place, not another
RIVAL_IOU = 0.5
ROW_OVERLAP = 0.3  # in the row: vertical overlap with the number over this x its median digit height
# Assembly settings that only order a number's digits: no feature depends on their order, so a verifier
# holds whichever order they are read in, and they are no part of its pipeline.
ORDER_ONLY = ("read_columns",)


class VerifierError(RuntimeError):
    """A verifier file is malformed or was fitted on other features."""


def number_features(
    number: AssembledNumber, sites: Sequence[Detection], detections: Sequence[Detection]
) -> np.ndarray | None:
    """Float64[5] (`FEATURE_NAMES`) for one image's reading: `number` assembled from its digit
    `sites` (xyxy boxes, the reader's mixed scores), `detections` the detector's (xyxy, its class
    scores, one per class and box); None when the number is empty."""
    digits = number.digits
    if not digits:
        return None
    return np.array(
        [
            math.log(max(number.confidence, 1e-6)),
            min(d.score for d in digits),
            float(len(digits)),
            max((s.score for s in left_out_sites(digits, sites)), default=0.0),
            max((x.score for d in digits for x in rivals(d, detections)), default=0.0),
        ]
    )


def left_out_sites(digits: Sequence[Detection], sites: Sequence[Detection]) -> list[Detection]:
    """The `sites` in the row of a number's `digits` (non-empty; their vertical overlap with the
    digits' span over ROW_OVERLAP x the digits' median height) that are no digit's place (IoU with
    each at most SAME_PLACE_IOU): digits the assembly left out. All boxes xyxy, the same pixels."""
    reference = statistics.median(box_height(d.box_xyxy) for d in digits)
    top, bottom = min(d.box_xyxy[1] for d in digits), max(d.box_xyxy[3] for d in digits)
    return [
        s
        for s in sites
        if min(s.box_xyxy[3], bottom) - max(s.box_xyxy[1], top) > ROW_OVERLAP * reference
        and not any(box_iou(s.box_xyxy, d.box_xyxy) > SAME_PLACE_IOU for d in digits)
    ]


def rivals(digit: Detection, detections: Sequence[Detection]) -> list[Detection]:
    """The `detections` of another digit on `digit`'s box (IoU over RIVAL_IOU): rival readings of it."""
    box = digit.box_xyxy
    return [x for x in detections if x.digit != digit.digit and box_iou(x.box_xyxy, box) > RIVAL_IOU]


def pipeline_identity(
    detector_sha256: str,
    assembly: AssemblyParams,
    zoom: ZoomParams,
    parts: Mapping[str, Mapping[str, Any] | None],
) -> dict[str, Any]:
    """What a verifier's estimate depends on, as plain JSON values: the detector's weights, the
    other parts' descriptions (`parts`: "refiner", "reader", "rescorer" -> their meta's `to_dict()`,
    None where the pipeline runs without it; their training metrics left out: the sha256 of their
    weights and their settings stay), the assembly thresholds (not those that only order the digits,
    `ORDER_ONLY`) and the zoom settings."""
    described = {name: _settings(parts.get(name)) for name in ("refiner", "reader", "rescorer")}
    thresholds = {k: v for k, v in asdict(assembly).items() if k not in ORDER_ONLY}
    identity = {"detector": detector_sha256, **described, "assembly": thresholds, "zoom": asdict(zoom)}
    return dict(json.loads(json.dumps(identity)))  # tuples -> lists, as read back from the file


def holds_at(params: AssemblyParams, fitted: AssemblyParams) -> bool:
    """Whether a verifier fitted at the assembly thresholds `fitted` holds at `params`: the same but
    for the settings that only order the digits (`ORDER_ONLY`)."""
    return replace(params, **{name: getattr(fitted, name) for name in ORDER_ONLY}) == fitted


def _settings(description: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """A part's description without its training metrics (None stays None)."""
    return None if description is None else {k: v for k, v in description.items() if k != "metrics"}


@dataclass(frozen=True)
class NumberVerifier:
    """p_correct = sigmoid(bias + sum_i weights[i] x (features[i] - mean[i]) / scale[i])."""

    mean: tuple[float, ...]
    scale: tuple[float, ...]
    weights: tuple[float, ...]
    bias: float

    def __post_init__(self) -> None:
        n = len(FEATURE_NAMES)
        if not (len(self.mean) == len(self.scale) == len(self.weights) == n):
            raise VerifierError(f"a verifier needs {n} means, scales and weights")
        if any(s <= 0 or not math.isfinite(s) for s in self.scale):
            raise VerifierError(f"scales must be positive and finite: {self.scale}")

    def p_correct(self, features: np.ndarray) -> np.ndarray:
        """Float64[N] estimates for features float[N, 5] (or float[5] -> a 0-d array)."""
        z = (np.asarray(features, dtype=np.float64) - np.asarray(self.mean)) / np.asarray(self.scale)
        logit = z @ np.asarray(self.weights) + self.bias
        return 1.0 / (1.0 + np.exp(-logit))


@dataclass(frozen=True)
class VerifierMeta:
    """What `verifier.json` says besides the coefficients: the pipeline it was fitted on
    (`pipeline_identity`), where (split, sha256 of its annotations, images) and its cross-validated
    figures."""

    pipeline: dict[str, Any]
    fitted_on: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)


def reading_p_correct(
    verifier: NumberVerifier,
    number: AssembledNumber,
    sites: Sequence[Detection],
    detections: Sequence[Detection],
) -> float | None:
    """`verifier`'s p_correct of one image's reading (`number_features`' arguments); None when the
    number is empty."""
    features = number_features(number, sites, detections)
    return None if features is None else float(verifier.p_correct(features))


def save_verifier(directory: str | Path, verifier: NumberVerifier, meta: VerifierMeta) -> Path:
    """Write `verifier.json` into `directory` (created if needed); returns its path."""
    path = Path(directory) / VERIFIER_FILE
    doc = {"feature_names": list(FEATURE_NAMES), **asdict(verifier), **asdict(meta)}
    write_text(path, json.dumps(doc, indent=2) + "\n")
    return path


def load_verifier(directory: str | Path) -> tuple[NumberVerifier, VerifierMeta] | None:
    """The verifier in a checkpoint folder, or None when it has none. Raises VerifierError for a
    malformed file or one fitted on other features."""
    path = Path(directory) / VERIFIER_FILE
    if not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text())
        if tuple(doc["feature_names"]) != FEATURE_NAMES:
            raise VerifierError(f"{path} was fitted on other features: {doc['feature_names']}")
        verifier = NumberVerifier(
            tuple(float(v) for v in doc["mean"]),
            tuple(float(v) for v in doc["scale"]),
            tuple(float(v) for v in doc["weights"]),
            float(doc["bias"]),
        )
        meta = VerifierMeta(
            dict(doc["pipeline"]), dict(doc.get("fitted_on") or {}), dict(doc.get("metrics") or {})
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise VerifierError(f"{path} is not a verifier file: {exc}") from exc
    return verifier, meta


def identity_differences(
    fitted: Mapping[str, Any], serving: Mapping[str, Any], ignore_zoom: Sequence[str] = ()
) -> list[str]:
    """Names of the entries of `pipeline_identity` in which the serving pipeline differs from the
    one a verifier was fitted on (empty when it is the same), the zoom settings named in `ignore_zoom`
    left out of the comparison. A setting added to the assembly or the zoom after the verifier was
    fitted counts at its default, which leaves the pipeline as it was."""
    fitted, serving = _with_defaults(fitted), _with_defaults(serving)
    for identity in (fitted, serving):
        if isinstance(identity.get("zoom"), dict):
            identity["zoom"] = {k: v for k, v in identity["zoom"].items() if k not in ignore_zoom}
    return sorted(k for k in set(fitted) | set(serving) if fitted.get(k) != serving.get(k))


def _with_defaults(identity: Mapping[str, Any]) -> dict[str, Any]:
    """`identity` with its "assembly" and "zoom" settings completed by their dataclasses' defaults; an
    entry those dataclasses cannot read is left as it is (and so differs)."""
    out = dict(identity)
    for name, params in (("assembly", AssemblyParams), ("zoom", ZoomParams)):
        with contextlib.suppress(KeyError, TypeError, ValueError):
            out[name] = json.loads(json.dumps(asdict(params(**out[name]))))
    return out


def current_verifier(
    directory: str | Path,
    serving: Mapping[str, Any],
    ignore_zoom: Sequence[str] = (),
    without: str = "no p_correct",
) -> tuple[NumberVerifier, VerifierMeta] | None:
    """The checkpoint's verifier when it was fitted on the `serving` pipeline (`pipeline_identity`; the
    zoom settings in `ignore_zoom` not compared); None when there is none, or, with a warning that
    ends with `without`, when the pipeline differs (another detector, part or threshold: its
    estimates would not hold)."""
    found = load_verifier(directory)
    if found is None:
        return None
    differences = identity_differences(found[1].pipeline, serving, ignore_zoom)
    if differences:
        log.warning(
            "the checkpoint's verifier was fitted on another pipeline (%s differ): %s",
            ", ".join(differences),
            without,
        )
        return None
    return found


def gate_verifier(
    directory: str | Path, serving: Mapping[str, Any]
) -> tuple[NumberVerifier, VerifierMeta] | None:
    """The checkpoint's verifier for `models.zoom.search_again`'s decisions in the `serving` pipeline:
    `current_verifier` with `ZoomParams.search_below_p` and `search_near` not compared (the decisions
    it makes there score first readings, which search no located photo, so where the search looks
    does not change them, and a verifier is fitted on the pipeline those decisions shape). None,
    with a warning, where there is none or the rest of the pipeline differs: then every large photo
    is searched, as with no limit."""
    without = "every large photo searched (no search_below_p limit)"
    if not (Path(directory) / VERIFIER_FILE).is_file():
        log.warning("the checkpoint has no verifier: %s", without)
        return None
    return current_verifier(directory, serving, ("search_below_p", "search_near"), without)
