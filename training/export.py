"""Copy a checkpoint for shipping, optionally as float16 weights (half the size) or int8 (about a quarter).

    python -m training.export --checkpoint runs/<run>/best --out models/default --dtype float16 \
        [--zoom-below-px 50] [--reader runs/reader] [--refiner runs/refiner] [--rescorer runs/rescorer] \
        [--height-ratio 1.6] [--search-tiles 3] [--side-look 0.5]

The copy keeps the source's metadata (architecture, thresholds, zoom, training config, data
fingerprint, metrics) and records where it came from; its hash is recomputed for the new weights.
`--zoom-below-px` turns on the second look at small numbers (models/zoom.py) for everything that
loads the copy (0 turns it off); `--search-tiles` sets how large photos in which the first pass
locates nothing are searched (models/zoom.py; 0 turns it off; `--search-located on` searches them
where it locates something too, and `--search-below-p P` < 1 only those read with a p_correct under
P without the search; `--search-tiles-max M` searches in as many tiles a side as fit, up to M), and
`--side-look` how near a photo's side the number must reach for the photo to be read again widened
(0 turns it off).
`--reader` puts a reader (`python -m training.reader`) into the copy, in the same dtype; a reader
already in the source comes along otherwise. `--refiner` does the same for a box refiner (`python
-m training.refiner`; `--refiner-step` sets how far it moves the boxes), and `--rescorer` for a
rescorer (`python -m training.rescorer`; float32 always; it needs a reader and a refiner with a fit
head).
`--reader-weight` sets the detector's weight w in the reader's mix (detector^w x reader^(1 - w),
`models.reread.RereadParams`). The source's int8 ranges (`python -m training.calibrate`,
models/int8.py) come along with its detector, and with its own reader and refiner; a reader or
refiner given anew runs in float32 until `training.calibrate` runs on the copy. `--height-ratio`
sets the number assembly's height rule (`models.assembly`, 0 = off) in the copy's thresholds, and
`--test-proposals` how many region proposals the detector keeps per image when it runs (training is
unaffected). With `--out` the source itself, only the reader, the refiner (the source's own when
only `--reader-weight` or `--refiner-step` is given), the rescorer, the height rule, the proposals
and the zoom settings are written: the detector's weights and the rest of its JSON stay as they are.
The number verifier (`verifier.json`, `python -m training.verifier`) is not carried: it holds only for
the pipeline it was fitted on, so fit it again on the copy (or after editing a checkpoint in place,
which turns it off until then).

`--pipeline-from PIPE` puts the source's detector into PIPE's pipeline: the copy takes PIPE's reader,
refiner and rescorer (with their settings; none where PIPE has none), its number assembly rule, its
zoom settings and its region proposal count, and keeps only the detector (architecture, weights,
training record and int8 ranges) from the source. This is how a newly trained detector is judged as
served (`--pipeline-from models/default`, then `training.calibrate` for the parts' int8 ranges). Any
other flag given with it still overrides PIPE's setting.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path

from torch import nn

from models.atomic import staged_folder
from models.checkpoint import (
    WEIGHT_DTYPES,
    CheckpointMeta,
    load_checkpoint,
    read_checkpoint_meta,
    resolve_checkpoint_dir,
    save_checkpoint_like,
    set_checkpoint_detector,
    set_checkpoint_thresholds,
    set_checkpoint_zoom,
    update_checkpoint_metrics,
)
from models.int8 import copy_int8
from models.reader import copy_reader, has_reader, load_reader
from models.refiner import copy_refiner, has_refiner, load_refiner
from models.rescorer import copy_rescorer, has_rescorer
from models.zoom import ZoomParams
from training.exits import run_tool
from training.runner import ZOOM_ARGS, add_zoom_arguments, zoom_from


@dataclass(frozen=True)
class ExportEdits:
    """What the copy changes (each None: as the source, or PIPE, has it); named as the flags are."""

    reader: Path | None = None
    refiner: Path | None = None
    rescorer: Path | None = None
    refiner_step: float | None = None
    reader_weight: float | None = None
    height_ratio: float | None = None
    test_proposals: int | None = None
    zoom_below_px: float | None = None
    search_tiles: int | None = None
    side_look: float | None = None
    fuse_first: float | None = None
    search_located: bool | None = None
    search_below_p: float | None = None
    search_tiles_max: int | None = None
    search_near: float | None = None
    pipeline_from: Path | None = None

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> ExportEdits:
        return cls(**{f.name: getattr(args, f.name) for f in fields(cls)})

    def zoom_of(self, zoom: ZoomParams) -> ZoomParams:
        """`zoom` with the zoom settings given (`models.zoom.ZoomParams.with_trigger`)."""
        return zoom_from(self, zoom)

    def zooms_given(self) -> bool:
        """Whether any zoom setting is given."""
        return any(getattr(self, name) is not None for name in ZOOM_ARGS)

    @property
    def parts(self) -> tuple[Path | None, Path | None, Path | None]:
        """The (reader, refiner, rescorer) folders to attach."""
        return self.reader, self.refiner, self.rescorer

    def edits_in_place(self) -> bool:
        """Whether anything a checkpoint edited in place can take is given."""
        given = (*self.parts, self.height_ratio, self.test_proposals)
        return given != (None,) * len(given) or self.zooms_given()


def export_checkpoint(source: Path, out: Path, dtype: str, edits: ExportEdits = ExportEdits()) -> Path:
    """Copy the checkpoint `source` to `out` with its weights in `dtype`, or with `out` the source
    folder, make only `edits`' changes in place (the weights and the rest as they are). Either is
    made in a copy of `out` that replaces it when done (`models.atomic.staged_folder`): stopped or
    failed halfway, it leaves `out` as it was. Returns `out`. Raises ValueError for edits that do not
    fit the checkpoint."""
    model, meta = load_checkpoint(source)
    source_dir = resolve_checkpoint_dir(source)
    in_place = out.resolve() == source_dir.resolve()
    if edits.pipeline_from is not None:
        if in_place:
            raise ValueError("--pipeline-from writes a new checkpoint: give an --out other than the source")
        meta, edits = _take_pipeline(meta, edits)
    meta = _edited_meta(meta, edits)
    with staged_folder(out) as staging:  # `out` changes whole or not at all
        if in_place:
            _edit_in_place(staging, meta, edits)
        else:
            _write_copy(staging, source_dir, model, meta, dtype, edits)
    return out


def _edited_meta(meta: CheckpointMeta, edits: ExportEdits) -> CheckpointMeta:
    """`meta` with `edits`' assembly height rule, proposal count and zoom settings."""
    if edits.height_ratio is not None:
        meta = replace(meta, assembly=replace(meta.assembly, height_ratio=edits.height_ratio))
    if edits.test_proposals is not None:
        if edits.test_proposals < 1:
            raise ValueError(f"--test-proposals must be at least 1, got {edits.test_proposals}")
        meta = replace(meta, detector=replace(meta.detector, rpn_post_nms_top_n_test=edits.test_proposals))
    return replace(meta, zoom=edits.zoom_of(meta.zoom))


