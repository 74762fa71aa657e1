"""Shared fixtures and markers. Data from ../shared is found through $KIOSK_SHARED (default
../shared). With KIOSK_REQUIRE_SHARED=1 (as CI sets it) a missing file, or a missing tool
such as Xvfb, fails the test instead of skipping it (`tests.helpers.skip_or_fail`).

Markers (pyproject.toml) are set here from what a test uses, so they cannot be forgotten:
``qt`` for everything under tests/ui/ and every test that takes ``qtbot``; ``shared`` for
a test that takes the ../shared fixtures (``shared``, ``model_dir``, ``detector``);
``torch`` for one that builds a CLIP model (``tiny_clip``); ``postgres`` for one that uses
the throwaway PostgreSQL cluster (``postgres``, ``site_db``); ``unit`` for every other test.
``make test-fast`` runs ``-m unit``, and then checks that none of the heavy libraries was
imported, so a unit test that quietly loads a model fails the run instead of slowing it.
"""

from __future__ import annotations

import gc
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from kiosk.bench.pgcluster import PgCluster
from tests.helpers import ROOT, SHARED, TINY, shared_path, start_test_cluster

# Qt tests run offscreen (pytest-qt makes the QApplication after conftest is read); the
# tests of a real window start their own processes under Xvfb.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


HEAVY_FIXTURES = {
    "qtbot": "qt",
    "shared": "shared",
    "model_dir": "shared",
    "detector": "shared",
    "tiny_clip": "torch",
    "postgres": "postgres",
    "site_db": "postgres",
}
NOT_UNIT = {"qt", "shared", "torch", "slow", "postgres"}
HEAVY_MODULES = ("torch", "open_clip", "onnxruntime", "insightface", "PySide6")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    ui = ROOT / "tests" / "ui"
    for item in items:
        marks = {mark.name for mark in item.iter_markers()}
        if ui in item.path.parents:
            marks.add("qt")
        for fixture in getattr(item, "fixturenames", ()):
            if fixture in HEAVY_FIXTURES:
                marks.add(HEAVY_FIXTURES[fixture])
        for name in sorted(marks - {mark.name for mark in item.iter_markers()}):
            item.add_marker(name)
        if not marks & NOT_UNIT:
            item.add_marker("unit")
    if os.environ.get("PYTEST_XDIST_WORKER"):
        # `make test` (pytest-xdist, --maxschedchunk 1) hands the tests out in this order,
        # one at a time: the slow ones first, so that none of them is left to run alone
        # at the end while the other workers wait
        items.sort(key=lambda item: item.get_closest_marker("slow") is None)


_loaded_before_tests: set[str] = set()


def pytest_collection_finish(session: pytest.Session) -> None:
    _loaded_before_tests.update(name for name in HEAVY_MODULES if name in sys.modules)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Under ``-m unit``: fail if running the tests imported a heavy library."""
    if session.config.getoption("markexpr") != "unit" or exitstatus != 0:
        return
    loaded = [n for n in HEAVY_MODULES if n in sys.modules and n not in _loaded_before_tests]
    if loaded:
        print(f"\nunit tests imported {', '.join(loaded)}: mark the tests that need it")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


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
    # Recorded first, so what `kiosk --config` / `kiosk --home` export is undone after the test.
    monkeypatch.setenv("KIOSK_CONFIG", "")
    monkeypatch.delenv("KIOSK_CONFIG")
    monkeypatch.setenv("KIOSK_HOME", "")
    monkeypatch.delenv("KIOSK_HOME")


@pytest.fixture(scope="session")
def tiny_clip() -> str:
    """A tiny ResNet CLIP config (tests/data/kiosk-tiny-rn.json), registered with open_clip."""
    import open_clip

    open_clip.add_model_config(ROOT / "tests" / "data" / f"{TINY}.json")
    return TINY


@pytest.fixture(scope="session")
def detector(model_dir: Path):  # type: ignore[no-untyped-def]
    from models.detector import FaceDetector

    return FaceDetector.from_name("scrfd_2.5g", model_dir, input_size=640)


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PgCluster]:
    """A throwaway PostgreSQL cluster for the whole session (Debian's packages; skipped,
    or failed under KIOSK_REQUIRE_SHARED=1, when PostgreSQL is not installed)."""
    import tempfile

    # A short path: a Unix socket's path is limited to about 100 bytes.
    root = Path(tempfile.mkdtemp(prefix="kiosk-pg-", dir="/tmp"))
    cluster = start_test_cluster(root)
    try:
        yield cluster
    finally:
        cluster.stop("immediate")
        import shutil

        shutil.rmtree(root, ignore_errors=True)


_databases = iter(range(1, 1_000_000))


@pytest.fixture
def site_db(postgres: PgCluster) -> Iterator[str]:
    """A fresh, empty database in the session's cluster; its name."""
    name = f"site_{os.getpid()}_{next(_databases)}"
    with postgres.connect() as conn:
        conn.execute(f"CREATE DATABASE {name}")
    try:
        yield name
    finally:
        with postgres.connect() as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
