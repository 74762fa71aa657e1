from __future__ import annotations

import json
from pathlib import Path

import pytest

from kiosk.cli import main


def _use_models(folder: Path, shared: Path, monkeypatch: pytest.MonkeyPatch, *names: str) -> None:
    """A model directory holding only ``names`` (links to the shared files)."""
    from models import registry

    for name in names:
        file = registry.spec(name).file
        (folder / file).symlink_to(shared / file)
    monkeypatch.setenv("KIOSK_MODEL_DIR", str(folder))


def _gallery_config(folder: Path) -> str:
    """A MobileFaceNet gallery's config: every file it needs is in ../shared (CLIP's
    RN50.pt, which the default CLIP recognizer needs, is not)."""
    path = folder / "gallery.toml"
    path.write_text('[recognizer]\nkind = "embedding_gallery"\n', encoding="utf-8")
    return str(path)


def _doctor_json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict]:
    code = main([*argv, "doctor", "--json"])
    return code, json.loads(capsys.readouterr().out)


def _gallery_config(tmp_path: Path) -> str:
    """The embedding gallery: the shared models are all it needs (CLIP needs RN50.pt)."""
    config = tmp_path / "gallery.toml"
    config.write_text('[recognizer]\nkind = "embedding_gallery"\n', encoding="utf-8")
    return str(config)


