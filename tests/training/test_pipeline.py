"""training.pipeline: the served pipeline's parts as the evaluator's options choose them, and its run
over a split (the gated search of large photos is checked against the service in test_evaluate.py)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch

from models.assembly import AssemblyParams
from models.optimize import load_prepared_detector
from models.zoom import ZoomParams
from service.config import SHIPPED_CHECKPOINT
from training import evaluate
from training.pipeline import assembly_params, load_pipeline, run_pipeline
from training.runner import zoom_from


def options(*extra: str, data: Path | None = None):  # type: ignore[no-untyped-def]
    data_args = ["--data", str(data)] if data else ["--data", "unused"]
    return evaluate.parse_args(
        ["--checkpoint", str(SHIPPED_CHECKPOINT), *data_args, "--out", "unused", "--workers", "0", *extra]
    )


def test_assembly_thresholds_given_replace_the_checkpoints_and_only_those() -> None:
    shipped = AssemblyParams()
    assert assembly_params(options(), shipped) == shipped
    assert assembly_params(options("--score-threshold", "0.45"), shipped) == replace(
        shipped, score_threshold=0.45
    )
    both = assembly_params(options("--score-threshold", "0.45", "--iou-threshold", "0"), shipped)
    assert both == replace(shipped, score_threshold=0.45, iou_threshold=0.0)


def test_zoom_options_given_replace_the_checkpoints_and_only_those() -> None:
    shipped = ZoomParams(below_px=50.0, search_tiles=3, search_located=True, search_below_p=0.85)
    assert zoom_from(options(), shipped) == shipped
    changed = zoom_from(options("--zoom-below-px", "0", "--search-tiles", "2"), shipped)
    assert changed == replace(shipped, below_px=0.0, search_tiles=2)


def test_the_rescorer_runs_only_beside_the_refiner_and_the_reader() -> None:
    cpu = torch.device("cpu")
    model = load_prepared_detector(SHIPPED_CHECKPOINT, cpu)[0]
    whole = load_pipeline(options(), model, cpu, use_int8=True)
    assert whole.refiner and whole.reader and whole.rescorer
    assert set(whole.int8_parts()) == {"detector", "refiner", "reader"}
    for left_out, kept in (("--no-refiner", "reader"), ("--no-reader", "refiner")):
        part = load_pipeline(options(left_out), model, cpu, use_int8=True)
        assert part.rescorer is None and getattr(part, kept) is not None
        assert part.parts()["rescorer"] is None and set(part.parts()) == {"reader", "refiner", "rescorer"}
    floating = load_pipeline(options("--no-rescorer"), model, cpu, use_int8=False)
    # the detector given is the int8 one; the refiner and reader load in floating point
    assert floating.rescorer is None and floating.int8_parts() == ["detector"]


def test_without_a_reader_the_numbers_are_read_from_the_detections(synth_dir: Path) -> None:
    run = run_pipeline(options("--no-reader", data=synth_dir))
    assert run.labelled and run.sites is None and run.read is run.detections
    assert set(run.detections) == {r.image_id for r in run.records}
    assert run.info["reader"] is None and run.info["rescorer"] is None and run.info["refiner"] is not None
    assert "reader" not in run.info["int8_parts"]


def test_with_a_reader_every_image_has_its_digit_sites(synth_dir: Path) -> None:
    run = run_pipeline(options(data=synth_dir))
    assert run.sites is not None and run.read is run.sites
    assert set(run.sites) == set(run.detections) == {r.image_id for r in run.records}
    assert run.identity["detector"] == run.info["weights_sha256"]
    assert run.info["split"] == "valid" and run.info["searched_again"] == []
