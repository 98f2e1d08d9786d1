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
from dataclasses import replace
from pathlib import Path

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
from training.exits import run_tool
from training.runner import add_search_arguments


def export_checkpoint(
    source: Path,
    out: Path,
    dtype: str,
    zoom_below_px: float | None = None,
    reader: Path | None = None,
    refiner: Path | None = None,
    refiner_step: float | None = None,
    height_ratio: float | None = None,
    reader_weight: float | None = None,
    rescorer: Path | None = None,
    test_proposals: int | None = None,
    search_tiles: int | None = None,
    side_look: float | None = None,
    fuse_first: float | None = None,
    pipeline_from: Path | None = None,
    search_located: bool | None = None,
    search_below_p: float | None = None,
    search_tiles_max: int | None = None,
    search_near: float | None = None,
) -> Path:
    model, meta = load_checkpoint(source)
    source_dir = resolve_checkpoint_dir(source)
    in_place = out.resolve() == source_dir.resolve()
    if pipeline_from is not None:
        if in_place:
            raise ValueError("--pipeline-from writes a new checkpoint: give an --out other than the source")
        meta, (reader, refiner, rescorer) = _take_pipeline(meta, pipeline_from, (reader, refiner, rescorer))
    assembly = meta.assembly if height_ratio is None else replace(meta.assembly, height_ratio=height_ratio)
    if test_proposals is not None:
        if test_proposals < 1:
            raise ValueError(f"--test-proposals must be at least 1, got {test_proposals}")
        meta = replace(meta, detector=replace(meta.detector, rpn_post_nms_top_n_test=test_proposals))
    zooms = (
        zoom_below_px,
        search_tiles,
        side_look,
        fuse_first,
        search_located,
        search_below_p,
        search_tiles_max,
        search_near,
    )
    if in_place:
        if reader is None and reader_weight is not None and has_reader(source_dir):
            reader = source_dir
        if refiner is None and refiner_step is not None and has_refiner(source_dir):
            refiner = source_dir
        edits = (reader, refiner, rescorer, height_ratio, test_proposals, *zooms)
        if edits == (None,) * len(edits):
            raise ValueError(
                f"--out is the source checkpoint {out}: only --reader, --refiner, --rescorer, their "
                "settings, --height-ratio, --test-proposals, --zoom-below-px, --search-tiles, "
                "--search-located, --search-below-p, --search-tiles-max, --search-near, --side-look or "
                "--fuse-first can be added to it"
            )
        _attach_parts(out, meta.weights_dtype, reader, refiner, refiner_step, reader_weight, rescorer)
        if height_ratio is not None:
            set_checkpoint_thresholds(out, assembly)
        if test_proposals is not None:
            set_checkpoint_detector(out, meta.detector)
        if zooms != (None,) * len(zooms):
            set_checkpoint_zoom(out, meta.zoom.with_trigger(*zooms))
        return out
    zoom = meta.zoom.with_trigger(*zooms)
    folder = save_checkpoint_like(
        out, model, meta, metrics=meta.metrics, dtype=dtype, zoom=zoom, assembly=assembly
    )
    update_checkpoint_metrics(
        folder, {"exported_from": {"weights_sha256": meta.weights_sha256, "dtype": meta.weights_dtype}}
    )
    carried: set[str] = set()
    if pipeline_from is None:
        carried = {name for name, given in (("reader", reader), ("refiner", refiner)) if given is None}
        reader, refiner, rescorer = _parts_or(source_dir, (reader, refiner, rescorer))
    _attach_parts(folder, dtype, reader, refiner, refiner_step, reader_weight, rescorer)
    # the int8 ranges come with the detector, and with the source's own reader and refiner (now in
    # `dtype`); a reader or refiner given anew has none until python -m training.calibrate runs
    shas = {}
    if "reader" in carried and has_reader(folder):
        shas["reader"] = load_reader(folder)[1].sha256
    if "refiner" in carried and has_refiner(folder):
        shas["refiner"] = load_refiner(folder)[1].sha256
    copy_int8(source_dir, folder, read_checkpoint_meta(folder).weights_sha256, crop_nets=shas)
    return folder


