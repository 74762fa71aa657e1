"""Shared fixtures. Data from ../shared is found through $KIOSK_SHARED (default ../shared).

With KIOSK_REQUIRE_SHARED=1 (as CI sets it) a missing file fails the test instead of
skipping it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("KIOSK_SHARED", ROOT.parent / "shared"))


def shared_path(*parts: str) -> Path:
    path = SHARED.joinpath(*parts)
    if not path.exists():
        message = f"shared test data missing: {path} (set KIOSK_SHARED)"
        if os.environ.get("KIOSK_REQUIRE_SHARED") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def shared() -> Callable[..., Path]:
    return shared_path


@pytest.fixture(scope="session")
def model_dir() -> Path:
    return shared_path("models")


@pytest.fixture(autouse=True)
def _isolated_dirs(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Models come from ../shared/models; nothing reads or writes the user's real dirs."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("KIOSK_MODEL_DIR", str(SHARED / "models"))
    monkeypatch.setenv("XDG_DATA_HOME", str(home / "data"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / "config"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / "cache"))
    monkeypatch.delenv("KIOSK_CONFIG", raising=False)


@pytest.fixture(scope="session")
def detector(model_dir: Path):  # type: ignore[no-untyped-def]
    from models.detector import FaceDetector

    return FaceDetector.from_name("scrfd_2.5g", model_dir, input_size=640)
