"""Pack a data set's images for a transfer with a size limit (a lent GPU takes at most 64 MiB with the
repository): JPEG copies of the images under their own names, with their annotation files, in one
stored (uncompressed) zip.

    python -m training.pack --data ../shared/data/svhn-hw2 --out gpudata/svhn.zip \\
        --split train train.json runs/vetted/train_noisy_vetted_shipped.json --split valid valid.json
    python -m zipfile -e gpudata/svhn.zip gpudata/svhn       # on the other machine
    python -m training.train --config configs/fast96-warm10-vetted.yaml --data gpudata/svhn

Why: the HW2 PNGs are ~98 MB for the training split alone, and thousands of small files cost more in
a transfer than their bytes; as JPEG (quality 95) they are ~4 kB each, and one zip is one file. The
copies keep the PNG names, so the annotation files work unchanged: PIL opens an image by its content,
not its name. JPEG is lossy: experiment 13 measured quality 95 against the PNGs (mAP 0.001 and 2
numbers apart on the validation split), so figures to report are measured on the originals.

Each `--split FOLDER JSON [JSON ...]` packs the images of `FOLDER` (under `--data`) that the
annotation files name. An annotation file is read under `--data` when it is there, else as given; it
is stored under the same relative path, so `training.train`'s `data.extra_train_json` finds it under
the unpacked root.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import zipfile
from collections.abc import Sequence
from pathlib import Path

from PIL import Image
from tqdm import tqdm

from models.atomic import replace_file
from training.exits import run_tool
from training.train import annotation_path

log = logging.getLogger(__name__)


def jpeg_bytes(path: Path, quality: int = 95) -> bytes:
    """The image at `path` as RGB JPEG bytes (same width and height)."""
    with Image.open(path) as image:
        buffer = io.BytesIO()
        image.convert("RGB").save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def image_names(documents: Sequence[dict]) -> list[str]:
    """The sorted union of the `file_name`s of COCO documents' `images`."""
    return sorted({image["file_name"] for doc in documents for image in doc.get("images", [])})


def resolve_annotation(root: Path, name: str) -> tuple[Path, str]:
    """(where to read `name`, its path inside the pack): under `root` when it is there, else as given
    (`training.train.annotation_path`, the rule training reads it by). A relative name keeps its path
    in the pack; an absolute one is stored by its file name. Raises ValueError for a relative name that
    climbs out ('..'), FileNotFoundError naming both places."""
    given = Path(name)
    if ".." in given.parts and not given.is_absolute():
        raise ValueError(f"annotation file {name!r}: give it relative to --data or to here, without '..'")
    path = annotation_path(root, name)
    if not path.is_file():
        raise FileNotFoundError(f"annotation file {name!r} is neither under {root} nor at {given.resolve()}")
    return path, given.name if given.is_absolute() else given.as_posix()


def pack(
    root: Path, splits: Sequence[Sequence[str]], out: Path, quality: int = 95, show: bool = True
) -> dict[str, int]:
    """Write `out` (a stored zip) with each split's images as JPEG and its annotation files; returns
    the number of images per split folder. A folder named by
    several splits is packed once, with the union of their images. The zip is written beside `out`
    and moved there when complete (`models.atomic.replace_file`), so an interrupted run leaves no
    partial `out`."""
    documents: dict[str, list[dict]] = {}
    annotations: dict[str, Path] = {}
    for folder, *files in splits:
        if not files:
            raise ValueError(f"--split {folder}: name at least one annotation file")
        for name in files:
            path, member = resolve_annotation(root, name)
            annotations[member] = path
            documents.setdefault(folder, []).append(json.loads(path.read_text()))
    plan = {folder: image_names(docs) for folder, docs in documents.items()}
    missing = [
        f"{folder}/{n}" for folder, names in plan.items() for n in names if not (root / folder / n).is_file()
    ]
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} images named by the annotations are missing, e.g. {missing[:3]}"
        )

    def write_zip(partial: Path) -> None:
        with zipfile.ZipFile(partial, "w", zipfile.ZIP_STORED) as archive:
            for member, path in annotations.items():
                archive.write(path, member)
            for folder, names in plan.items():
                for name in tqdm(names, desc=f"pack {folder}", disable=not show):
                    archive.writestr(f"{folder}/{name}", jpeg_bytes(root / folder / name, quality))

    replace_file(out, write_zip)
    return {folder: len(names) for folder, names in plan.items()}


def main(argv: Sequence[str] | None = None) -> Path:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, required=True, help="data set root (HW2 layout)")
    p.add_argument(
        "--split",
        nargs="+",
        action="append",
        required=True,
        metavar="FOLDER_OR_JSON",
        help="an image folder under --data, then the annotation files whose images to pack",
    )
    p.add_argument("--out", type=Path, required=True, help="the zip to write")
    p.add_argument("--quality", type=int, default=95, help="JPEG quality (1-95)")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if not 1 <= args.quality <= 95:
        p.error("--quality must be within 1-95")
    try:
        counts = pack(args.data, args.split, args.out, args.quality, show=not args.no_progress)
    except (FileNotFoundError, ValueError) as exc:
        raise SystemExit(f"error: {exc}") from exc
    log.info(
        "wrote %s (%.1f MB): %s",
        args.out,
        args.out.stat().st_size / 1e6,
        ", ".join(f"{k} {v} images" for k, v in counts.items()),
    )
    return args.out


if __name__ == "__main__":
    run_tool(main)