def test_doctor_ready_with_shared_models(
    model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, report = _doctor_json(capsys, "--config", _gallery_config(tmp_path))
    assert code == 0 and report["can_run"] is True
    assert report["checks"]["onnxruntime"]["providers_in_use"][-1] == "CPUExecutionProvider"
    # The deterministic install leaves exactly one onnxruntime distribution.
    assert list(report["checks"]["onnxruntime"]["packages"]) == ["onnxruntime-gpu"]
    states = {row["name"]: row["state"] for row in report["checks"]["models"]["files"]}
    assert states["scrfd_2.5g"] == "ok"


@pytest.mark.shared
def test_doctor_fails_without_detector_and_says_how_to_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("KIOSK_MODEL_DIR", str(tmp_path))
    code, report = _doctor_json(capsys)
    assert code == 1 and report["can_run"] is False
    errors = [p for p in report["problems"] if p["severity"] == "error"]
    assert any("kiosk models fetch scrfd_2.5g" in p["fix"] for p in errors)


def test_doctor_fails_without_the_gallery_embedder(
    model_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _use_models(tmp_path, model_dir, monkeypatch, "scrfd_2.5g", "minifasnet_v2", "minifasnet_v1se")
    config = _gallery_config(tmp_path)
    code, report = _doctor_json(capsys, "--config", config)
    assert code == 1 and report["can_run"] is False
    fixes = [p["fix"] for p in report["problems"] if p["severity"] == "error"]
    assert fixes == [f"kiosk --config {config} models fetch mobilefacenet_128d"]
    monkeypatch.delenv("KIOSK_CONFIG")  # `--config` exported it for child processes
    code, report = _doctor_json(capsys)  # the default, CLIP: its weights instead
    fixes = [p["fix"] for p in report["problems"] if p["severity"] == "error"]
    assert code == 1 and fixes == ["kiosk models fetch clip_rn50_openai"]


def test_bad_config_is_one_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "kiosk.toml"
    config.write_text('[detector]\nname = "scrfd_2.5g"\ninput_size = 100\ncolour = "red"\n')
    assert main(["--config", str(config), "doctor"]) == 2
    err = capsys.readouterr().err
    assert "unknown key 'detector.colour'" in err
    assert "detector.input_size" in err


@pytest.mark.parametrize(
    ("pyside", "python", "flagged"),
    [
        ("6.12.0", (3, 11), True),
        ("6.12.0", (3, 10), True),
        ("6.12.0", (3, 12), False),
        ("6.11.3", (3, 11), False),
        ("6.12.1", (3, 11), False),
        (None, (3, 11), False),
    ],
)
def test_pyside_612_on_old_python_is_flagged(
    pyside: str | None, python: tuple[int, int], flagged: bool
) -> None:
    from kiosk.setup.doctor import pyside_problem

    problem = pyside_problem(pyside, python)
    assert (problem is not None) == flagged
    if problem is not None:
        assert problem.severity == "warning" and 'pip install "PySide6!=6.12.0"' in problem.fix


def test_doctor_prints_a_table_and_json_only_when_asked(
    model_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _use_models(
        tmp_path, model_dir, monkeypatch, "scrfd_2.5g", "minifasnet_v2", "mobilefacenet_128d"
    )
    (tmp_path / "minifasnet_v1se.onnx").write_bytes(b"not the model")
    config = _gallery_config(tmp_path)
    assert main(["--config", config, "doctor"]) == 1
    table = capsys.readouterr().out
    assert "{" not in table  # no JSON
    lines = table.splitlines()
    headings = [line for line in lines if line and not line.startswith(" ")]
    assert headings[:-1] == [
        "python",
        "qt",
        "cameras",
        "models",
        "onnxruntime",
        "paths",
        "people",
        "site",
    ]
    assert headings[-1].startswith("the kiosk cannot run (1 error(s)")
    rows = {
        line.split()[1]: line.split()[0]
        for line in lines
        if line.startswith("  ") and line.split()[0] in ("ok", "warning", "error", "-")
    }
    assert rows["scrfd_2.5g"] == rows["minifasnet_v2"] == rows["providers"] == "ok"
    assert rows["minifasnet_v1se"] == "error" and rows["yunet"] == "-"
    at = next(i for i, line in enumerate(lines) if line.split()[1:2] == ["minifasnet_v1se"])
    assert "is corrupt" in lines[at]
    fix = ["fix:", "kiosk", "--config", config, "models", "fetch", "minifasnet_v1se"]
    assert lines[at + 1].split() == fix
    code, report = _doctor_json(capsys, "--config", config)
    assert code == 1
    (problem,) = [p for p in report["problems"] if p["severity"] == "error"]
    assert problem["section"] == "models" and problem["fix"] == " ".join(fix[1:])


def test_a_problem_without_a_row_is_still_shown() -> None:
    from kiosk.setup.doctor import DoctorReport, Problem, format_report

    report = DoctorReport()
    report.add("python", "ok", "python", "3.11")
    report.problems.append(Problem("error", "something else broke", "kiosk doctor", "nowhere"))
    table = format_report(report).splitlines()
    at = table.index("other")
    assert table[at + 1].split()[:2] == ["error", "something"]
    assert table[at + 2].split() == ["fix:", "kiosk", "doctor"]
    assert table[-1].startswith("the kiosk cannot run (1 error(s), 0 warning(s))")


def test_doctor_names_a_damaged_stored_photo_by_the_persons_id(
    model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from enroll.store import PeopleStore
    from tests.helpers import consent, photos

    store_dir = tmp_path / "store"
    with PeopleStore(store_dir) as store:
        ada = store.add_person("Ada Lovelace", photos(2), consent())
        store.add_person("Bob", photos(2), consent())
    damaged = sorted((store_dir / "photos" / ada.uid).iterdir())[0]
    damaged.write_bytes(damaged.read_bytes()[:40])  # truncated
    config = tmp_path / "store.toml"
    config.write_text(
        f'[recognizer]\nkind = "embedding_gallery"\n[enroll]\nstore_dir = "{store_dir}"\n',
        encoding="utf-8",
    )
    code, report = _doctor_json(capsys, "--config", str(config))
    people = report["checks"]["people"]
    assert people["people"] == 2 and list(people["damaged_photos"]) == [ada.uid]
    (problem,) = [p for p in report["problems"] if p["section"] == "people"]
    assert problem["severity"] == "warning" and ada.uid in problem["what"]
    assert "Ada" not in json.dumps(report)  # by id, never by name
    assert code == 0  # a warning: the rest of the gallery serves
