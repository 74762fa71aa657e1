"""Abuse: kill -9 at random moments of the product's writes, and hostile inputs through
the CLI (a smaller run of `kiosk bench abuse`), plus the store's, the event log's and
the data folders' permissions."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from enroll.store import PeopleStore
from kiosk.bench.abuse import TINY_CLIP, Case, hostile_cases, prepare, run_hostile, run_kills
from kiosk.cli import main
from kiosk.live.events import EventLog
from tests.helpers import consent, photos


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


@pytest.mark.slow
def test_kills_across_enroll_import_export_and_events_leave_nothing_broken(
    tmp_path: Path,
) -> None:
    work = prepare(tmp_path / "work", TINY_CLIP)
    result = run_kills(work, 12, ops=("enroll", "import", "export", "events"), seed=1)
    problems = [p for row in result["by_operation"].values() for p in row["problems"]]
    assert problems == []
    assert result["inconsistent"] == result["partial"] == result["temps_left"] == 0
    assert result["landed"] >= 6  # most kills hit the operation, not its end


@pytest.mark.slow
def test_kills_of_a_training_leave_the_old_bundle_or_a_whole_new_one(
    tmp_path: Path, tiny_clip: str
) -> None:
    work = prepare(tmp_path / "work", TINY_CLIP)
    result = run_kills(work, 2, ops=("train",), seed=2)
    assert result["by_operation"]["train"]["problems"] == []
    assert result["inconsistent"] == result["partial"] == result["temps_left"] == 0


def _without_shared_data(case: Case) -> bool:
    return case.needs is None


@pytest.mark.slow
def test_every_hostile_input_gets_a_clear_message_and_no_traceback(tmp_path: Path) -> None:
    report = run_hostile(tmp_path, video=None, models=False, only=_without_shared_data)
    assert report["cases"] >= 20
    wrong = [row for row in report["rows"] if row["status"] != "clear"]
    assert wrong == []


def test_hostile_names_and_bombs_in_a_small_run(tmp_path: Path) -> None:
    """A few of the hostile inputs, each in its own CLI process (the full list: above)."""
    wanted = {"duplicate names NFC and NFD", "PNG bomb (30000 x 30000) among good photos"}
    report = run_hostile(tmp_path, video=None, models=False, only=lambda c: c.name in wanted)
    assert report["cases"] == 2 and report["clear"] == 2, report["rows"]


def test_hostile_cases_are_distinct_and_cover_the_issue() -> None:
    cases = hostile_cases()
    assert len({case.name for case in cases}) == len(cases) >= 22
    text = " ".join(case.name for case in cases)
    for topic in ("NFD", "right-to-left", "bomb", "/dev/zero", "pipe", "1 GiB", "full disk"):
        assert topic in text


@pytest.mark.slow
def test_enroll_auto_refusals_end_with_a_message(
    tmp_path: Path, shared: Callable[..., Path], model_dir: Path
) -> None:
    """`--auto ""` used to open the wizard for nobody (a hang); `--auto` on a full disk
    waited for someone to press "Try again"."""
    video = shared("videos", "solo_07.mp4")
    report = run_hostile(
        tmp_path, video=video, models=True, only=lambda case: case.name.startswith("enroll")
    )
    assert report["cases"] == 2 and report["clear"] == 2, report["rows"]


# -- permissions ---------------------------------------------------------------------------


def test_the_store_is_the_owners_alone_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        with PeopleStore(tmp_path / "store") as store:
            store.add_person("Ada", photos(2, original=True), consent())
            assert store.export(tmp_path / "out") == 2
    finally:
        os.umask(old)
    for root in (tmp_path / "store", tmp_path / "out"):
        for path in [root, *root.rglob("*")]:
            expected = 0o700 if path.is_dir() else 0o600
            assert _mode(path) == expected, path


def test_an_older_stores_wide_modes_are_fixed_on_open(tmp_path: Path) -> None:
    root = tmp_path / "store"
    with PeopleStore(root) as store:
        store.add_person("Ada", photos(2), consent())
    for path in [root, *root.rglob("*")]:  # as an older version left it under umask 022
        os.chmod(path, 0o755 if path.is_dir() else 0o644)
    with PeopleStore(root) as store:
        assert [p.name for p in store.people()] == ["Ada"]
    assert {_mode(p) for p in [root, *root.rglob("*")] if p.is_dir()} == {0o700}
    assert {_mode(p) for p in root.rglob("*") if p.is_file()} == {0o600}


def test_event_log_and_thumbnails_are_private(tmp_path: Path) -> None:
    import numpy as np

    from models.names import name_digest

    log = EventLog(tmp_path / "events")
    log.append("Ada", "Ada", 0.9, 1, np.zeros((16, 16, 3), np.uint8))
    log.append("Bob", "Bob", 0.9, 2, np.zeros((16, 16, 3), np.uint8))
    assert log.forget((), {name_digest("Ada")}) == 1  # an erasure's rewrite stays private
    assert _mode(tmp_path / "events") == _mode(tmp_path / "events" / "thumbnails") == 0o700
    assert {_mode(p) for p in (tmp_path / "events").rglob("*") if p.is_file()} == {0o600}


def test_the_cli_makes_the_data_and_cache_folders_private(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from models.paths import user_cache_dir, user_data_dir

    user_data_dir().mkdir(parents=True)
    os.chmod(user_data_dir(), 0o755)
    assert main(["people", "list"]) == 0
    assert _mode(user_data_dir()) == _mode(user_cache_dir()) == 0o700
    assert "0 people" in capsys.readouterr().out