def _take_pipeline(
    meta: CheckpointMeta, pipeline: Path, parts: tuple[Path | None, Path | None, Path | None]
) -> tuple[CheckpointMeta, tuple[Path | None, Path | None, Path | None]]:
    """`meta` (the source detector's) with `pipeline`'s assembly rule, zoom settings and region
    proposal count, and the (reader, refiner, rescorer) folders to attach: each given one of `parts`,
    else `pipeline`'s own, else None (the pipeline has none)."""
    folder = resolve_checkpoint_dir(pipeline)
    pipe = read_checkpoint_meta(folder)
    proposals = pipe.detector.rpn_post_nms_top_n_test
    meta = replace(
        meta,
        assembly=pipe.assembly,
        zoom=pipe.zoom,
        detector=replace(meta.detector, rpn_post_nms_top_n_test=proposals),
    )
    return meta, _parts_or(folder, parts)


def _parts_or(
    folder: Path, parts: tuple[Path | None, Path | None, Path | None]
) -> tuple[Path | None, Path | None, Path | None]:
    """The (reader, refiner, rescorer) folders: each given one of `parts`, else `folder` where it holds
    that part, else None."""
    reader, refiner, rescorer = parts
    return (
        reader or (folder if has_reader(folder) else None),
        refiner or (folder if has_refiner(folder) else None),
        rescorer or (folder if has_rescorer(folder) else None),
    )


def _attach_parts(
    folder: Path,
    dtype: str,
    reader: Path | None,
    refiner: Path | None,
    refiner_step: float | None,
    reader_weight: float | None = None,
    rescorer: Path | None = None,
) -> None:
    """Write the reader and the box refiner (when given) into the checkpoint `folder` as `dtype`, and
    the rescorer (float32, always). Raises ValueError for a `refiner_step` or `reader_weight` without
    the part to apply it to, and for a rescorer without a reader and a refiner with a fit head in
    `folder`."""
    if refiner_step is not None and refiner is None:
        raise ValueError("--refiner-step without a refiner: give --refiner, or a source that has one")
    if reader_weight is not None and reader is None:
        raise ValueError("--reader-weight without a reader: give --reader, or a source that has one")
    if reader is not None:
        copy_reader(reader, folder, dtype, reader_weight)
    if refiner is not None:
        copy_refiner(refiner, folder, dtype, refiner_step)
    if rescorer is not None:
        if not (has_reader(folder) and has_refiner(folder) and load_refiner(folder)[1].fit_head):
            raise ValueError(
                "--rescorer needs a reader and a box refiner with a fit head in the checkpoint: "
                "their outputs are its inputs"
            )
        copy_rescorer(rescorer, folder)


def main(argv: Sequence[str] | None = None) -> Path:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, type=Path)
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--dtype", choices=list(WEIGHT_DTYPES), default="float16")
    p.add_argument("--zoom-below-px", type=float, help="default: the source's (0 = off)")
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
    p.add_argument(
        "--search-tiles",
        type=int,
        help="where the first pass locates no digit (or always, with search-located), search n x n "
        "tiles of a large photo (models/zoom.py); default: the source's (0 = off)",
    )
    add_search_arguments(p, "the source's")
    p.add_argument(
        "--side-look",
        type=float,
        help="where the number reaches within this many digit heights of a photo's left or right side, "
        "read the photo again widened (models/zoom.py); default: the source's (0 = off)",
    )
    p.add_argument(
        "--fuse-first",
        type=float,
        help="average each box of the second look with the first pass's boxes of the same digit, those "
        "counted this many times (models/zoom.py); default: the source's (0 = off)",
    )
    p.add_argument(
        "--pipeline-from",
        type=Path,
        help="a checkpoint (models/default, say) whose reader, refiner, rescorer, assembly rule, zoom "
        "settings and proposal count the copy takes, keeping only the source's detector",
    )
    args = p.parse_args(argv)
    folder = export_checkpoint(
        args.checkpoint,
        args.out,
        args.dtype,
        args.zoom_below_px,
        args.reader,
        args.refiner,
        args.refiner_step,
        args.height_ratio,
        args.reader_weight,
        args.rescorer,
        args.test_proposals,
        args.search_tiles,
        args.side_look,
        args.fuse_first,
        args.pipeline_from,
        args.search_located,
        args.search_below_p,
        args.search_tiles_max,
        args.search_near,
    )
    size_mb = sum(f.stat().st_size for f in folder.glob("*.safetensors")) / 1e6
    print(f"wrote {folder} ({size_mb:.1f} MB, {args.dtype})")
    return folder


if __name__ == "__main__":
    run_tool(main)
