"""Tests for training.plots: the pictures a training run leaves."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest

from models.assembly import AssemblyParams, Detection, assemble_number
from training.metrics import confidence_report
from training.plots import (
    alternatives_figure,
    columns_figure,
    confidence_figure,
    confirm_figure,
    loss_curves_figure,
    plot_alternatives,
    plot_columns,
    plot_confidence,
    plot_confirm,
    plot_loss_curves,
    plot_quality,
    plot_run_comparison,
    plot_turned,
    quality_figure,
    run_comparison_figure,
    turned_figure,
)


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


def test_run_comparison_draws_one_line_per_run_in_each_panel() -> None:
    runs = {"a": _history(4, scored={2, 4}), "b": _history(6, scored={1, 2, 3, 4, 5, 6})}
    fig = run_comparison_figure(runs)
    try:
        assert [ax.get_title() for ax in fig.axes] == [
            "Validation mAP@[.5:.95]",
            "Validation whole-number accuracy",
        ]
        for ax in fig.axes:
            lines = ax.get_lines()
            assert [line.get_label() for line in lines] == ["a", "b"]
            assert list(lines[0].get_xdata()) == [2, 4] and list(lines[1].get_xdata()) == [1, 2, 3, 4, 5, 6]
        assert list(fig.axes[1].get_lines()[0].get_ydata()) == [0.8, 0.8]
    finally:
        plt.close(fig)


def test_plot_run_comparison_writes_a_png(tmp_path: Path) -> None:
    path = plot_run_comparison({"a": _history(2, scored={1, 2})}, tmp_path / "compare.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _report() -> dict:
    confidences = np.array([0.99, 0.97, 0.92, 0.6, 0.55])
    return confidence_report(
        confidences, np.array([True, True, False, True, False]), edges=(0.0, 0.5, 0.9, 1.0)
    )


def test_confidence_figure_draws_only_the_bins_with_images_and_every_coverage() -> None:
    fig = confidence_figure(_report())
    try:
        ax_bins, ax_cover = fig.axes
        bars = ax_bins.patches
        assert [round(b.get_x(), 2) for b in bars] == [0.5, 0.9]  # the empty [0, 0.5) bin is left out
        assert [round(b.get_height(), 2) for b in bars] == [0.5, 0.67]
        assert list(ax_cover.get_lines()[0].get_xdata()) == [0.5, 0.7, 0.8, 0.9, 0.95, 1.0]
    finally:
        plt.close(fig)


def test_plot_confidence_writes_a_png(tmp_path: Path) -> None:
    path = plot_confidence(_report(), tmp_path / "confidence.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_turned_figure_draws_a_turned_and_a_framed_line_per_checkpoint_in_one_colour() -> None:
    results = {"a": {0.0: (10, 10), 8.0: (7, 9)}, "b": {8.0: (8, 9), 0.0: (10, 10), 4.0: (9, 10)}}
    fig = turned_figure(results, 12)
    try:
        lines = fig.axes[0].get_lines()
        assert [line.get_label() for line in lines] == [
            "a: turned",
            "a: upright, framed alike",
            "b: turned",
            "b: upright, framed alike",
        ]
        assert list(lines[2].get_xdata()) == [0.0, 4.0, 8.0] and list(lines[2].get_ydata()) == [10, 9, 8]
        assert list(lines[3].get_ydata()) == [10, 10, 9]
        assert lines[0].get_color() == lines[1].get_color() != lines[2].get_color()
        assert "of 12" in fig.axes[0].get_ylabel()
    finally:
        plt.close(fig)


def test_columns_figure_draws_each_photo_its_readings_and_the_served_boxes_in_order() -> None:
    column = [Detection((2, 0, 8, 10), 7, 0.9), Detection((1, 12, 7, 22), 4, 0.9)]
    served, flat = assemble_number(column), assemble_number(column, AssemblyParams(read_columns=False))
    photo = np.zeros((24, 10, 3), dtype=np.uint8)
    fig = columns_figure([(photo, 74, served, flat), (photo, 47, served, flat)])
    try:
        first, second = fig.axes
        assert (
            first.get_title() == "shows 74\nread 74\nleft to right: 47" and first.title.get_color() == "green"
        )
        assert second.title.get_color() == "red"
        assert [t.get_text() for t in first.texts] == ["1", "2"] and len(first.patches) == 2
        assert first.patches[0].get_xy() == (2, 0) and first.patches[1].get_xy() == (1, 12)
    finally:
        plt.close(fig)


def test_plot_columns_writes_a_png(tmp_path: Path) -> None:
    column = [Detection((2, 0, 8, 10), 7, 0.9)]
    number = assemble_number(column)
    path = plot_columns(
        [(np.zeros((12, 10, 3), dtype=np.uint8), 7, number, number)], tmp_path / "columns.png"
    )
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_turned_writes_a_png(tmp_path: Path) -> None:
    path = plot_turned({"a": {0.0: (3, 3), 12.0: (1, 2)}}, 4, tmp_path / "turned.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_quality_figure_draws_a_panel_per_kind_and_a_line_per_checkpoint_in_one_colour_throughout() -> None:
    results = {
        "a": {"jpeg": {100.0: 10, 50.0: 9, 10.0: 4}, "blur": {0.0: 10, 1.0: 8}},
        "b": {"jpeg": {10.0: 5, 100.0: 11}, "blur": {1.0: 7, 0.0: 11}},
    }
    fig = quality_figure(
        results, {"jpeg": "JPEG quality", "blur": "Gaussian blur (px)"}, 12, falling={"jpeg"}
    )
    try:
        ax_jpeg, ax_blur = fig.axes
        assert [ax.get_title() for ax in fig.axes] == ["jpeg", "blur"]
        a_jpeg, b_jpeg = ax_jpeg.get_lines()
        assert list(a_jpeg.get_xdata()) == [10.0, 50.0, 100.0] and list(a_jpeg.get_ydata()) == [4, 9, 10]
        assert list(ax_blur.get_lines()[1].get_ydata()) == [11, 7]
        assert a_jpeg.get_color() == ax_blur.get_lines()[0].get_color() != b_jpeg.get_color()
        assert a_jpeg.get_marker() != b_jpeg.get_marker() and a_jpeg.get_linestyle() != b_jpeg.get_linestyle()
        assert ax_jpeg.xaxis_inverted() and not ax_blur.xaxis_inverted()
        assert "of 12" in ax_jpeg.get_ylabel() and ax_blur.get_xlabel() == "Gaussian blur (px)"
    finally:
        plt.close(fig)


def test_plot_quality_writes_a_png(tmp_path: Path) -> None:
    path = plot_quality({"a": {"noise": {0.0: 3, 20.0: 2}}}, {"noise": "grain"}, 4, tmp_path / "quality.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_alternatives_figure_draws_a_point_per_k_labelled_with_its_count(tmp_path: Path) -> None:
    rows = [
        {"k": 0, "right": 8, "share": 0.8},
        {"k": 1, "right": 9, "share": 0.9},
        {"k": 2, "right": 9, "share": 0.9},
    ]
    fig = alternatives_figure(rows, 10)
    try:
        ax = fig.axes[0]
        (line,) = ax.get_lines()
        assert list(line.get_xdata()) == [0, 1, 2] and list(line.get_ydata()) == [0.8, 0.9, 0.9]
        assert [t.get_text() for t in ax.texts] == ["0.800\n(8)", "0.900\n(9)", "0.900\n(9)"]
        assert ax.get_ylim() == pytest.approx((0.75, 1.0))
    finally:
        plt.close(fig)
    assert plot_alternatives(rows, 10, tmp_path / "a.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_confirm_figure_draws_the_label_the_other_kinds_and_the_street(tmp_path: Path) -> None:
    report = {
        "pairs": {"label": 10, "neighbour": 40, "digit dropped": 20},
        "rows": [
            {"min_score": None, "label": 0.8, "neighbour": 0.0, "digit dropped": 0.05},
            {"min_score": 0.2, "label": 0.9, "neighbour": 0.025, "digit dropped": 0.1},
        ],
        "street": [
            {"min_score": None, "right": 8, "wrong": 0, "none": 2},
            {"min_score": 0.2, "right": 9, "wrong": 1, "none": 0},
        ],
    }
    fig = confirm_figure(report, default=0.2)
    try:
        left, middle, right = fig.axes
        (passed, marker) = left.get_lines()
        assert list(passed.get_ydata()) == [0.8, 0.9] and list(marker.get_xdata()) == [1, 1]
        assert [t.get_text() for t in left.get_xticklabels()] == ["read\nonly", "0.2"]
        neighbour, dropped, marked = middle.get_lines()
        assert list(marked.get_xdata()) == [1, 1]
        assert neighbour.get_label() == "neighbour (40)" and dropped.get_label() == "digit dropped (20)"
        assert list(neighbour.get_ydata()) == [0.5 / 40, 0.025]  # none passing: drawn at the floor
        assert list(dropped.get_ydata()) == [0.05, 0.1] and middle.get_yscale() == "log"
        label, none, wrong, street_marker = right.get_lines()
        assert [list(line.get_ydata()) for line in (label, none, wrong)] == [[8, 9], [2, 0], [0, 1]]
        assert label.get_label() == "the label" and list(street_marker.get_xdata()) == [1, 1]
        assert [t.get_text() for t in right.texts] == ["8", "9", "2", "0", "0", "1"]
        assert right.get_ylim()[0] == 0  # counts of photos: from none
    finally:
        plt.close(fig)
    assert plot_confirm(report, tmp_path / "c.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
