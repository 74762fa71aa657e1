"""`kiosk train` and `kiosk recognize` end to end, with bad input, on a tiny CLIP."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

from kiosk.cli import main
from models.clip.bundle import load_bundle

TINY_CONFIG = """
[models]
device = "cpu"
[detector]
input_size = 320
[clip]
model = "kiosk-tiny-rn"
pretrained = "none"
[train]
epochs = 2
trainable_layers = 1
learning_rate = 0.01
"""


@pytest.fixture
def config(tmp_path: Path, tiny_clip: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(TINY_CONFIG, encoding="utf-8")
    return path


def _person(root: Path, name: str, photos: list[Path]) -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    for photo in photos:
        shutil.copy(photo, folder / photo.name)
    return folder


def _orl(shared: Callable[..., Path], person: str, count: int) -> list[Path]:
    return sorted(shared("faces", "att_orl", person).glob("*.pgm"))[:count]


def test_train_skips_bad_input_and_recognize_prints_json_lines(
    tmp_path: Path, config: Path, shared: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    people = tmp_path / "people"
    jose = _person(people, "José Ñúñez", _orl(shared, "s1", 4))
    (jose / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 broken jpeg")
    (jose / "notes.txt").write_text("not a photo", encoding="utf-8")
    cv2.imwrite(str(jose / "blank.png"), np.full((120, 100, 3), 128, np.uint8))
    _person(people, "Anna", _orl(shared, "s2", 4))
    _person(people, "anna", _orl(shared, "s3", 4))  # the same name as Anna
    _person(people, "bad\x01name", _orl(shared, "s4", 3))
    _person(people, "a..b", _orl(shared, "s5", 3))
    _person(people, "few", _orl(shared, "s6", 1))
    out, report_path = tmp_path / "out" / "people.bundle", tmp_path / "train.json"

    code = main(
        [
            "--config",
            str(config),
            "train",
            "--people",
            str(people),
            "--out",
            str(out),
            "--json",
            str(report_path),
        ]
    )
    err = capsys.readouterr().err
    assert code == 0, err
    assert "UNTRAINED" in err
    report = json.loads(report_path.read_text(encoding="utf-8"))
    assert report["people"] == 2
    assert report["images"] == 4 + 3 + 4 + 1  # files looked at in usable-named folders
    reasons = " | ".join(item["reason"] for item in report["skipped_items"])
    for expected in (
        "duplicate name",
        "control or invisible",
        "'..'",
        "not an image, or is corrupt",
        "not an image file",
        "no face found",
        "too few usable photos",
    ):
        assert expected in reasons
    assert report["skipped"] == len(report["skipped_items"]) == 7
    for key in ("train_accuracy", "test_accuracy", "seconds"):
        assert key in report
    bundle = load_bundle(out)
    assert bundle.people == ["Anna", "José Ñúñez"]
    assert bundle.metrics["skipped"] == 7

    image = _orl(shared, "s1", 5)[4]
    folder = tmp_path / "queries"
    folder.mkdir()
    shutil.copy(image, folder / "a.pgm")
    (folder / "broken.png").write_bytes(b"garbage")
    code = main(
        [
            "--config",
            str(config),
            "recognize",
            "--bundle",
            str(out),
            "--backend",
            "torch",
            str(folder),
        ]
    )
    captured = capsys.readouterr()
    assert code == 0
    assert "UNTRAINED" in captured.err and "broken.png" in captured.err
    lines = [json.loads(line) for line in captured.out.splitlines()]
    assert len(lines) == 1
    assert set(lines[0]) == {"source", "frame", "box", "name", "confidence"}
    assert lines[0]["name"] in {"Anna", "José Ñúñez", "unknown"}
    assert lines[0]["frame"] == 0 and len(lines[0]["box"]) == 4


def test_train_with_too_few_people_writes_nothing(
    tmp_path: Path, config: Path, shared: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    people = tmp_path / "people"
    _person(people, "only", _orl(shared, "s1", 3))
    _person(people, "lonely", _orl(shared, "s2", 1))
    out = tmp_path / "people.bundle"
    code = main(["--config", str(config), "train", "--people", str(people), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2
    assert "nothing written" in err and "at least 2" in err
    assert not out.exists() and not list(tmp_path.glob("*.tmp"))


def test_recognize_reports_missing_and_corrupt_bundles(
    tmp_path: Path, config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = tmp_path / "x.png"
    cv2.imwrite(str(image), np.zeros((10, 10, 3), np.uint8))
    assert (
        main(["--config", str(config), "recognize", "--bundle", str(tmp_path / "no"), str(image)])
        == 2
    )
    assert "does not exist" in capsys.readouterr().err
    bad = tmp_path / "bad.bundle"
    bad.write_text("hello", encoding="utf-8")
    assert main(["--config", str(config), "recognize", "--bundle", str(bad), str(image)]) == 2
    assert "not a recognizer bundle" in capsys.readouterr().err
