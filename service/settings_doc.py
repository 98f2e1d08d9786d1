"""The service's settings as a reference table, drawn from `service.config.Settings` itself.

    digitserve settings [--checkpoint DIR]                   # print it (Markdown)
    python -m service.settings_doc --write docs/service.md   # refresh the table in the docs

A setting left unset takes the checkpoint's value where the checkpoint has one (the assembly
thresholds, the zoom): the table names that checkpoint's value, so the docs show the shipped model's.
`tests/service/test_settings_doc.py` fails when the table in `docs/service.md` is not the one drawn here.
"""

from __future__ import annotations

import argparse
import types
import typing
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from annotated_types import Ge, Gt, Le
from pydantic.fields import FieldInfo

from models.assembly import AssemblyParams
from models.atomic import write_text
from models.balance import BalanceParams
from models.checkpoint import read_checkpoint_meta
from models.focus import FocusParams
from models.grain import GrainParams
from models.levels import LevelsParams
from models.widen import WidenParams
from models.zoom import ZoomParams
from service.config import SHIPPED_CHECKPOINT, Settings

ENV_PREFIX = Settings.model_config.get("env_prefix", "")  # DIGITSERVE_
START = "<!-- settings table: drawn by `python -m service.settings_doc --write docs/service.md` -->"
END = "<!-- end of the settings table -->"

# A setting left unset (None) takes this attribute of the checkpoint's assembly thresholds or zoom
# (`Predictor.load`), or a module's default.
FROM_ASSEMBLY = ("score_threshold", "iou_threshold", "center_distance_ratio", "height_ratio", "read_columns")
FROM_ZOOM = {
    "zoom_below_px": "below_px",
    "search_tiles": "search_tiles",
    "side_look": "side_look",
    "search_located": "search_located",
    "search_below_p": "search_below_p",
    "search_tiles_max": "search_tiles_max",
    "search_near": "search_near",
}
FROM_MODULE: dict[str, tuple[str, float]] = {
    "grain_threshold": ("models.grain", GrainParams().threshold),
    "sharpen_gate": ("models.focus", FocusParams().gate),
    "levels_gate": ("models.levels", LevelsParams().gate),
    "balance_gate": ("models.balance", BalanceParams().gate),
    "widen_gate": ("models.widen", WidenParams().gate),
    "squat_gate": ("models.widen", WidenParams().squat_gate),
}


@dataclass(frozen=True)
class SettingRow:
    """One setting as the table shows it: environment variable, default, values accepted, meaning."""

    variable: str
    default: str
    accepts: str
    meaning: str


def show(value: Any) -> str:
    """A value as an operator would write it in the environment."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, frozenset | tuple | list):
        return "[" + ", ".join(f'"{v}"' for v in sorted(value)) + "]" if value else "[] (none)"
    return str(value)


def _number(value: Any) -> str:
    """A bound as written: whole numbers without a decimal point or an exponent."""
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def base_type(annotation: Any) -> Any:
    """`float | None` -> float; `Annotated[int, ...] | None` -> int; others as they are."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        annotation = next(a for a in typing.get_args(annotation) if a is not type(None))
    if typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    return annotation


def bounds_text(metadata: list[Any]) -> str:
    """A number's bounds from pydantic's constraints: "0-1", "> 0, <= 600", ">= 1"."""
    low = next((_number(m.ge) for m in metadata if isinstance(m, Ge)), None)
    above = next((_number(m.gt) for m in metadata if isinstance(m, Gt)), None)
    high = next((_number(m.le) for m in metadata if isinstance(m, Le)), None)
    if low is not None and high is not None:
        return f"{low}-{high}"
    if above is not None and high is not None:
        return f"> {above}, <= {high}"
    parts = [f">= {low}" if low else "", f"> {above}" if above else "", f"<= {high}" if high else ""]
    return ", ".join(p for p in parts if p) or "a number"


def _extra(field: FieldInfo) -> dict[str, Any]:
    """The field's `json_schema_extra` texts (`accepts`, `default_text`), where it gives any."""
    return dict(field.json_schema_extra) if isinstance(field.json_schema_extra, dict) else {}


def accepts(field: FieldInfo) -> str:
    """The values a field takes: its own `accepts` text, a Literal's choices, true/false, a number's
    bounds, or its kind."""
    extra = _extra(field)
    if "accepts" in extra:
        return str(extra["accepts"])
    base = base_type(field.annotation)
    if typing.get_origin(base) is typing.Literal:
        return ", ".join(str(a) for a in typing.get_args(base))
    if base is bool:
        return "true, false"
    if base in (int, float):
        return bounds_text(field.metadata)
    if base is Path:
        return "a folder"
    if typing.get_origin(base) in (frozenset, set, tuple, list):
        return "a JSON list of strings"
    return "text"


def default_of(name: str, field: FieldInfo, assembly: AssemblyParams, zoom: ZoomParams) -> str:
    """What an unset setting stands for: its default, or the checkpoint's or a module's value."""
    extra = _extra(field)
    if "default_text" in extra:
        return str(extra["default_text"])
    if field.default is not None:
        return show(field.default)
    if name in FROM_ASSEMBLY:
        return f"the checkpoint's ({show(getattr(assembly, name))})"
    if name in FROM_ZOOM:
        return f"the checkpoint's ({show(getattr(zoom, FROM_ZOOM[name]))})"
    if name in FROM_MODULE:
        module, value = FROM_MODULE[name]
        return f"{module}'s ({show(value)})"
    raise ValueError(f"setting {name} has no default to show: name where an unset one comes from")


def settings_rows(checkpoint: Path = SHIPPED_CHECKPOINT) -> list[SettingRow]:
    """Every `Settings` field in declaration order, with `checkpoint`'s values where an unset setting
    takes the checkpoint's."""
    meta = read_checkpoint_meta(checkpoint)
    return [
        SettingRow(
            variable=ENV_PREFIX + name.upper(),
            default=default_of(name, field, meta.assembly, meta.zoom),
            accepts=accepts(field),
            meaning=field.description or "",
        )
        for name, field in Settings.model_fields.items()
    ]


def markdown_table(rows: Iterable[SettingRow]) -> str:
    """The rows as a Markdown table (`|` in a cell escaped)."""

    def cell(text: str) -> str:
        return text.replace("|", "\\|")

    lines = ["| variable | default | accepts | what it does |", "|---|---|---|---|"]
    lines += [f"| `{r.variable}` | {cell(r.default)} | {cell(r.accepts)} | {cell(r.meaning)} |" for r in rows]
    return "\n".join(lines) + "\n"


def _between_markers(document: str) -> tuple[int, int]:
    """Where the text between a document's START and END markers begins and ends; ValueError when
    the markers are missing."""
    start, end = document.find(START), document.find(END)
    if start < 0 or end < start:
        raise ValueError(f"the document has no settings table between {START!r} and {END!r}")
    return start + len(START), end


def replace_table(document: str, table: str) -> str:
    """`document` with the text between its START and END markers replaced by `table`."""
    start, end = _between_markers(document)
    return document[:start] + "\n\n" + table + "\n" + document[end:]


def table_in(document: str) -> str:
    """The text between a document's markers, as `replace_table` writes it."""
    start, end = _between_markers(document)
    return document[start:end].strip("\n") + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", type=Path, default=SHIPPED_CHECKPOINT, help="whose values to show")
    p.add_argument("--write", type=Path, help="replace the table between the markers in this file")
    args = p.parse_args(argv)
    table = markdown_table(settings_rows(args.checkpoint))
    if args.write is None:
        print(table, end="")
    else:
        write_text(args.write, replace_table(args.write.read_text(), table))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
