import inspect
from dataclasses import fields, replace
from pathlib import Path

import pytest
import torch

from models.assembly import AssemblyParams
from models.checkpoint import (
    WEIGHTS_FILE,
    load_checkpoint,
    read_checkpoint_meta,
    save_checkpoint,
    set_checkpoint_detector,
)
from models.detector import DETECTOR_PRESETS, build_detector
from models.reader import DigitReader, has_reader, load_reader, save_reader
from models.refiner import BoxRefiner, RefineParams, has_refiner, load_refiner, save_refiner
from models.reread import CropSpec, RereadParams
from models.rescorer import Rescorer, has_rescorer, load_rescorer, save_rescorer
from models.verifier import (
    VERIFIER_FILE,
    NumberVerifier,
    VerifierMeta,
    current_verifier,
    pipeline_identity,
    save_verifier,
)
from models.zoom import ZoomParams
from training import export
from training.runner import ZOOM_ARGS


def test_float16_export_keeps_metadata_and_close_outputs(tmp_path: Path) -> None:
    torch.manual_seed(0)
    config = DETECTOR_PRESETS["fast"]
    source = save_checkpoint(
        tmp_path / "src",
        build_detector(config).eval(),
        config,
        training={"epochs": 12},
        data_fingerprint="fp",
        metrics={"map": 0.3},
    )
    out = export.main(["--checkpoint", str(source), "--out", str(tmp_path / "shipped")])
    meta = read_checkpoint_meta(out)
    src_meta = read_checkpoint_meta(source)
    assert meta.weights_dtype == "float16" and meta.weights_sha256 != src_meta.weights_sha256
    assert meta.training == {"epochs": 12} and meta.data_fingerprint == "fp" and meta.metrics["map"] == 0.3
    assert meta.metrics["exported_from"]["weights_sha256"] == src_meta.weights_sha256
    full, _ = load_checkpoint(source)
    half, _ = load_checkpoint(out)
    features = [torch.rand(1, 3, 64, 160)]
    with torch.no_grad():
        a = full.backbone(features[0])["0"]
        b = half.backbone(features[0])["0"]
    assert torch.allclose(a, b, atol=0.05, rtol=0.05)


def test_export_turns_zoom_on_or_keeps_the_sources(tmp_path: Path) -> None:
    config = DETECTOR_PRESETS["fast"]
    zoom = ZoomParams(below_px=40, margin_x=2.0)
    source = save_checkpoint(tmp_path / "src", build_detector(config).eval(), config, zoom=zoom)
    kept = export.main(["--checkpoint", str(source), "--out", str(tmp_path / "kept")])
    assert read_checkpoint_meta(kept).zoom == zoom
    changed = export.main(
        ["--checkpoint", str(source), "--out", str(tmp_path / "on"), "--zoom-below-px", "50"]
    )
    assert read_checkpoint_meta(changed).zoom == ZoomParams(below_px=50, margin_x=2.0)


def test_export_onto_itself_sets_the_zoom_settings_and_leaves_the_weights(tmp_path: Path) -> None:
    config = DETECTOR_PRESETS["fast"]
    zoom = ZoomParams(below_px=40)
    source = save_checkpoint(tmp_path / "src", build_detector(config).eval(), config, zoom=zoom)
    weights = (source / "weights.safetensors").read_bytes()
    export.main(["--checkpoint", str(source), "--out", str(source), "--search-tiles", "3"])
    assert read_checkpoint_meta(source).zoom == ZoomParams(below_px=40, search_tiles=3)
    export.main(["--checkpoint", str(source), "--out", str(source), "--side-look", "0.5"])
    assert read_checkpoint_meta(source).zoom == ZoomParams(below_px=40, search_tiles=3, side_look=0.5)
    export.main(["--checkpoint", str(source), "--out", str(source), "--fuse-first", "2"])
    assert read_checkpoint_meta(source).zoom == ZoomParams(
        below_px=40, search_tiles=3, side_look=0.5, fuse_first=2.0
    )
    export.main(["--checkpoint", str(source), "--out", str(source), "--search-located", "on"])
    assert read_checkpoint_meta(source).zoom.search_located
    export.main(["--checkpoint", str(source), "--out", str(source), "--search-below-p", "0.85"])
    assert read_checkpoint_meta(source).zoom.gated
    export.main(["--checkpoint", str(source), "--out", str(source), "--search-tiles-max", "4"])
    export.main(["--checkpoint", str(source), "--out", str(source), "--search-near", "0.05"])
    export.main(["--checkpoint", str(source), "--out", str(source), "--search-located", "off"])
    assert read_checkpoint_meta(source).zoom == ZoomParams(
        below_px=40,
        search_tiles=3,
        side_look=0.5,
        fuse_first=2.0,
        search_below_p=0.85,
        search_tiles_max=4,
        search_near=0.05,
    )
    for bad in ("1.5", "-0.1", "often"):
        for option in ("--search-below-p", "--search-near"):
            with pytest.raises(SystemExit):  # argparse: a number in [0, 1]
                export.main(["--checkpoint", str(source), "--out", str(source), option, bad])
    assert (source / "weights.safetensors").read_bytes() == weights


