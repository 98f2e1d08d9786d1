"""models.balance: strongly tinted photos brought back towards grey, the others read as they are."""

from __future__ import annotations

import numpy as np
import pytest

from models.balance import BalanceParams, balance_colour, channel_means, check_balance_gate, colour_cast
from models.grain import MAX_SIDE
from models.srgb import to_linear, to_srgb


def plate(
    gains: tuple[float, float, float] = (1.0, 1.0, 1.0), shape: tuple[int, int] = (40, 100)
) -> np.ndarray:
    """A grey plate (ground 200, three dark bars 40) [H, W, 3] uint8, each channel's light scaled by
    `gains`: (1, 0.55, 0.15) is sodium street light."""
    pixels = np.full((*shape, 3), 200, dtype=np.uint8)
    for left in (20, 45, 70):
        pixels[5:35, left : left + 6] = 40
    return to_srgb(to_linear(pixels) * np.asarray(gains))


def test_channel_means_are_linear_light_in_the_central_window() -> None:
    pixels = np.zeros((2, 2, 3), dtype=np.uint8)
    pixels[..., 0] = 188  # ~0.5 of full light, not 188 / 255
    pixels[0, 0, 1] = 255  # a quarter of the pixels fully green
    assert channel_means(pixels) == pytest.approx([0.5, 0.25, 0.0], abs=0.005)
    assert channel_means(np.zeros((0, 5, 3), dtype=np.uint8)).tolist() == [0.0, 0.0, 0.0]
    # a red frame around a grey window the size of the measured one: only the window counts
    framed = np.zeros((MAX_SIDE + 200, MAX_SIDE + 200, 3), dtype=np.uint8)
    framed[..., 0] = 255
    framed[100:-100, 100:-100] = 128
    assert channel_means(framed) == pytest.approx([0.216] * 3, abs=0.001)


def test_the_cast_is_the_largest_channel_mean_over_the_smallest() -> None:
    assert colour_cast(np.array([0.2, 0.2, 0.2])) == 1.0
    assert colour_cast(np.array([0.6, 0.3, 0.1])) == pytest.approx(6.0)
    assert colour_cast(np.array([0.5, 0.3, 0.0])) == pytest.approx(0.5 / 1e-9)  # no blue: endless


def test_a_photo_of_ordinary_colour_is_the_very_array() -> None:
    for pixels in (plate(), plate((1.0, 0.9, 0.7)), plate((0.6, 0.8, 1.0))):
        assert colour_cast(channel_means(pixels)) <= BalanceParams().gate
        assert balance_colour(pixels, BalanceParams()) is pixels


def test_the_gain_grows_from_nothing_at_the_gate_to_the_whole_grey_world_gain() -> None:
    params = BalanceParams(gate=3.0, full=2.0, max_gain=8.0)
    assert params.gains(np.array([0.3, 0.2, 0.1])).tolist() == [1.0, 1.0, 1.0]  # a cast of exactly 3
    # just over the gate: hardly any change (continuous)
    assert params.gains(np.array([0.301, 0.2, 0.1])) == pytest.approx([1.0, 1.0, 1.0], abs=0.005)
    # a cast of 6 or more: the whole gain, to the mean of the channel means
    means = np.array([0.6, 0.3, 0.1])
    assert params.gains(means) == pytest.approx(means.mean() / means)
    # a cast of 4.5: half way, so half the gain in stops
    means = np.array([0.45, 0.3, 0.1])
    assert params.gains(means) == pytest.approx(np.sqrt(means.mean() / means))
    # no blue at all: the cast is endless, the blue gain capped
    assert params.gains(np.array([0.5, 0.3, 0.0]))[2] == 8.0
    assert BalanceParams(gate=0.0).gains(np.array([0.6, 0.3, 0.01])).tolist() == [1.0, 1.0, 1.0]
    assert BalanceParams().gains(np.zeros(3)).tolist() == [1.0, 1.0, 1.0]  # a black photo


def test_a_photo_under_sodium_light_comes_back_close_to_grey() -> None:
    grey = plate()
    lit = plate((1.0, 0.55, 0.15))
    assert colour_cast(channel_means(lit)) == pytest.approx(1 / 0.15, rel=0.02)
    out = balance_colour(lit, BalanceParams())
    assert out is not lit and out.dtype == np.uint8 and out.shape == lit.shape
    assert colour_cast(channel_means(out)) < 1.05
    # the light overall stays near what it was, and the plate's bars stay dark against the ground
    assert channel_means(out).mean() == pytest.approx(channel_means(lit).mean(), rel=0.03)
    assert np.abs(out.astype(int) - grey.astype(int)).max() < 50
    assert (out[20, 22] < out[2, 2]).all()


def test_each_channel_is_mapped_by_one_gain_of_its_light() -> None:
    lit = plate((1.0, 0.55, 0.15))
    out = balance_colour(lit, BalanceParams())
    gains = BalanceParams().gains(channel_means(lit))
    assert np.array_equal(out, to_srgb(to_linear(lit) * gains))


@pytest.mark.parametrize("gate", [0.0, 1.0, 3.0, 10.0])
def test_a_valid_gate_is_kept(gate: float) -> None:
    assert check_balance_gate(gate) == gate and BalanceParams(gate=gate).gate == gate


@pytest.mark.parametrize("settings", [{"gate": 0.5}, {"gate": -1.0}, {"full": 0.9}, {"max_gain": 0.5}])
def test_settings_out_of_range_are_refused(settings: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="balance"):
        BalanceParams(**settings)
