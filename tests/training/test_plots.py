"""Tests for training.plots: the pictures a training run leaves."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt

from training.plots import loss_curves_figure, plot_loss_curves


def _history(epochs: int, scored: set[int]) -> list[dict[str, float]]:
    rows = []
    for epoch in range(1, epochs + 1):
        row = {"epoch": epoch, "train_loss": 1.0 / epoch, "train_loss_classifier": 0.5 / epoch}
        row["val_loss"] = 1.1 / epoch
        if epoch in scored:
            row.update({"val_map": 0.4, "val_map50": 0.9, "val_accuracy": 0.8})
        rows.append(row)
    return rows


def test_validation_panel_spans_the_whole_run_when_few_epochs_are_scored() -> None:
    fig = loss_curves_figure(_history(9, scored={5}))
    try:
        ax_loss, ax_map = fig.axes
        low, high = ax_map.get_xlim()
        assert low <= 1 and high >= 9
        assert ax_map.get_xlim() == ax_loss.get_xlim()
        assert [line.get_xdata()[0] for line in ax_map.get_lines()] == [5, 5, 5]
    finally:
        plt.close(fig)


def test_plot_loss_curves_writes_a_png(tmp_path: Path) -> None:
    path = plot_loss_curves(_history(3, scored={3}), tmp_path / "loss_curves.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
