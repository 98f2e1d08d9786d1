"""Tests for models.verifier: the features of a reading, the estimate, the file and its pipeline."""

from __future__ import annotations

import json
import logging
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from models.assembly import AssemblyParams, Detection, assemble_number
from models.verifier import (
    FEATURE_NAMES,
    VERIFIER_FILE,
    NumberVerifier,
    VerifierError,
    VerifierMeta,
    current_verifier,
    gate_verifier,
    holds_at,
    identity_differences,
    load_verifier,
    number_features,
    pipeline_identity,
    save_verifier,
)
from models.zoom import ZoomParams


def digit(x: float, d: int, score: float, y: float = 10.0, height: float = 20.0) -> Detection:
    return Detection((x, y, x + 10.0, y + height), d, score)


def test_features_of_a_reading() -> None:
    sites = [digit(0, 4, 0.9), digit(12, 2, 0.8)]
    number = assemble_number(sites)
    features = number_features(number, sites, sites)
    assert features is not None and features.shape == (len(FEATURE_NAMES),)
    assert features.tolist() == pytest.approx([math.log(0.72), 0.8, 2.0, 0.0, 0.0])


def test_left_out_counts_only_sites_in_the_number_row_at_another_place() -> None:
    used = [digit(0, 4, 0.9), digit(12, 2, 0.8)]
    in_row = digit(24, 1, 0.4)  # under the threshold, beside the number: a digit probably missed
    above = digit(24, 7, 0.5, y=-30)  # in another row
    same_place = digit(1, 9, 0.55)  # on the 4's place: that digit's place, not another
    sites = [*used, in_row, above, same_place]
    features = number_features(assemble_number(sites), sites, used)
    assert features is not None and features[FEATURE_NAMES.index("left_out")] == pytest.approx(0.4)


def test_rival_is_the_best_other_digit_on_a_used_box() -> None:
    sites = [digit(0, 4, 0.9), digit(12, 2, 0.8)]
    detections = [
        *sites,
        digit(0, 9, 0.3),  # another digit on the 4's box
        digit(12, 2, 0.5),  # the same digit again: no rival
        digit(40, 7, 0.6),  # elsewhere
    ]
    features = number_features(assemble_number(sites), sites, detections)
    assert features is not None and features[FEATURE_NAMES.index("rival")] == pytest.approx(0.3)


def test_an_empty_reading_has_no_features() -> None:
    faint = [digit(0, 4, 0.2)]
    assert number_features(assemble_number(faint), faint, faint) is None


def verifier() -> NumberVerifier:
    return NumberVerifier((0.0,) * 5, (1.0, 2.0, 1.0, 1.0, 1.0), (1.0, 2.0, 0.0, -1.0, 0.0), -0.5)


def test_p_correct_is_the_logistic_of_the_standardised_features() -> None:
    p = verifier().p_correct(np.array([[0.5, 1.0, 3.0, 0.25, 0.9], [0.0, 0.0, 0.0, 0.0, 0.0]]))
    assert p == pytest.approx([1 / (1 + math.exp(-(0.5 + 1.0 - 0.25 - 0.5))), 1 / (1 + math.exp(0.5))])


def test_a_verifier_needs_one_coefficient_per_feature_and_positive_scales() -> None:
    with pytest.raises(VerifierError, match="needs 5"):
        NumberVerifier((0.0,) * 4, (1.0,) * 4, (0.0,) * 4, 0.0)
    with pytest.raises(VerifierError, match="positive"):
        NumberVerifier((0.0,) * 5, (1.0, 0.0, 1.0, 1.0, 1.0), (0.0,) * 5, 0.0)


def identity(**assembly: float) -> dict:
    reader = {"sha256": "ab" * 32, "crop": {"size": 32}, "metrics": {"accuracy": 0.9}, "names": ("a", "b")}
    return pipeline_identity(
        "cd" * 32, replace(AssemblyParams(), **assembly), ZoomParams(), {"reader": reader, "refiner": None}
    )


def test_pipeline_identity_leaves_out_training_metrics_and_reads_back_equal(tmp_path: Path) -> None:
    found = identity()
    assert found["reader"] == {"sha256": "ab" * 32, "crop": {"size": 32}, "names": ["a", "b"]}
    assert found["refiner"] is None and found["rescorer"] is None
    assert found["assembly"]["score_threshold"] == 0.6
    save_verifier(tmp_path, verifier(), VerifierMeta(found, {"split": "valid"}, {"auc": 0.8}))
    loaded = load_verifier(tmp_path)
    assert loaded is not None
    assert loaded[0] == verifier() and loaded[1].pipeline == found and loaded[1].metrics == {"auc": 0.8}


