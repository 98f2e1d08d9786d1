import json
from pathlib import Path

import pytest
from PIL import Image

from training import synth
from training.synth import find_fonts, fonts_in, render_sample


def test_fonts_found_and_all_draw_digits() -> None:
    fonts = find_fonts()
    assert fonts and all(isinstance(f, str) for f in fonts)
    assert not any("cmsy" in f.lower() or "cmex" in f.lower() for f in fonts)


def test_font_order_does_not_depend_on_where_the_folders_are(tmp_path: Path) -> None:
    def make(folder: Path, names: list[str]) -> Path:
        for name in names:
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_bytes(b"")
        return folder

    system = ["b/Zeta.ttf", "a/Alpha.otf", "Mid.TTF", "notes.txt", "cmsy10.ttf"]
    bundled = ["Alpha.otf", "Beta.ttf"]
    orders = []
    for first, second in (("a", "z"), ("z", "a")):  # by whole path: the bundled folder last, then first
        root = tmp_path / first
        found = fonts_in([make(root / "sys", system), make(tmp_path / second / "mpl", bundled)])
        orders.append([(p.parent.name, p.name) for p in found])
    expected = [
        ("a", "Alpha.otf"),  # the same name: the earlier folder in `dirs` first
        ("mpl", "Alpha.otf"),
        ("mpl", "Beta.ttf"),
        ("sys", "Mid.TTF"),
        ("b", "Zeta.ttf"),
    ]
    assert orders[0] == expected and orders[1] == expected


def test_same_seed_same_image() -> None:
    a, b = render_sample(11), render_sample(11)
    assert a.image.tobytes() == b.image.tobytes() and a.digits == b.digits
    assert render_sample(12).image.tobytes() != a.image.tobytes()


def test_pillow_font_is_the_last_resort() -> None:
    sample = render_sample(5, fonts=[""])
    assert 1 <= len(sample.digits) <= 5


def test_boxes_inside_image_and_hold_ink() -> None:
    for seed in range(20):
        sample = render_sample(seed)
        w, h = sample.image.size
        assert 1 <= len(sample.digits) <= 5
        for digit, (x1, y1, x2, y2) in sample.digits:
            assert 0 <= digit <= 9
            assert -0.5 <= x1 < x2 <= w + 0.5 and -0.5 <= y1 < y2 <= h + 0.5


def test_writes_hw2_layout(synth_dir: Path) -> None:
    for split, count in (("train", 40), ("valid", 8)):
        doc = json.loads((synth_dir / f"{split}.json").read_text())
        assert len(doc["images"]) == count
        assert {a["category_id"] for a in doc["annotations"]} <= set(range(1, 11))
        first = doc["images"][0]
        with Image.open(synth_dir / split / first["file_name"]) as img:
            assert img.size == (first["width"], first["height"])
    assert not (synth_dir / "test.json").exists() and len(list((synth_dir / "test").iterdir())) == 4


def test_bundled_fonts_are_matplotlibs_own_and_among_the_machines() -> None:
    bundled = find_fonts("bundled")
    assert bundled and all("mpl-data" in Path(f).parts for f in bundled)
    assert set(bundled) <= set(find_fonts("machine"))
    with pytest.raises(ValueError, match="no font source 'system'"):
        find_fonts("system")


def test_main_draws_with_the_chosen_fonts_and_lists_them(tmp_path: Path) -> None:
    args = ["--out", str(tmp_path / "s"), "--count", "3", "--valid-fraction", "0", "--workers", "1"]
    out = synth.main([*args, "--fonts", "bundled"])
    doc = json.loads((out / "fonts.json").read_text())
    assert doc["source"] == "bundled" and doc["fonts"] == [Path(f).name for f in find_fonts("bundled")]
    first = json.loads((out / "train.json").read_text())["images"][0]
    expected = render_sample(first["id"], find_fonts("bundled")).image  # seed 0: image id i is seed i
    with Image.open(out / "train" / first["file_name"]) as drawn:
        assert drawn.tobytes() == expected.tobytes()
