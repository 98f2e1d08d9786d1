"""What `digitserve predict` prints and writes of its `FileResult`s: the table, the JSON lines, the
summary line, HW2 `pred.json` / `pred.csv`, and each image drawn with its boxes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

from models.confirm import Confirmation
from models.hw2 import write_pred_csv, write_pred_json
from service.imaging import decode_image
from service.pipeline import alternative_schema, confirmed_fields, to_schema
from service.readers import STDIN, STDIN_NAME, FileResult
from service.schemas import Confirmed


def format_table(
    results: Sequence[FileResult], alternatives: bool = False, confirm: Sequence[int] | None = None
) -> str:
    """One row a file; where a file was asked about numbers, a column saying which it shows
    (`shown_cell`; `confirm`: the numbers every file was asked about, in the header; None with each
    file's own, named in its cell); with `alternatives`, a last column of its readings one edit away."""
    width = max([len(str(r.path)) for r in results] + [4])
    own = confirm is None and any(r.confirmation is not None for r in results)
    shows = "shows" if own else "" if confirm is None else f"shows {asked_words(confirm)}"
    cells = [shown_cell(r.confirmation, own) for r in results]
    column = max([len(shows), *map(len, cells)])
    lines = [
        f"{'file':{width}}  {'number':>10}  {'confidence':>10}  {'p_correct':>9}  {'digits':>6}  {'ms':>7}"
        + (f"  {shows:{column}}" if shows else "")
        + "  or perhaps" * alternatives
    ]
    lines[0] = lines[0].rstrip()
    for r, cell in zip(results, cells, strict=True):
        if r.number is None:
            lines.append(f"{r.path!s:{width}}  {'error':>10}  {r.error}")
        else:
            p_correct = "-" if r.p_correct is None else f"{r.p_correct:.3f}"
            others = "  " + (", ".join(a.number.text for a in r.alternatives) or "-") if alternatives else ""
            shown = f"  {cell:{column}}" if shows else ""
            lines.append(
                f"{r.path!s:{width}}  {r.number.text or '-1':>10}  {r.number.confidence:10.3f}  "
                f"{p_correct:>9}  {len(r.number.digits):6d}  {r.elapsed_ms:7.1f}{shown}{others}".rstrip()
            )
    return "\n".join(lines)


def asked_words(asked: Sequence[int]) -> str:
    """The numbers --confirm asks about, in words: "179", or "one of 12, 14, 16"."""
    return str(asked[0]) if len(asked) == 1 else "one of " + ", ".join(map(str, asked))


def shown_cell(confirmation: Confirmation | None, with_asked: bool = False) -> str:
    """A table cell for /v1/confirm's answer: the number shown and how ("179 (read)", "179 (swap
    0.72)"), "no" where none is (with `with_asked`, "no (179)": each file asked its own), "-" where
    nothing was asked."""
    if confirmation is None:
        return "-"
    if confirmation.how == "alternative":
        return f"{confirmation.match} ({confirmation.edit} {confirmation.score:.2f})"
    if confirmation.shown:
        return f"{confirmation.match} (read)"
    return f"no ({asked_words(confirmation.asked)})" if with_asked else "no"


def confirm_record(confirmation: Confirmation) -> dict[str, Any]:
    """/v1/confirm's answer for one image, as `--format jsonl` writes it (its result less the image's
    size, the number read and the timing, which the record holds already)."""
    return Confirmed(**confirmed_fields(confirmation)).model_dump()


def result_record(result: FileResult) -> dict[str, Any]:
    """One file's reading as `--format jsonl` writes it: `file`, and either `error`, or the number as
    /v1/recognize answers it (`text`, `number`: -1 when no digit survives, `confidence`, `p_correct`,
    `digits` with COCO `bbox` [x, y, w, h] in the image's pixels and `category_id` = digit + 1,
    `alternatives` as /v1/recognize?alternatives=k gives them: empty unless asked), with --confirm
    `confirm` (`confirm_record`), `version` (what made it, as the service's X-Model-Version; null at
    other thresholds than a server's own) and `ms`."""
    if result.number is None:
        return {"file": str(result.path), "error": result.error}
    number = result.number
    return {
        "file": str(result.path),
        "text": number.text,
        "number": number.value,
        "confidence": round(number.confidence, 5),
        "p_correct": None if result.p_correct is None else round(result.p_correct, 5),
        "digits": [to_schema(d).model_dump() for d in number.digits],
        "alternatives": [alternative_schema(a).model_dump() for a in result.alternatives],
        **({} if result.confirmation is None else {"confirm": confirm_record(result.confirmation)}),
        "version": result.version,
        "ms": round(result.elapsed_ms, 1),
    }


def summarize(results: Sequence[FileResult], seconds: float) -> str:
    """One line for the end of a run: files, numbers found, errors, time and pace, and the versions
    that read them (more than one: the server was replaced during the run)."""
    found = sum(1 for r in results if r.number is not None and r.number.digits)
    errors = sum(1 for r in results if r.error)
    pace = f", {len(results) / seconds:.1f} files/s" if results and seconds > 0 else ""
    versions = list(dict.fromkeys(r.version for r in results if r.version))
    named = f"; version{'s' if len(versions) > 1 else ''} {', '.join(versions)}" if versions else ""
    asked = [r.confirmation for r in results if r.confirmation is not None]
    shown = ""
    if asked:
        same = len({c.asked for c in asked}) == 1
        what = asked_words(asked[0].asked) if same else "the numbers expected"
        of = "" if len(asked) == len(results) else f" of the {len(asked)} asked"
        shown = f"; {what} shown in {sum(c.shown for c in asked)}{of}"
    return (
        f"digitserve: {len(results)} files: a number in {found}, no digit in "
        f"{len(results) - found - errors}, an error in {errors}{shown}; {seconds:.1f} s{pace}{named}"
    )


def drawing_names(paths: Sequence[Path]) -> list[str]:
    """Each file's drawing: `<stem>.png`, or `<stem>_<position>.png` (1-based, in the run) where files
    share a stem (IMG_1.HEIC and IMG_1.JPG, or 1.png in two folders), so that no drawing overwrites
    another. Standard input's is `stdin.png`."""
    stems = [STDIN_NAME if p == STDIN else p.stem for p in paths]
    counts = Counter(stems)
    names = [f"{stem}.png" if counts[stem] == 1 else f"{stem}_{i}.png" for i, stem in enumerate(stems, 1)]
    taken: set[str] = set()
    for i, name in enumerate(names):  # a file may itself be called 3_1.png: then one more "_"
        while name in taken:
            name = name.removesuffix(".png") + "_.png"
        names[i] = name
        taken.add(name)
    return names


def draw_boxes(
    result: FileResult,
    out_dir: Path,
    score_threshold: float,
    name: str | None = None,
    load: Callable[[Path], bytes] = Path.read_bytes,
) -> Path:
    """Save the image (its bytes from `load`) with every digit site above the threshold, as `name`
    (default `<stem>.png`); the digits used in green. The image is decoded as it was read (upright by
    its orientation, whole), so the boxes fall on their digits."""
    # no size limits: the file was read once already, by this process or by a server with its own
    decoded = decode_image(load(result.path), 2**62, max_aspect_ratio=float("inf"), reduce_to_px=0)
    canvas = Image.fromarray(decoded.pixels)
    draw = ImageDraw.Draw(canvas)
    used = set(result.number.digits) if result.number else set()
    for det in result.sites:
        if det.score >= score_threshold:
            colour = (0, 200, 83) if det in used else (255, 171, 0)
            draw.rectangle(det.box_xyxy, outline=colour, width=2)
            draw.text(
                (det.box_xyxy[0] + 2, max(0, det.box_xyxy[1] - 11)),
                f"{det.digit} {det.score:.2f}",
                fill=colour,
            )
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / (name or f"{result.path.stem}.png")
    canvas.save(path)
    return path


def write_predictions(out_dir: Path, image_ids: Sequence[int], results: Sequence[FileResult]) -> None:
    """HW2 `pred.json` (the detections) and `pred.csv` (the numbers, -1 where none) for `results`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    pairs = list(zip(image_ids, results, strict=True))
    write_pred_json(out_dir / "pred.json", {i: r.detections for i, r in pairs})
    write_pred_csv(out_dir / "pred.csv", {i: r.number.value if r.number else -1 for i, r in pairs})