def test_current_verifier_only_for_the_pipeline_it_was_fitted_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    assert current_verifier(tmp_path, identity()) is None  # none in the folder
    save_verifier(tmp_path, verifier(), VerifierMeta(identity()))
    assert current_verifier(tmp_path, identity()) is not None
    with caplog.at_level(logging.WARNING):
        assert current_verifier(tmp_path, identity(score_threshold=0.5)) is None
    assert "assembly differ" in caplog.text


def test_the_order_digits_are_read_in_is_no_part_of_a_verifiers_pipeline(tmp_path: Path) -> None:
    """No feature depends on the digits' order, so a verifier holds with columns read either way."""
    assert "read_columns" not in identity()["assembly"]
    save_verifier(tmp_path, verifier(), VerifierMeta(identity()))
    assert current_verifier(tmp_path, identity(read_columns=False)) is not None
    assert identity_differences(identity(), identity(read_columns=False)) == []
    assert holds_at(AssemblyParams(read_columns=False), AssemblyParams())
    assert not holds_at(AssemblyParams(score_threshold=0.5, read_columns=False), AssemblyParams())
    stacked = [digit(0, 5, 0.9, y=0), digit(-2, 1, 0.8, y=30)]  # a 5 over a 1 a little left of it
    column, flat = assemble_number(stacked), assemble_number(stacked, AssemblyParams(read_columns=False))
    assert (column.text, flat.text) == ("51", "15")
    sites = list(column.digits)
    assert np.array_equal(number_features(column, sites, sites), number_features(flat, sites, sites))


def test_the_search_gate_takes_a_verifier_fitted_on_another_search_limit_alone(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """`gate_verifier` does not compare `search_below_p` (a verifier is fitted on the pipeline that its
    own gate shapes) nor `search_near` (first readings search no located photo), `current_verifier`
    does; neither takes one fitted on other settings."""

    def gated(below: float, tiles: int = 3, near: float = 0.0) -> dict:
        zoom = ZoomParams(
            below_px=50, search_tiles=tiles, search_located=True, search_below_p=below, search_near=near
        )
        return pipeline_identity("cd" * 32, AssemblyParams(), zoom, {"reader": None, "refiner": None})

    assert gate_verifier(tmp_path, gated(0.8)) is None  # none in the folder
    save_verifier(tmp_path, verifier(), VerifierMeta(gated(0.8)))
    assert gate_verifier(tmp_path, gated(0.8)) is not None and current_verifier(tmp_path, gated(0.8))
    with caplog.at_level(logging.WARNING):
        assert gate_verifier(tmp_path, gated(0.9)) is not None
        assert current_verifier(tmp_path, gated(0.9)) is None
        assert gate_verifier(tmp_path, gated(0.8, near=0.05)) is not None
        assert current_verifier(tmp_path, gated(0.8, near=0.05)) is None
        assert gate_verifier(tmp_path, gated(0.8, tiles=2)) is None
    assert "every large photo searched" in caplog.text
    assert identity_differences(gated(0.8), gated(0.9), ["search_below_p"]) == []
    assert identity_differences(gated(0.8), gated(0.9)) == ["zoom"]


def test_a_setting_added_after_fitting_counts_at_its_default() -> None:
    """A verifier fitted before `fuse_first` existed recorded no such zoom setting: off, as now."""
    fitted = identity()
    del fitted["zoom"]["fuse_first"]
    assert identity_differences(fitted, identity()) == []
    fused = pipeline_identity(
        "cd" * 32, AssemblyParams(), ZoomParams(fuse_first=2.0), {"reader": None, "refiner": None}
    )
    assert identity_differences(fitted, fused) == ["reader", "zoom"]
    assert identity_differences({**fitted, "zoom": {"no_such_setting": 1}}, identity()) == ["zoom"]
    assert identity_differences({k: v for k, v in fitted.items() if k != "assembly"}, identity()) == [
        "assembly"
    ]


def test_a_verifier_of_other_features_or_a_malformed_file_is_refused(tmp_path: Path) -> None:
    path = save_verifier(tmp_path, verifier(), VerifierMeta(identity()))
    doc = json.loads(path.read_text())
    path.write_text(json.dumps({**doc, "feature_names": ["log_confidence"]}))
    with pytest.raises(VerifierError, match="other features"):
        load_verifier(tmp_path)
    path.write_text(json.dumps({**doc, "bias": None}))
    with pytest.raises(VerifierError, match="not a verifier file"):
        load_verifier(tmp_path)
    assert path.name == VERIFIER_FILE