def test_export_onto_itself_adds_only_the_reader(tmp_path: Path) -> None:
    config = DETECTOR_PRESETS["fast"]
    source = save_checkpoint(tmp_path / "src", build_detector(config).eval(), config, dtype="float16")
    before = {f.name: f.read_bytes() for f in source.iterdir()}
    save_reader(tmp_path / "reader", DigitReader(width=4), CropSpec(), RereadParams())
    export.main(["--checkpoint", str(source), "--out", str(source), "--reader", str(tmp_path / "reader")])
    assert all((source / name).read_bytes() == data for name, data in before.items())
    assert load_reader(source)[1].dtype == "float16"
    with pytest.raises(ValueError, match="only --reader"):
        export.main(["--checkpoint", str(source), "--out", str(source)])


def test_an_export_that_fails_halfway_leaves_its_out_folder_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = DETECTOR_PRESETS["fast"]
    source = save_checkpoint(tmp_path / "src", build_detector(config).eval(), config, dtype="float16")
    save_reader(tmp_path / "reader", DigitReader(width=4), CropSpec(), RereadParams())
    before = {f.name: f.read_bytes() for f in source.iterdir()}

    def full_disk(*_args: object, **_kwargs: object) -> None:
        raise OSError("No space left on device")

    # each export's last step fails, after the reader (in place) or the weights (a copy) are written
    monkeypatch.setattr(export, "set_checkpoint_zoom", full_disk)
    monkeypatch.setattr(export, "copy_int8", full_disk)
    edits = ["--reader", str(tmp_path / "reader"), "--zoom-below-px", "50"]
    for out in (source, tmp_path / "copy"):
        with pytest.raises(OSError, match="No space"):
            export.main(["--checkpoint", str(source), "--out", str(out), *edits])
    assert {f.name: f.read_bytes() for f in source.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["reader", "src"]


def test_export_sets_the_height_rule_in_a_copy_or_in_place(tmp_path: Path) -> None:
    config = DETECTOR_PRESETS["fast"]
    rule = AssemblyParams(score_threshold=0.5)
    source = save_checkpoint(
        tmp_path / "src", build_detector(config).eval(), config, assembly=rule, dtype="float16"
    )
    weights = (source / WEIGHTS_FILE).read_bytes()
    copy = export.main(
        ["--checkpoint", str(source), "--out", str(tmp_path / "copy"), "--height-ratio", "1.6"]
    )
    assert read_checkpoint_meta(copy).assembly == AssemblyParams(score_threshold=0.5, height_ratio=1.6)
    assert read_checkpoint_meta(source).assembly == rule  # the source is untouched
    kept = export.main(["--checkpoint", str(copy), "--out", str(tmp_path / "kept")])
    assert read_checkpoint_meta(kept).assembly.height_ratio == 1.6  # the source's comes along
    export.main(["--checkpoint", str(source), "--out", str(source), "--height-ratio", "2"])
    assert read_checkpoint_meta(source).assembly == replace(rule, height_ratio=2.0)
    assert (source / WEIGHTS_FILE).read_bytes() == weights
    with pytest.raises(ValueError, match="height_ratio"):
        export.main(["--checkpoint", str(source), "--out", str(source), "--height-ratio", "0.5"])


def test_export_sets_the_readers_mixing_weight_in_a_copy_or_in_place(tmp_path: Path) -> None:
    config = DETECTOR_PRESETS["fast"]
    source = save_checkpoint(tmp_path / "src", build_detector(config).eval(), config, dtype="float16")
    with pytest.raises(ValueError, match="without a reader"):
        export.main(["--checkpoint", str(source), "--out", str(tmp_path / "none"), "--reader-weight", "0.5"])
    save_reader(tmp_path / "reader", DigitReader(width=4), CropSpec(), RereadParams(detector_weight=0.7))
    copy = export.main(
        ["--checkpoint", str(source), "--out", str(tmp_path / "copy"), "--reader", str(tmp_path / "reader"),
         "--reader-weight", "0.5"]
    )  # fmt: skip
    _, shipped = load_reader(copy)
    assert shipped.reread == RereadParams(detector_weight=0.5) and shipped.dtype == "float16"
    assert load_reader(tmp_path / "reader")[1].reread.detector_weight == 0.7  # the source is untouched
    export.main(["--checkpoint", str(copy), "--out", str(copy), "--reader-weight", "0.6"])  # its own reader
    again = load_reader(copy)[1]
    assert again.reread.detector_weight == 0.6 and again.sha256 == shipped.sha256
    with pytest.raises(ValueError, match="detector_weight"):
        export.main(["--checkpoint", str(copy), "--out", str(copy), "--reader-weight", "1.5"])


def test_test_proposals_change_only_how_many_proposals_the_detector_keeps(tmp_path: Path) -> None:
    config = DETECTOR_PRESETS["fast"]
    source = save_checkpoint(tmp_path / "src", build_detector(config).eval(), config)
    assert config.rpn_post_nms_top_n_test == 100
    copy = export.main(
        ["--checkpoint", str(source), "--out", str(tmp_path / "copy"), "--test-proposals", "30"]
    )
    assert read_checkpoint_meta(copy).detector == replace(config, rpn_post_nms_top_n_test=30)
    model, _ = load_checkpoint(copy)
    assert model.rpn._post_nms_top_n["testing"] == 30 and model.rpn._post_nms_top_n["training"] == 300
    before = read_checkpoint_meta(source)
    export.main(["--checkpoint", str(source), "--out", str(source), "--test-proposals", "50"])  # in place
    after = read_checkpoint_meta(source)
    assert after.detector.rpn_post_nms_top_n_test == 50 and after.weights_sha256 == before.weights_sha256
    assert replace(after, detector=before.detector) == before  # nothing else changed
    with pytest.raises(ValueError, match="at least 1"):
        export.main(["--checkpoint", str(source), "--out", str(tmp_path / "bad"), "--test-proposals", "0"])


def test_set_checkpoint_detector_refuses_another_architecture(tmp_path: Path) -> None:
    config = DETECTOR_PRESETS["fast"]
    source = save_checkpoint(tmp_path / "src", build_detector(config).eval(), config)
    with pytest.raises(ValueError, match="box_head_dim"):
        set_checkpoint_detector(source, replace(config, box_head_dim=64))
    assert read_checkpoint_meta(source).detector == config


def test_the_verifier_stays_behind_and_an_edit_in_place_turns_it_off(tmp_path: Path) -> None:
    config = DETECTOR_PRESETS["fast"]
    source = save_checkpoint(tmp_path / "src", build_detector(config).eval(), config)
    meta = read_checkpoint_meta(source)
    fitted = pipeline_identity(meta.weights_sha256, meta.assembly, meta.zoom, {})
    verifier = NumberVerifier((0.0,) * 5, (1.0,) * 5, (0.1,) * 5, 0.0)
    save_verifier(source, verifier, VerifierMeta(fitted))
    copy = export.main(["--checkpoint", str(source), "--out", str(tmp_path / "copy")])
    assert not (copy / VERIFIER_FILE).exists()
    assert current_verifier(source, fitted) is not None
    export.main(["--checkpoint", str(source), "--out", str(source), "--side-look", "0.5"])
    edited = read_checkpoint_meta(source)
    assert (
        current_verifier(source, pipeline_identity(edited.weights_sha256, edited.assembly, edited.zoom, {}))
        is None
    )


def test_pipeline_from_keeps_the_sources_detector_and_takes_everything_after_it(tmp_path: Path) -> None:
    config = DETECTOR_PRESETS["fast"]
    torch.manual_seed(0)
    rule = AssemblyParams(height_ratio=1.6)
    zoom = ZoomParams(below_px=50, search_tiles=3, side_look=0.5, fuse_first=2.0)
    pipe = save_checkpoint(
        tmp_path / "pipe", build_detector(config).eval(), replace(config, rpn_post_nms_top_n_test=30),
        assembly=rule, zoom=zoom, dtype="float16",
    )  # fmt: skip
    # float16 as the shipped parts are, so the copy's (float16) parts are the same bytes
    reread = RereadParams(detector_weight=0.5)
    save_reader(pipe, DigitReader(width=4).eval(), CropSpec(size=24), reread, dtype="float16")
    refine = RefineParams(size=24, step=0.75)
    save_refiner(pipe, BoxRefiner(width=4, fit_head=True).eval(), refine, dtype="float16")
    save_rescorer(pipe, Rescorer(hidden=4, members=2).eval())
    fitted = pipeline_identity(read_checkpoint_meta(pipe).weights_sha256, rule, zoom, {})
    save_verifier(pipe, NumberVerifier((0.0,) * 5, (1.0,) * 5, (0.1,) * 5, 0.0), VerifierMeta(fitted))
    torch.manual_seed(1)
    source = save_checkpoint(
        tmp_path / "src", build_detector(config).eval(), config, training={"epochs": 4}, metrics={"map": 0.4}
    )
    copy = export.main(
        ["--checkpoint", str(source), "--out", str(tmp_path / "copy"), "--pipeline-from", str(pipe)]
    )
    meta, src_meta = read_checkpoint_meta(copy), read_checkpoint_meta(source)
    assert meta.detector == replace(src_meta.detector, rpn_post_nms_top_n_test=30)
    assert (meta.assembly, meta.zoom) == (rule, zoom)
    assert meta.training == {"epochs": 4} and meta.metrics["map"] == 0.4
    assert meta.metrics["exported_from"]["weights_sha256"] == src_meta.weights_sha256
    detector, _ = load_checkpoint(copy)
    src_detector, _ = load_checkpoint(source)
    pipe_detector, _ = load_checkpoint(pipe)
    x = torch.rand(1, 3, 64, 160)
    with torch.no_grad():
        ours, theirs, its = (m.backbone(x)["0"] for m in (detector, src_detector, pipe_detector))
    assert torch.allclose(ours, theirs, atol=0.05, rtol=0.05) and not torch.allclose(ours, its, atol=0.05)
    for load in (load_reader, load_refiner):
        assert load(copy)[1].sha256 == load(pipe)[1].sha256
    assert load_reader(copy)[1].reread.detector_weight == 0.5
    assert load_refiner(copy)[1].params.step == 0.75
    assert load_rescorer(copy)[1].sha256 == load_rescorer(pipe)[1].sha256
    assert not (copy / VERIFIER_FILE).exists()  # fitted on the pipeline's own detector

    overridden = export.main(
        ["--checkpoint", str(source), "--out", str(tmp_path / "over"), "--pipeline-from", str(pipe),
         "--height-ratio", "2", "--side-look", "0", "--test-proposals", "40", "--reader-weight", "0.7"]
    )  # fmt: skip
    over = read_checkpoint_meta(overridden)
    assert over.assembly == replace(rule, height_ratio=2.0) and over.zoom == replace(zoom, side_look=0.0)
    assert over.detector.rpn_post_nms_top_n_test == 40
    assert load_reader(overridden)[1].reread.detector_weight == 0.7

    bare = export.main(
        ["--checkpoint", str(pipe), "--out", str(tmp_path / "bare"), "--pipeline-from", str(source)]
    )  # a pipeline without parts: the copy has none either, though the source has them
    assert not (has_reader(bare) or has_refiner(bare) or has_rescorer(bare))
    bare_meta = read_checkpoint_meta(bare)
    assert (bare_meta.zoom, bare_meta.assembly) == (ZoomParams(), AssemblyParams())
    with pytest.raises(ValueError, match="other than the source"):
        export.main(["--checkpoint", str(source), "--out", str(source), "--pipeline-from", str(pipe)])


def test_every_flag_but_the_source_out_and_dtype_is_an_edit() -> None:
    args = export.build_parser().parse_args(["--checkpoint", "a", "--out", "b"])
    names = {f.name for f in fields(export.ExportEdits)}
    assert names == set(vars(args)) - {"checkpoint", "out", "dtype"}
    assert export.ExportEdits.from_args(args) == export.ExportEdits()  # no flag given: nothing edited


def test_each_zoom_flag_sets_its_own_zoom_setting() -> None:
    trigger = list(inspect.signature(ZoomParams.with_trigger).parameters)[1:]
    assert sorted(flag.removeprefix("zoom_") for flag in ZOOM_ARGS) == sorted(trigger)
    plain = ZoomParams()
    for flag in ZOOM_ARGS:
        setting = flag.removeprefix("zoom_")  # --zoom-below-px sets below_px, the others their namesakes
        kept = getattr(plain, setting)
        value = not kept if isinstance(kept, bool) else 2 if isinstance(kept, int) else 0.5
        edits = export.ExportEdits(**{flag: value})
        assert edits.zooms_given() and edits.edits_in_place()
        assert edits.zoom_of(plain) == replace(plain, **{setting: value}), flag
    assert not export.ExportEdits(reader_weight=0.5, refiner_step=0.5).edits_in_place()
