"""The door-side bundle builds with one command and runs headless without torch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.helpers import ROOT


@pytest.mark.slow
def test_door_bundle_builds_and_runs_without_torch(
    tmp_path: Path, shared: Callable[..., Path], model_dir: Path
) -> None:
    venv = Path(sys.executable).parent.parent
    build = subprocess.run(
        ["bash", str(ROOT / "packaging" / "build.sh"), str(venv), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert build.returncode == 0, build.stdout + build.stderr
    bundle = tmp_path / "kiosk-door"
    exe = bundle / "kiosk-door"
    assert "kiosk 0.1.0" in build.stdout
    internal = {p.name for p in (bundle / "_internal").iterdir()}
    assert "torch" not in internal and "onnxruntime" in internal
    # No model file is shipped (MobileFaceNet is GPL-3.0, SCRFD non-commercial): each is
    # downloaded on the kiosk. Only the manifest that lists them is in the bundle.
    from models import registry

    model_files = {m.file for m in registry.load_manifest().values()}
    model_files |= {m.archive_member for m in registry.load_manifest().values() if m.archive_member}
    shipped = {p.name for p in bundle.rglob("*")}
    assert not shipped & model_files and "manifest.toml" in shipped

    env = {**os.environ, "KIOSK_MODEL_DIR": str(model_dir), "QT_QPA_PLATFORM": "offscreen"}
    # The gallery: all its files are in ../shared (the default, CLIP, needs RN50.pt, or a
    # bundle trained elsewhere since this build carries no torch).
    config = tmp_path / "kiosk.toml"
    config.write_text('[recognizer]\nkind = "embedding_gallery"\n')
    doctor = subprocess.run(
        [exe, "--config", str(config), "doctor", "--json"], capture_output=True, text=True, env=env
    )
    report = json.loads(doctor.stdout)
    assert doctor.returncode == 0, doctor.stderr
    assert report["checks"]["qt"]["pyside6"]
    assert report["checks"]["onnxruntime"]["providers_in_use"][-1] == "CPUExecutionProvider"

    # The self-test: real detection (SCRFD, and the MIT YuNet) and liveness in the bundle.
    for detector in ("scrfd_2.5g", "yunet_2026may"):
        check = subprocess.run(
            [exe, "recognize", "--detector", detector, "--liveness", str(shared("antispoof"))],
            capture_output=True,
            text=True,
            env=env,
        )
        assert check.returncode == 0, check.stderr
        rows = map(json.loads, check.stdout.splitlines())
        live = {Path(row["source"]).name: row["live"] for row in rows}
        assert live == {
            "live_face.jpg": True,
            "spoof_printed_photo.jpg": False,
            "spoof_tablet_screen.jpg": False,
        }, detector
