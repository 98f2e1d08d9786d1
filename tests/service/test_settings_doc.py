"""The settings reference (`service.settings_doc`, `digitserve settings`) and the refusal of unknown
`DIGITSERVE_*` variables (`service.config.check_environment`)."""

from __future__ import annotations

import re
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
from pydantic import ValidationError

from models.checkpoint import read_checkpoint_meta, set_checkpoint_thresholds, set_checkpoint_zoom
from service import cli
from service.app import create_app
from service.config import SHIPPED_CHECKPOINT, Settings, UnknownSettingError, check_environment
from service.settings_doc import (
    END,
    START,
    SettingRow,
    base_type,
    markdown_table,
    replace_table,
    settings_rows,
    table_in,
)

DOCS = Path(__file__).resolve().parents[2] / "docs" / "service.md"


def test_the_docs_hold_the_table_the_settings_draw() -> None:
    """Fails when a setting is added, renamed or changed (or the shipped checkpoint's thresholds or
    zoom) without `python -m service.settings_doc --write docs/service.md`."""
    assert table_in(DOCS.read_text()) == markdown_table(settings_rows(SHIPPED_CHECKPOINT))


def test_every_setting_has_a_row_with_a_meaning() -> None:
    rows = settings_rows(SHIPPED_CHECKPOINT)
    assert [r.variable for r in rows] == ["DIGITSERVE_" + n.upper() for n in Settings.model_fields]
    assert all(r.meaning and r.default and r.accepts for r in rows)


def test_unset_settings_show_the_checkpoints_own_values(tiny_checkpoint: Path, tmp_path: Path) -> None:
    folder = shutil.copytree(tiny_checkpoint, tmp_path / "ckpt")
    meta = read_checkpoint_meta(folder)
    set_checkpoint_thresholds(folder, replace(meta.assembly, score_threshold=0.45, height_ratio=0.0))
    set_checkpoint_zoom(folder, replace(meta.zoom, below_px=33.0, search_located=True))
    rows = {r.variable: r.default for r in settings_rows(folder)}
    assert rows["DIGITSERVE_SCORE_THRESHOLD"] == "the checkpoint's (0.45)"
    assert rows["DIGITSERVE_HEIGHT_RATIO"] == "the checkpoint's (0)"
    assert rows["DIGITSERVE_ZOOM_BELOW_PX"] == "the checkpoint's (33)"
    assert rows["DIGITSERVE_SEARCH_LOCATED"] == "the checkpoint's (true)"
    assert rows["DIGITSERVE_BATCH_SIZE"] == "8"  # not the checkpoint's


def _probes(accepts: str) -> tuple[list[float], list[float]]:
    """Values the `accepts` text says are valid, and values just outside it."""
    if m := re.fullmatch(r"(-?[\d.]+)-([\d.]+)", accepts):
        low, high = float(m[1]), float(m[2])
        return [low, high], [low - 1, high + 1]
    if m := re.fullmatch(r"0, or ([\d.]+)-([\d.]+)", accepts):
        low, high = float(m[1]), float(m[2])
        return [0, low, high], [low - 0.5 if low > 1 else 0.5, high + 1, -1]
    if m := re.fullmatch(r"> ([\d.]+), <= ([\d.]+)", accepts):
        low, high = float(m[1]), float(m[2])
        return [low + 0.5, high], [low, high + 1]
    raise AssertionError(f"no probes for {accepts!r}")


NUMERIC_ROWS = [r for r in settings_rows(SHIPPED_CHECKPOINT) if r.accepts[0].isdigit() or r.accepts[0] == ">"]


@pytest.mark.parametrize("row", NUMERIC_ROWS, ids=[r.variable for r in NUMERIC_ROWS])
def test_the_ranges_shown_are_the_ranges_enforced(row: SettingRow) -> None:
    name = row.variable.removeprefix("DIGITSERVE_").lower()
    valid, invalid = _probes(row.accepts)
    kind = base_type(Settings.model_fields[name].annotation)
    for value in valid:
        Settings(**{name: kind(value)})
    for value in invalid:
        with pytest.raises(ValidationError):
            Settings(**{name: kind(value)})


def test_replace_table_rewrites_only_between_the_markers() -> None:
    document = f"before\n{START}\n\nold table\n\n{END}\nafter\n"
    new = replace_table(document, "| a |\n")
    assert new == f"before\n{START}\n\n| a |\n\n{END}\nafter\n"
    assert table_in(new) == "| a |\n"
    assert replace_table(new, "| a |\n") == new
    with pytest.raises(ValueError, match="no settings table"):
        replace_table("no markers here", "| a |\n")


def test_the_command_line_prints_the_table(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert cli.main(["settings"]) == 0
    assert capsys.readouterr().out == markdown_table(settings_rows(SHIPPED_CHECKPOINT))
    assert cli.main(["settings", "--checkpoint", str(tmp_path)]) == 2
    assert "cannot read the checkpoint" in capsys.readouterr().err


def test_unknown_variables_are_refused_with_the_closest_setting() -> None:
    with pytest.raises(UnknownSettingError) as caught:
        check_environment({"DIGITSERVE_API_KEY": '["k"]', "digitserve_score_treshold": "0.5", "PATH": "/bin"})
    message = str(caught.value)
    assert "DIGITSERVE_API_KEY (did you mean DIGITSERVE_API_KEYS?)" in message
    assert "digitserve_score_treshold (did you mean DIGITSERVE_SCORE_THRESHOLD?)" in message
    with pytest.raises(UnknownSettingError, match="DIGITSERVE_WHATEVER: not a setting"):
        check_environment({"DIGITSERVE_WHATEVER": "1"})


def test_settings_and_the_other_project_variables_pass() -> None:
    check_environment(
        {
            "DIGITSERVE_API_KEYS": "[]",
            "digitserve_device": "cpu",
            "DIGITSERVE_TRACEBACK": "1",
            "DIGITSERVE_CHECKPOINT_DIR": "/x",
            "DIGITSERVE_DATA_DIR": "/y",
            "DIGITSERVE_SCREENSHOT_DIR": "/z",
            "HOME": "/root",
        }
    )


def test_the_app_refuses_to_start_on_a_misspelt_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIGITSERVE_API_KEY", '["secret"]')
    with pytest.raises(UnknownSettingError, match="DIGITSERVE_API_KEYS"):
        create_app()
    monkeypatch.delenv("DIGITSERVE_API_KEY")
    monkeypatch.setenv("DIGITSERVE_API_KEYS", '["secret"]')
    assert create_app().state.service.settings.api_keys == {"secret"}
