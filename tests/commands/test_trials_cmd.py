"""`kiosk trials sessions` and `kiosk trials export` on a real trials database."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from kiosk.cli import main
from kiosk.trials.store import TrialStore
from models.recognition import Prediction


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def make_db(path: Path) -> float:
    """Two sessions, the second with one trial; the second's creation time."""
    with TrialStore(path) as store:
        store.create_session(label="empty", duration=5.0, threshold=0.8, min_share=0.5)
        session = store.create_session(
            label="live 0",
            duration=5.0,
            threshold=0.75,
            min_share=0.5,
            recognizer="clip RN50, pretrained openai",
            kiosk="door-1",
            operator="Zoë",
        )
        session.add_participant("alice", enrolled=True)
        session.start("alice", now=0.0, wall_clock=0.0)
        session.add_frame(0.0, Prediction("alice", "alice", 0.9), recognizer="clip v2")
        session.finish()
        return store.sessions()[-1].created_at


def test_sessions_prints_a_table_in_local_time_and_json_on_request(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "t.sqlite"
    created = make_db(db)
    monkeypatch.setenv("TZ", "America/St_Johns")  # -03:30 or -02:30: never UTC by accident
    time.tzset()
    try:
        local = time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(created))
        code, out, err = run(capsys, "trials", "sessions", "--db", str(db))
        assert code == 0 and not err
        head, rule, *rows = out.splitlines()
        assert head.split() == [
            "id",
            "date",
            "trials",
            "threshold",
            "kiosk",
            "operator",
            "recognizer",
            "label",
        ]
        assert set(rule) == {"-", " "} and len(rows) == 2
        assert local in rows[1] and rows[1].split()[0] == "2"
        for text in ("door-1", "Zoë", "0.75", "clip RN50, pretrained openai", "live 0"):
            assert text in rows[1]
        assert str(int(created)) not in out  # no epoch seconds in the table
        code, out, _ = run(capsys, "trials", "sessions", "--db", str(db), "--json")
        records = json.loads(out)
        assert code == 0 and [r["trials"] for r in records] == [0, 1]
        assert records[1]["created_at"] == created and records[1]["date"] == local
        assert records[1]["operator"] == "Zoë" and records[1]["kiosk"] == "door-1"
    finally:
        monkeypatch.undo()
        time.tzset()


def test_sessions_of_an_empty_database_and_a_missing_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "t.sqlite"
    TrialStore(db).close()
    assert run(capsys, "trials", "sessions", "--db", str(db))[1] == "no sessions yet\n"
    code, _, err = run(capsys, "trials", "sessions", "--db", str(tmp_path / "none.sqlite"))
    assert code == 2 and "no trials database at" in err and "Traceback" not in err


def test_export_prints_intervals_and_withholds_the_threshold(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "t.sqlite"
    make_db(db)
    report = tmp_path / "r.json"
    code, out, _ = run(capsys, "trials", "export", "--db", str(db), "--json", str(report))
    assert code == 0
    assert "FNR 0.0% (0/1; 95% CI 0.0-79.3%)" in out
    assert (
        "threshold: not enough trials to recommend a threshold: 1 enrolled, 0 strangers;"
        " need 10 of each" in out
    )
    header = json.loads(report.read_text())["header"]
    assert header["kiosk"] == "door-1" and header["versions"] == ["clip v2"]
