from pathlib import Path

import pytest
from pydantic import ValidationError

from service.config import SHIPPED_CHECKPOINT, TRAINED_CHECKPOINT, Settings, resolve_checkpoint


def test_environment_with_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIGITSERVE_DEVICE", "cpu")
    monkeypatch.setenv("DIGITSERVE_BATCH_SIZE", "4")
    monkeypatch.setenv("DIGITSERVE_API_KEYS", '["a", "b"]')
    monkeypatch.setenv("DIGITSERVE_HEIGHT_RATIO", "1.6")
    monkeypatch.setenv("DIGITSERVE_SEARCH_TILES", "0")
    monkeypatch.setenv("DIGITSERVE_SIDE_LOOK", "0.5")
    monkeypatch.setenv("DIGITSERVE_SEARCH_LOCATED", "false")
    monkeypatch.setenv("DIGITSERVE_SEARCH_BELOW_P", "0.8")
    monkeypatch.setenv("DIGITSERVE_SEARCH_TILES_MAX", "4")
    monkeypatch.setenv("DIGITSERVE_SEARCH_NEAR", "0.05")
    monkeypatch.setenv("DIGITSERVE_GRAIN_THRESHOLD", "0")
    monkeypatch.setenv("DIGITSERVE_SHARPEN_GATE", "0.7")
    monkeypatch.setenv("DIGITSERVE_READ_COLUMNS", "false")
    settings = Settings()
    assert settings.read_columns is False
    assert settings.device == "cpu" and settings.batch_size == 4 and settings.api_keys == {"a", "b"}
    assert settings.height_ratio == 1.6 and settings.search_tiles == 0 and settings.side_look == 0.5
    assert settings.search_located is False and settings.search_below_p == 0.8
    assert settings.search_tiles_max == 4 and settings.search_near == 0.05
    assert settings.grain_threshold == 0.0 and settings.sharpen_gate == 0.7
    assert settings.cors_origins == ()


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("DIGITSERVE_SCORE_THRESHOLD", "1.5"),
        ("DIGITSERVE_BATCH_SIZE", "0"),
        ("DIGITSERVE_DEVICE", "tpu"),
        ("DIGITSERVE_QUEUE_DEPTH", "-1"),
        ("DIGITSERVE_HEIGHT_RATIO", "0.5"),
        ("DIGITSERVE_HEIGHT_RATIO", "11"),
        ("DIGITSERVE_SEARCH_TILES", "1"),
        ("DIGITSERVE_SEARCH_TILES", "-1"),
        ("DIGITSERVE_SEARCH_TILES", "9"),
        ("DIGITSERVE_SIDE_LOOK", "-0.5"),
        ("DIGITSERVE_SIDE_LOOK", "11"),
        ("DIGITSERVE_SEARCH_BELOW_P", "1.2"),
        ("DIGITSERVE_SEARCH_BELOW_P", "-0.1"),
        ("DIGITSERVE_SEARCH_TILES_MAX", "9"),
        ("DIGITSERVE_SEARCH_TILES_MAX", "-1"),
        ("DIGITSERVE_SEARCH_NEAR", "-0.1"),
        ("DIGITSERVE_SEARCH_NEAR", "1.5"),
        ("DIGITSERVE_GRAIN_THRESHOLD", "-1"),
        ("DIGITSERVE_GRAIN_THRESHOLD", "300"),
        ("DIGITSERVE_SHARPEN_GATE", "1.5"),
        ("DIGITSERVE_WIDEN_GATE", "1"),
        ("DIGITSERVE_WIDEN_GATE", "-0.1"),
        ("DIGITSERVE_SQUAT_GATE", "0.5"),
        ("DIGITSERVE_SQUAT_GATE", "1"),
        ("DIGITSERVE_SQUAT_GATE", "11"),
    ],
)
def test_out_of_range_values_fail(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError):
        Settings()


def test_checkpoint_resolution_order(tmp_path: Path) -> None:
    assert resolve_checkpoint(Settings(checkpoint=tmp_path)) == tmp_path
    expected = (
        SHIPPED_CHECKPOINT if (SHIPPED_CHECKPOINT / "checkpoint.json").is_file() else TRAINED_CHECKPOINT
    )
    assert resolve_checkpoint(Settings()) == expected
