"""`digitserve predict`, in-process and against a running server."""

from __future__ import annotations

import csv
import json
import shutil
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
import torch
from PIL import Image

from models.assembly import AssembledNumber, AssemblyParams, Detection, assemble_number
from models.reread import Findings
from models.verifier import load_verifier, number_features
from service import cli, readers, reports
from service.imaging import REDUCE_TO_PX
from service.predictor import Predictor, serving_version
from tests.service.test_readers import BarrierReader, OnceStream
from tests.service.test_server import Server, server_factory  # noqa: F401 (fixture)
from training.synth import render_sample


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    for image_id in (3, 12):
        render_sample(image_id).image.save(folder / f"{image_id}.png")
    (folder / "notes.txt").write_text("not an image, ignored in folders")
    return folder


def local_predict(photos: Path, checkpoint: Path, out: Path) -> list[str]:
    """In-process arguments that make even the untrained tiny model read numbers (threshold 0)."""
    args = [
        "predict",
        str(photos),
        "--checkpoint",
        str(checkpoint),
        "--device",
        "cpu",
        "--score-threshold",
        "0",
    ]
    return [*args, "--out", str(out)]


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open() as handle:
        return list(csv.DictReader(handle))


@pytest.mark.parametrize("damage", ["no checkpoint", "damaged reader"])
def test_a_checkpoint_that_cannot_be_loaded_is_named_without_a_traceback(
    photos: Path, tiny_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], damage: str
) -> None:
    checkpoint = tmp_path / "ck"
    if damage == "damaged reader":
        shutil.copytree(tiny_checkpoint, checkpoint)
        (checkpoint / "reader.json").write_text("not json")
        (checkpoint / "reader.safetensors").write_bytes(b"")
    assert cli.main(["predict", str(photos), "--checkpoint", str(checkpoint), "--no-progress"]) == 2
    err = capsys.readouterr().err
    named = (
        f"checkpoint {checkpoint}: missing checkpoint.json"
        if damage == "no checkpoint"
        else f"reader {checkpoint}"
    )
    assert f"digitserve: cannot load the model: {named}" in err and "Traceback" not in err


