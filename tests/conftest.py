"""Shared fixtures. Data from ../shared is found through $KIOSK_SHARED (default ../shared).

With KIOSK_REQUIRE_SHARED=1 (as CI sets it) a missing file, or a missing tool such as
Xvfb, fails the test instead of skipping it (`skip_or_fail`).
"""

from __future__ import annotations

import gc
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import pytest

if TYPE_CHECKING:
    from models.train.finetune import TrainSettings

# Qt tests run offscreen (pytest-qt makes the QApplication after conftest is read); the
# tests of a real window start their own processes under Xvfb.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("KIOSK_SHARED", ROOT.parent / "shared"))


def train_settings(**overrides: Any) -> TrainSettings:
    """The shipped [train] defaults (kiosk/config.py), with ``overrides``."""
    import dataclasses

    from kiosk.commands.train_cmd import train_settings as from_config
    from kiosk.config import KioskConfig

    return dataclasses.replace(from_config(KioskConfig()), **overrides)


def skip_or_fail(message: str) -> NoReturn:
    """Skip a test whose data or tool is missing; fail it in CI (KIOSK_REQUIRE_SHARED=1),
    which provides ../shared and installs every tool, so nothing is hidden there."""
    if os.environ.get("KIOSK_REQUIRE_SHARED") == "1":
        pytest.fail(message)
    pytest.skip(message)


def shared_path(*parts: str) -> Path:
    path = SHARED.joinpath(*parts)
    if not path.exists():
        skip_or_fail(f"shared test data missing: {path} (set KIOSK_SHARED)")
    return path


@pytest.fixture(autouse=True, scope="session")
def _collect_on_main_thread() -> Iterator[None]:
    """As in the product (kiosk/ui/gc_thread.py): no collection on a worker thread, where
    it could destroy a previous test's Qt objects and crash."""
    gc.disable()
    yield
    gc.enable()


@pytest.fixture(autouse=True)
def _collect_after_test() -> Iterator[None]:
    from kiosk.gc_policy import collect_due

    yield
    collect_due()


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
def tiny_clip() -> str:
    """A tiny ResNet CLIP config (tests/data/kiosk-tiny-rn.json), registered with open_clip."""
    import open_clip

    open_clip.add_model_config(ROOT / "tests" / "data" / "kiosk-tiny-rn.json")
    return "kiosk-tiny-rn"


@pytest.fixture(scope="session")
def detector(model_dir: Path):  # type: ignore[no-untyped-def]
    from models.detector import FaceDetector

    return FaceDetector.from_name("scrfd_2.5g", model_dir, input_size=640)