def _edit_in_place(folder: Path, meta: CheckpointMeta, edits: ExportEdits) -> None:
    """Write `edits` into the checkpoint `folder` itself (`meta`: its metadata with them made); a
    reader weight or refiner step alone applies to the folder's own reader or refiner."""
    if edits.reader is None and edits.reader_weight is not None and has_reader(folder):
        edits = replace(edits, reader=folder)
    if edits.refiner is None and edits.refiner_step is not None and has_refiner(folder):
        edits = replace(edits, refiner=folder)
    if not edits.edits_in_place():
        raise ValueError(
            f"--out is the source checkpoint {folder}: only --reader, --refiner, --rescorer, their "
            "settings, --height-ratio, --test-proposals, --zoom-below-px, --search-tiles, "
            "--search-located, --search-below-p, --search-tiles-max, --search-near, --side-look or "
            "--fuse-first can be added to it"
        )
    _attach_parts(folder, meta.weights_dtype, edits)
    if edits.height_ratio is not None:
        set_checkpoint_thresholds(folder, meta.assembly)
    if edits.test_proposals is not None:
        set_checkpoint_detector(folder, meta.detector)
    if edits.zooms_given():
        set_checkpoint_zoom(folder, meta.zoom)


def _write_copy(
    out: Path, source_dir: Path, model: nn.Module, meta: CheckpointMeta, dtype: str, edits: ExportEdits
) -> None:
    """Save `model` with `meta` (the source's, edited) to `out` in `dtype`, with the parts `edits`
    gives, else the source's own (unless taken from a pipeline), and the int8 ranges that still hold."""
    folder = save_checkpoint_like(out, model, meta, metrics=meta.metrics, dtype=dtype)
    update_checkpoint_metrics(
        folder, {"exported_from": {"weights_sha256": meta.weights_sha256, "dtype": meta.weights_dtype}}
    )
    carried: set[str] = set()
    if edits.pipeline_from is None:
        carried = {name for name in ("reader", "refiner") if getattr(edits, name) is None}
        edits = _parts_or(source_dir, edits)
    _attach_parts(folder, dtype, edits)
    # the int8 ranges come with the detector, and with the source's own reader and refiner (now in
    # `dtype`); a reader or refiner given anew has none until python -m training.calibrate runs
    shas = {}
    if "reader" in carried and has_reader(folder):
        shas["reader"] = load_reader(folder)[1].sha256
    if "refiner" in carried and has_refiner(folder):
        shas["refiner"] = load_refiner(folder)[1].sha256
    copy_int8(source_dir, folder, read_checkpoint_meta(folder).weights_sha256, crop_nets=shas)