def test_predict_folder_in_process_writes_hw2_files_and_drawings(
    photos: Path, tiny_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli.main(
        [
            *local_predict(photos, tiny_checkpoint, tmp_path / "out"),
            "--draw",
            str(tmp_path / "drawn"),
            "--no-progress",
        ]
    )
    assert code == 0
    table = capsys.readouterr().out
    assert "3.png" in table and "12.png" in table and "notes.txt" not in table
    rows = read_csv(tmp_path / "out" / "pred.csv")
    assert [r["image_id"] for r in rows] == ["3", "12"] and all(r["pred_label"] != "-1" for r in rows)
    preds = json.loads((tmp_path / "out" / "pred.json").read_text())
    assert {p["image_id"] for p in preds} == {3, 12} and all(1 <= p["category_id"] <= 10 for p in preds)
    assert sorted(p.name for p in (tmp_path / "drawn").iterdir()) == ["12.png", "3.png"]


def test_a_photo_turned_by_its_exif_is_drawn_upright_under_its_boxes(
    tmp_path: Path, tiny_checkpoint: Path
) -> None:
    """The boxes are in the upright photo's pixels: the drawing must be the upright photo, not the
    stored one (120 x 50 stored, 50 x 120 upright), and the boxes must fall where the digits are."""
    folder = tmp_path / "turned"
    folder.mkdir()
    exif = Image.Exif()
    exif[0x0112] = 6  # turn 90 degrees clockwise to display
    Image.new("RGB", (120, 50), "white").save(folder / "1.jpg", exif=exif)
    args = [*local_predict(folder, tiny_checkpoint, tmp_path / "out"), "--draw", str(tmp_path / "drawn")]
    assert cli.main([*args, "--no-progress"]) == 0
    with Image.open(tmp_path / "drawn" / "1.png") as drawn:
        assert drawn.size == (50, 120)
    detections = json.loads((tmp_path / "out" / "pred.json").read_text())
    assert detections and all(d["bbox"][0] + d["bbox"][2] <= 50.5 for d in detections)  # upright pixels


def test_files_sharing_a_stem_get_drawings_of_their_own(tmp_path: Path, tiny_checkpoint: Path) -> None:
    """A phone's IMG_1.HEIC beside its IMG_1.JPG, and 3.png in two folders: four drawings, none lost."""
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    render_sample(3).image.save(first / "IMG_1.HEIC", format="HEIF")
    render_sample(3).image.save(first / "IMG_1.JPG", format="JPEG")
    render_sample(3).image.save(first / "3.png")
    render_sample(12).image.save(second / "3.png")
    args = [*local_predict(first, tiny_checkpoint, tmp_path / "out"), "--draw", str(tmp_path / "drawn")]
    assert cli.main([*args[:2], str(second), *args[2:], "--no-progress"]) == 0
    assert sorted(p.name for p in (tmp_path / "drawn").iterdir()) == [
        "3_1.png",
        "3_4.png",
        "IMG_1_2.png",
        "IMG_1_3.png",
    ]
    with Image.open(tmp_path / "drawn" / "3_4.png") as drawn:
        assert drawn.size == render_sample(12).image.size  # the second folder's 3.png, not the first's


def test_json_lines_give_each_file_as_the_api_would(
    photos: Path, tiny_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = photos / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    args = [*local_predict(photos, tiny_checkpoint, tmp_path / "out"), "--format", "jsonl", "--no-progress"]
    assert cli.main(args) == 1  # the broken file
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]  # nothing but JSON
    by_file = {Path(x["file"]).name: x for x in lines}
    assert sorted(by_file) == ["12.png", "3.png", "broken.png"]
    assert "truncated or damaged" in by_file["broken.png"]["error"]
    assert cli.main([*args[:-3], "--no-progress"]) == 1  # the same files as a table
    table = {Path(row.split()[0]).name: row.split()[1] for row in capsys.readouterr().out.splitlines()[1:]}
    for name in ("3.png", "12.png"):
        x = by_file[name]
        assert x["text"] == table[name] and x["number"] == int(x["text"]) and x["ms"] > 0
        assert len(x["digits"]) == len(x["text"]) and all(len(d["bbox"]) == 4 for d in x["digits"])
        assert [d["category_id"] - 1 for d in x["digits"]] == [int(c) for c in x["text"]]
    # what a server of this checkpoint at these thresholds answers with
    served = Predictor.load(tiny_checkpoint, torch.device("cpu"), score_threshold=0.0)
    assert (
        by_file["3.png"]["version"] == by_file["12.png"]["version"] == serving_version(served, REDUCE_TO_PX)
    )


class Stdin:
    """Standard input: `buffer` holds the bytes piped in, read at most once; a terminal or a pipe."""

    def __init__(self, data: bytes, tty: bool = False) -> None:
        self.buffer, self.tty = OnceStream(data), tty

    def isatty(self) -> bool:
        return self.tty


def test_an_image_piped_in_reads_as_the_same_file_does(
    photos: Path,
    tiny_checkpoint: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    stdin = Stdin((photos / "12.png").read_bytes())
    monkeypatch.setattr(cli.sys, "stdin", stdin)
    args = [
        *local_predict(photos / "12.png", tiny_checkpoint, tmp_path / "out"),
        "--draw",
        str(tmp_path / "drawn"),
    ]
    args[1:2] = ["-", str(photos / "12.png")]
    assert cli.main([*args, "--format", "jsonl", "--no-progress"]) == 0
    piped, filed = (json.loads(line) for line in capsys.readouterr().out.splitlines())
    assert piped["file"] == "-" and filed["file"] == str(photos / "12.png")
    assert piped["text"] and {**piped, "file": "", "ms": 0} == {**filed, "file": "", "ms": 0}
    assert stdin.buffer.reads == 1  # read once, drawn from the bytes kept
    assert sorted(p.name for p in (tmp_path / "drawn").iterdir()) == ["12.png", "stdin.png"]
    with Image.open(tmp_path / "drawn" / "stdin.png") as a, Image.open(tmp_path / "drawn" / "12.png") as b:
        assert a.tobytes() == b.tobytes()
    rows = read_csv(tmp_path / "out" / "pred.csv")  # "-" has no number: the files are numbered in order
    assert rows == [
        {"image_id": "1", "pred_label": piped["text"]},
        {"image_id": "2", "pred_label": filed["text"]},
    ]


def test_nothing_piped_in_is_a_row_with_its_error(
    tiny_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(cli.sys, "stdin", Stdin(b""))
    assert cli.main(["predict", "-", "--checkpoint", str(tiny_checkpoint), "--no-progress"]) == 1
    out = capsys.readouterr().out.splitlines()[1]
    assert out.split()[:2] == ["-", "error"] and "nothing came in on standard input" in out


def test_standard_input_from_a_terminal_or_twice_is_refused_before_any_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(cli.sys, "stdin", Stdin(b"", tty=True))
    with pytest.raises(SystemExit) as terminal:  # no checkpoint is loaded: "x" does not exist
        cli.main(["predict", "-", "--checkpoint", str(tmp_path / "x")])
    assert terminal.value.code == 2 and "pipe one in" in capsys.readouterr().err
    monkeypatch.setattr(cli.sys, "stdin", Stdin(b"piped"))
    with pytest.raises(SystemExit, match="can be given once"):
        cli.main(["predict", "-", "-", "--checkpoint", str(tmp_path / "x")])


def test_bad_file_is_reported_and_exit_code_is_nonzero(
    photos: Path, tiny_checkpoint: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = photos / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    code = cli.main(
        [
            "predict",
            str(broken),
            str(photos / "3.png"),
            "--checkpoint",
            str(tiny_checkpoint),
            "--device",
            "cpu",
            "--no-progress",
        ]
    )
    out = capsys.readouterr().out
    assert code == 1 and "error" in out and "truncated or damaged" in out and "-1" in out


def test_a_phones_heic_and_avif_photos_in_a_folder_are_read(
    tmp_path: Path, tiny_checkpoint: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "phone"
    folder.mkdir()
    render_sample(3).image.save(folder / "IMG_0001.HEIC", format="HEIF")
    render_sample(12).image.save(folder / "12.avif", format="AVIF")
    (folder / "IMG_0001.MOV").write_bytes(b"not a photo: skipped, and named")
    (folder / ".DS_Store").write_bytes(b"hidden: skipped without a word")
    images, skipped = cli.collect_images([folder])
    assert [p.name for p in images] == ["12.avif", "IMG_0001.HEIC"]
    assert [p.name for p in skipped] == ["IMG_0001.MOV"]
    code = cli.main(
        [*local_predict(folder, tiny_checkpoint, tmp_path / "out"), "--format", "jsonl", "--no-progress"]
    )
    out, err = capsys.readouterr()
    records = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert code == 0 and len(records) == 2 and all("error" not in r for r in records), records
    assert "skipped 1 entry" in err and "IMG_0001.MOV" in err and ".DS_Store" not in err


def test_the_files_a_folder_holds_besides_images_are_named_and_none_at_all_is_an_error(
    tmp_path: Path, tiny_checkpoint: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "documents"
    folder.mkdir()
    for i in range(7):
        (folder / f"note{i}.txt").write_text("not an image")
    assert cli.main([*local_predict(folder, tiny_checkpoint, tmp_path / "out"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert (
        "skipped 7 entries" in err
        and "note0.txt, note1.txt, note2.txt, note3.txt, note4.txt and 2 more" in err
    )
    assert "no image files to read" in err and not (tmp_path / "out").exists()


def test_folders_inside_are_named_as_skipped_or_read_with_recursive(
    tmp_path: Path, tiny_checkpoint: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A phone's DCIM: its photos are in folders inside it."""
    dcim = tmp_path / "DCIM"
    (dcim / "101APPLE").mkdir(parents=True)
    (dcim / "100APPLE").mkdir()
    (dcim / ".thumbnails").mkdir()
    render_sample(3).image.save(dcim / "1.png")
    render_sample(4).image.save(dcim / "100APPLE" / "IMG_0001.HEIC", format="HEIF")
    render_sample(5).image.save(dcim / "101APPLE" / "1.png")
    render_sample(6).image.save(dcim / ".thumbnails" / "1.png")
    images, skipped = cli.collect_images([dcim])
    assert images == [dcim / "1.png"] and skipped == [dcim / "100APPLE", dcim / "101APPLE"]
    images, skipped = cli.collect_images([dcim], recursive=True)
    assert images == [dcim / "1.png", dcim / "100APPLE" / "IMG_0001.HEIC", dcim / "101APPLE" / "1.png"]
    assert skipped == []
    assert cli.main([*local_predict(dcim, tiny_checkpoint, tmp_path / "out"), "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "skipped 2 entries" in err and "100APPLE/, 101APPLE/" in err and "--recursive reads the 2" in err
    assert [r["image_id"] for r in read_csv(tmp_path / "out" / "pred.csv")] == ["1"]
    args = [*local_predict(dcim, tiny_checkpoint, tmp_path / "out"), "--recursive", "--no-progress"]
    assert cli.main(args) == 0
    assert "skipped" not in capsys.readouterr().err
    assert [r["image_id"] for r in read_csv(tmp_path / "out" / "pred.csv")] == ["1", "2", "3"]  # places


def test_missing_path_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="does not exist"):
        cli.main(["predict", str(tmp_path / "nope.png")])


def test_concurrency_and_retries_are_checked_before_any_work(
    photos: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for extra in (["--concurrency", "2"], ["--url", "http://127.0.0.1:1", "--concurrency", "0"]):
        with pytest.raises(SystemExit) as exited:
            cli.main(["predict", str(photos), *extra])
        assert exited.value.code == 2
    assert "--concurrency needs --url" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["predict", str(photos), "--url", "http://127.0.0.1:1", "--retries", "-1"])


def test_ctrl_c_keeps_the_files_read_so_far(
    photos: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    class InterruptedReader(BarrierReader):
        """Reads "3.png"; Ctrl-C arrives while it reads "12.png"."""

        def __init__(self, checkpoint: Path, device: str, params: dict[str, float]) -> None:
            super().__init__(1, photos / "none")

        def detect(self, path: Path, data: bytes) -> tuple[Findings, str | None]:
            if path.stem == "12":
                raise KeyboardInterrupt
            return super().detect(path, data)

    monkeypatch.setattr(cli, "LocalReader", InterruptedReader)
    out = tmp_path / "out"
    args = ["predict", str(photos), "--checkpoint", "x", "--out", str(out), "--draw", str(tmp_path / "drawn")]
    assert cli.main([*args, "--no-progress"]) == 130
    printed = capsys.readouterr()
    assert "interrupted after 1 of 2 files" in printed.err and "3.png" in printed.out
    assert "12.png" not in printed.out
    assert read_csv(out / "pred.csv") == [{"image_id": "3", "pred_label": "3"}]
    assert {p["image_id"] for p in json.loads((out / "pred.json").read_text())} == {3}
    assert [p.name for p in (tmp_path / "drawn").iterdir()] == ["3.png"]


@pytest.mark.slow
def test_predict_against_a_server_matches_in_process(
    photos: Path,
    tiny_checkpoint: Path,
    tmp_path: Path,
    server_factory: type[Server],  # noqa: F811
) -> None:
    server = server_factory(tiny_checkpoint, score_threshold="0.0", api_keys='["k"]')
    server.wait_ready()
    assert cli.main(["predict", str(photos), "--url", server.url, "--no-progress"]) == 2  # no key
    assert (
        cli.main(
            [
                "predict",
                str(photos),
                "--url",
                server.url,
                "--api-key",
                "k",
                "--out",
                str(tmp_path / "remote"),
                "--no-progress",
            ]
        )
        == 0
    )
    assert (
        cli.main(
            [
                *local_predict(photos, tiny_checkpoint, tmp_path / "local"),
                "--no-progress",
            ]
        )
        == 0
    )
    assert read_csv(tmp_path / "remote" / "pred.csv") == read_csv(tmp_path / "local" / "pred.csv")
    # the same readings carry the same version in this process as from the server
    version = httpx.get(f"{server.url}/v1/model", headers={"X-API-Key": "k"}).json()["version"]
    remote = readers.RemoteReader(server.url, "k", {})
    local = readers.LocalReader(tiny_checkpoint, "cpu", {"score_threshold": 0.0})
    image = (photos / "3.png").read_bytes()
    assert remote.detect(photos / "3.png", image)[1] == local.version == version
    elsewhere = readers.RemoteReader(server.url, "k", {"score_threshold": 0.5})  # assembled here: no version
    assert elsewhere.detect(photos / "3.png", image)[1] is None
    remote.close()
    elsewhere.close()
    together = ["predict", str(photos), "--url", server.url, "--api-key", "k", "--concurrency", "2"]
    assert cli.main([*together, "--out", str(tmp_path / "together"), "--no-progress"]) == 0
    assert read_csv(tmp_path / "together" / "pred.csv") == read_csv(tmp_path / "local" / "pred.csv")


def test_pred_json_holds_the_detections_and_pred_csv_reads_the_sites(
    photos: Path, tiny_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    detections = [
        Detection((10, 10, 30, 50), 1, 0.45),
        Detection((11, 10, 31, 50), 7, 0.35),
        Detection((40, 10, 60, 50), 4, 0.9),
    ]
    sites = [Detection((40, 10, 60, 50), 4, 0.9), Detection((10, 10, 30, 50), 7, 0.8)]  # as a reader would
    monkeypatch.setattr(
        Predictor, "detect", lambda self, images: [Findings(detections, sites) for _ in images]
    )
    args = ["predict", str(photos), "--checkpoint", str(tiny_checkpoint), "--device", "cpu"]
    assert cli.main([*args, "--out", str(tmp_path / "out"), "--no-progress"]) == 0
    assert {r["pred_label"] for r in read_csv(tmp_path / "out" / "pred.csv")} == {"74"}
    preds = json.loads((tmp_path / "out" / "pred.json").read_text())
    assert sorted((p["category_id"] - 1, p["score"]) for p in preds if p["image_id"] == 3) == [
        (1, 0.45),
        (4, 0.9),
        (7, 0.35),
    ]


def test_the_table_gives_p_correct_where_the_checkpoint_has_a_verifier_for_the_pipeline(
    photos: Path,
    tiny_checkpoint: Path,
    tiny_checkpoint_with_verifier: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    sites = [Detection((10, 10, 30, 50), 7, 0.8), Detection((40, 10, 60, 50), 4, 0.9)]
    detections = [*sites, Detection((40, 10, 60, 50), 1, 0.3)]  # a rival on the 4
    monkeypatch.setattr(
        Predictor, "detect", lambda self, images: [Findings(detections, sites) for _ in images]
    )
    args = ["predict", str(photos / "3.png"), "--device", "cpu", "--no-progress", "--score-threshold", "0"]
    assert cli.main([*args, "--checkpoint", str(tiny_checkpoint)]) == 0
    plain = capsys.readouterr().out.splitlines()
    assert "p_correct" in plain[0] and plain[1].split()[1:4] == ["74", "0.720", "-"]
    assert cli.main([*args, "--checkpoint", str(tiny_checkpoint_with_verifier)]) == 0
    row = capsys.readouterr().out.splitlines()[1].split()
    verifier = load_verifier(tiny_checkpoint_with_verifier)
    features = number_features(assemble_number(sites), sites, detections)
    assert verifier is not None and features is not None
    assert row[3] == f"{float(verifier[0].p_correct(features)):.3f}"


def test_against_a_server_p_correct_comes_from_its_verifier_at_its_thresholds(
    photos: Path,
    tiny_checkpoint_with_verifier: Path,
    capsys: pytest.CaptureFixture[str],
    server_factory: type[Server],  # noqa: F811
) -> None:
    server = server_factory(tiny_checkpoint_with_verifier, score_threshold="0.0")
    server.wait_ready()
    local = ["predict", str(photos), "--checkpoint", str(tiny_checkpoint_with_verifier), "--device", "cpu"]
    assert cli.main([*local, "--score-threshold", "0", "--no-progress"]) == 0
    expected = [line.split()[3] for line in capsys.readouterr().out.splitlines()[1:]]
    assert cli.main(["predict", str(photos), "--url", server.url, "--no-progress"]) == 0
    remote = [line.split()[3] for line in capsys.readouterr().out.splitlines()[1:]]
    assert "-" not in expected and [float(v) for v in remote] == pytest.approx(
        [float(v) for v in expected], abs=0.01
    )
    same = ["predict", str(photos), "--url", server.url, "--score-threshold", "0.0", "--no-progress"]
    assert cli.main(same) == 0  # its own threshold, given again
    assert [line.split()[3] for line in capsys.readouterr().out.splitlines()[1:]] == remote
    other = ["predict", str(photos), "--url", server.url, "--score-threshold", "0.1", "--no-progress"]
    assert cli.main(other) == 0
    assert {line.split()[3] for line in capsys.readouterr().out.splitlines()[1:]} == {
        "-"
    }  # not its thresholds


class FixedReader:
    """Finds a 4 and a 2 on every file, and a 9 the detector also saw on the 4's box."""

    assembly = AssemblyParams()

    def detect(self, path: Path, data: bytes) -> tuple[Findings, str | None]:
        four, two = Detection((0.0, 0.0, 10.0, 20.0), 4, 0.9), Detection((12.0, 0.0, 22.0, 20.0), 2, 0.8)
        return Findings([four, two, Detection((0.5, 0.0, 10.0, 20.0), 9, 0.3)], [four, two]), None

    def p_correct(self, number: AssembledNumber, found: Findings) -> float | None:
        return None


def test_alternatives_are_read_with_the_number_when_asked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "42.png"
    assert readers.read_one(FixedReader(), path, lambda p: b"").alternatives == ()
    result = readers.read_one(FixedReader(), path, lambda p: b"", readers.ReadOptions(alternatives=2))
    # the swap (0.3) is surer than dropping the 2 (1 - 0.8), surer than dropping the 4 (1 - 0.9)
    assert [(a.number.text, a.edit) for a in result.alternatives] == [("92", "swap"), ("4", "drop")]
    record = reports.result_record(result)
    assert [(a["text"], a["number"], a["edit"]) for a in record["alternatives"]] == [
        ("92", 92, "swap"),
        ("4", 4, "drop"),
    ]
    assert [d["category_id"] for d in record["alternatives"][0]["digits"]] == [10, 3]
    assert reports.result_record(replace(result, alternatives=()))["alternatives"] == []
    table = reports.format_table([result], alternatives=True).splitlines()
    assert table[0].endswith("or perhaps") and table[1].endswith("92, 4")
    assert "or perhaps" not in reports.format_table([result])
    # through main: the option reaches every file's reading, and out of range is refused before any work
    monkeypatch.setattr(cli, "LocalReader", lambda checkpoint, device, params: FixedReader())
    Image.new("RGB", (4, 4)).save(path)
    assert cli.main(["predict", str(path), "--alternatives", "3", "--format", "jsonl", "--no-progress"]) == 0
    line = json.loads(capsys.readouterr().out)
    assert [a["text"] for a in line["alternatives"]] == ["92", "4", "2"]
    for wrong in ("-1", "11"):
        with pytest.raises(SystemExit):
            cli.main(["predict", str(path), "--alternatives", wrong])
        assert "--alternatives must be 0-10" in capsys.readouterr().err


def test_confirm_says_for_each_file_which_of_the_numbers_it_shows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "42.png"

    def read(confirm: tuple[int, ...], min_score: float | None = 0.2) -> readers.FileResult:
        return readers.read_one(
            FixedReader(), path, lambda p: b"", readers.ReadOptions(0, confirm, min_score)
        )

    plain = read((42,))
    assert plain.confirmation is not None and plain.confirmation.how == "read"
    assert readers.read_one(FixedReader(), path, lambda p: b"").confirmation is None  # not asked
    swap = read((92,), 0.3)
    assert reports.shown_cell(swap.confirmation) == "92 (swap 0.30)"
    record = reports.result_record(swap)["confirm"]
    assert (record["expected"], record["match"], record["how"], record["edit"]) == (
        [92],
        92,
        "alternative",
        "swap",
    )
    assert [d["digit"] for d in record["digits"]] == [9, 2] and record["score"] == 0.3
    unsure = read((92,), 0.31)
    assert reports.shown_cell(unsure.confirmation) == "no" and reports.shown_cell(None) == "-"
    assert reports.result_record(unsure)["confirm"] == {
        "expected": [92],
        "shown": False,
        "match": None,
        "passing": [],
        "how": None,
        "digits": [],
        "edit": None,
        "score": None,
    }
    assert "confirm" not in reports.result_record(replace(plain, confirmation=None))
    street = read((40, 92, 42), 0.1)  # 42 read; 92 a swap at 0.3; 4 (a drop, 0.2) not asked
    assert street.confirmation is not None and street.confirmation.passing == (42, 92)
    table = reports.format_table([plain, swap, unsure], confirm=(92,)).splitlines()
    assert table[0].split()[-2:] == ["shows", "92"]
    assert [line.split("  ")[-1].strip() for line in table[1:]] == ["42 (read)", "92 (swap 0.30)", "no"]
    assert (
        reports.format_table([street], confirm=(40, 92, 42))
        .splitlines()[0]
        .endswith("shows one of 40, 92, 42")
    )
    # through main: the default min_score (0.2) passes the swap at 0.3; "read" does not; a summary count
    monkeypatch.setattr(cli, "LocalReader", lambda checkpoint, device, params: FixedReader())
    Image.new("RGB", (4, 4)).save(path)
    for extra, match in (([], 92), (["--min-score", "read"], None), (["--min-score", "0.5"], None)):
        argv = ["predict", str(path), "--confirm", "092", "--format", "jsonl", "--no-progress", *extra]
        assert cli.main(argv) == 0
        out = capsys.readouterr()
        answer = json.loads(out.out)["confirm"]
        assert (answer["expected"], answer["match"]) == ([92], match)
        assert f"92 shown in {int(match is not None)};" in out.err
    argv = ["predict", str(path), "--confirm", "40,92,042,40", "--format", "jsonl", "--no-progress"]
    assert cli.main(argv) == 0
    out = capsys.readouterr()
    answer = json.loads(out.out)["confirm"]
    assert answer["expected"] == [40, 92, 42] and answer["passing"] == [42, 92]
    assert "one of 40, 92, 42 shown in 1;" in out.err
    for wrong, message in (
        (["--confirm", "12a"], "1-15 digits"),
        (["--confirm", "-3"], "1-15 digits"),
        (["--confirm", "12,"], "1-15 digits"),
        (["--confirm", ",".join(map(str, range(101)))], "at most 100 numbers"),
        (["--confirm", "12", "--min-score", "2"], "a score in 0-1"),
        (["--min-score", "0.3"], "--min-score is --confirm's"),
    ):
        with pytest.raises(SystemExit):
            cli.main(["predict", str(path), *wrong])
        assert message in capsys.readouterr().err


def test_confirm_from_asks_each_file_about_its_own_numbers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "proofs"
    folder.mkdir()
    for name in ("a.png", "b.png", "c.png", "d.png"):
        Image.new("RGB", (4, 4)).save(folder / name)
    sheet = tmp_path / "deliveries.csv"  # every file reads 42, with a 9 seen on the 4 (FixedReader)
    sheet.write_text(
        "file,number,street\n"
        f"{folder / 'a.png'},42,Elm\n"  # by path as given: read
        "b.png,92,Elm\n"  # by name: the swap, at 0.3
        "c.png,12 14 16,Oak\n"  # several: none
        "z.png,7,Oak\n"  # not read: named on stderr
    )
    monkeypatch.setattr(cli, "LocalReader", lambda checkpoint, device, params: FixedReader())
    argv = ["predict", str(folder), "--confirm-from", str(sheet), "--no-progress"]
    assert cli.main(argv) == 0
    out = capsys.readouterr()
    rows = {line.split()[0]: line for line in out.out.splitlines()[1:]}
    assert out.out.splitlines()[0].split()[-1] == "shows"
    cells = {Path(f).name: line.split("  ")[-1].strip() for f, line in rows.items()}
    assert cells == {
        "a.png": "42 (read)",
        "b.png": "92 (swap 0.30)",
        "c.png": "no (one of 12, 14, 16)",
        "d.png": "-",
    }
    assert "the numbers expected shown in 2 of the 3 asked;" in out.err
    assert "names files not read: z.png" in out.err
    assert cli.main([*argv, "--min-score", "read", "--format", "jsonl"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line.get("confirm", {}).get("match") for line in lines] == [42, None, None, None]
    assert "confirm" not in lines[3]  # d.png was asked nothing
    for text, message in (
        ("name,number\na.png,1\n", "no file column"),
        ("file,count\na.png,1\n", "no number column"),
        ("file,number\na.png,1\nb.png,12a\n", "line 3: a house number is 1-15 digits, not '12a'"),
        ("file,number\na.png,1\na.png,2\n", "line 3: a.png is given twice"),
        ("file,number\n,1\n", "line 2: no file named"),
        ("file,number\na.png,\n", "line 2: a house number"),
    ):
        sheet.write_text(text)
        assert cli.main(argv) == 2
        assert message in capsys.readouterr().err, text
    assert cli.main(["predict", str(folder), "--confirm-from", str(tmp_path / "none.csv")]) == 2
    assert "cannot use" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main([*argv, "--confirm", "12"])
    assert "not allowed with argument" in capsys.readouterr().err