def _take_pipeline(meta: CheckpointMeta, edits: ExportEdits) -> tuple[CheckpointMeta, ExportEdits]:
    """`meta` (the source detector's) with the assembly rule, zoom settings and region proposal count
    of `edits.pipeline_from`, and `edits` with the parts to attach: each given one, else the
    pipeline's own, else None (the pipeline has none)."""
    assert edits.pipeline_from is not None
    folder = resolve_checkpoint_dir(edits.pipeline_from)
    pipe = read_checkpoint_meta(folder)
    proposals = pipe.detector.rpn_post_nms_top_n_test
    meta = replace(
        meta,
        assembly=pipe.assembly,
        zoom=pipe.zoom,
        detector=replace(meta.detector, rpn_post_nms_top_n_test=proposals),
    )
    return meta, _parts_or(folder, edits)


def _parts_or(folder: Path, edits: ExportEdits) -> ExportEdits:
    """`edits` with each of the reader, refiner and rescorer not given taken from `folder` where it
    holds that part."""
    return replace(
        edits,
        reader=edits.reader or (folder if has_reader(folder) else None),
        refiner=edits.refiner or (folder if has_refiner(folder) else None),
        rescorer=edits.rescorer or (folder if has_rescorer(folder) else None),
    )


def _attach_parts(folder: Path, dtype: str, edits: ExportEdits) -> None:
    """Write `edits`' reader and box refiner (when given) into the checkpoint `folder` as `dtype`, and
    the rescorer (float32, always). Raises ValueError for a refiner step or reader weight without the
    part to apply it to, and for a rescorer without a reader and a refiner with a fit head in
    `folder`."""
    if edits.refiner_step is not None and edits.refiner is None:
        raise ValueError("--refiner-step without a refiner: give --refiner, or a source that has one")
    if edits.reader_weight is not None and edits.reader is None:
        raise ValueError("--reader-weight without a reader: give --reader, or a source that has one")
    if edits.reader is not None:
        copy_reader(edits.reader, folder, dtype, edits.reader_weight)
    if edits.refiner is not None:
        copy_refiner(edits.refiner, folder, dtype, edits.refiner_step)
    if edits.rescorer is not None:
        if not (has_reader(folder) and has_refiner(folder) and load_refiner(folder)[1].fit_head):
            raise ValueError(
                "--rescorer needs a reader and a box refiner with a fit head in the checkpoint: "
                "their outputs are its inputs"
            )
        copy_rescorer(edits.rescorer, folder)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, type=Path)
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--dtype", choices=list(WEIGHT_DTYPES), default="float16")
    p.add_argument(
        "--reader", type=Path, help="reader folder to ship with it (default: the source's, if any)"
    )
    p.add_argument(
        "--refiner", type=Path, help="box refiner folder to ship with it (default: the source's, if any)"
    )
    p.add_argument(
        "--rescorer", type=Path, help="rescorer folder to ship with it (default: the source's, if any)"
    )
    p.add_argument(
        "--refiner-step", type=float, help="fraction of the refiner's correction applied (default: its own)"
    )
    p.add_argument(
        "--reader-weight",
        type=float,
        help="the detector's weight w in the reader's mix, detector^w x reader^(1 - w) "
        "(default: the reader's own)",
    )
    p.add_argument(
        "--height-ratio",
        type=float,
        help="number assembly: drop digits more than this many times taller or shorter than the "
        "number's others (0 = off; default: the source's)",
    )
    p.add_argument(
        "--test-proposals",
        type=int,
        help="region proposals the detector keeps per image when it runs (rpn_post_nms_top_n_test): "
        "fewer are faster on the CPU; default: the source's",
    )
    add_zoom_arguments(p, "the source's")
    p.add_argument(
        "--pipeline-from",
        type=Path,
        help="a checkpoint (models/default, say) whose reader, refiner, rescorer, assembly rule, zoom "
        "settings and proposal count the copy takes, keeping only the source's detector",
    )
    return p


def main(argv: Sequence[str] | None = None) -> Path:
    args = build_parser().parse_args(argv)
    folder = export_checkpoint(args.checkpoint, args.out, args.dtype, ExportEdits.from_args(args))
    size_mb = sum(f.stat().st_size for f in folder.glob("*.safetensors")) / 1e6
    print(f"wrote {folder} ({size_mb:.1f} MB, {args.dtype})")
    return folder


if __name__ == "__main__":
    run_tool(main)
