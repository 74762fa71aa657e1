"""The trial reports the kiosk writes are recorded, and an erasure reaches them
(kiosk/trials/exports.py): made again from the anonymised records, removed when they
cannot be, left alone when they are no longer the kiosk's, pending when unreachable."""

from __future__ import annotations

import base64
import csv
import hashlib
import json
import re
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from enroll.store import PeopleStore
from kiosk.cli import main
from kiosk.config import load_config
from kiosk.trials.exports import ReportLog, names_in, write_session_report
from kiosk.trials.runs import default_database
from kiosk.trials.session import TrialSession
from kiosk.trials.store import TrialStore
from models.names import mention_digests, name_digest
from models.recognition import Prediction
from tests.helpers import consent, photos

ADA = "Ada Lovelace"
BOB = "Bob Kahn"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def add_trial(session, who: str, answer: str | None) -> None:  # type: ignore[no-untyped-def]
    session.start(who, now=0.0, wall_clock=1000.0)
    crop = np.full((32, 32, 3), 60 if who == ADA else 160, np.uint8)  # each their own face
    for i in range(3):
        session.add_frame(0.1 * i, Prediction(answer, answer or who, 0.9), face_crop=crop)
    session.finish()


def trials_db(path: Path) -> None:
    """One session: Ada named right, Bob named as Ada (a misidentification), Bob right."""
    with TrialStore(path) as store:
        session = store.create_session(
            label="live 0", duration=5.0, threshold=0.8, min_share=0.5, kiosk="door-1"
        )
        session.add_participant(ADA, enrolled=True)
        session.add_participant(BOB, enrolled=True)
        for who, answer in ((ADA, ADA), (BOB, ADA), (BOB, BOB)):
            add_trial(session, who, answer)


@pytest.fixture
def store_dir(tmp_path: Path) -> Path:
    """Ada and Bob enrolled; the kiosk's trials database holds a session of theirs."""
    root = tmp_path / "store"
    with PeopleStore(root) as store:
        store.add_person(ADA, photos(2), consent())
        store.add_person(BOB, photos(2, seed=1), consent())
    trials_db(default_database(load_config()))
    return root


def export_all(capsys: pytest.CaptureFixture[str], folder: Path, *more: str) -> list[Path]:
    paths = [folder / "s.json", folder / "s.csv", folder / "s.html"]
    argv = ["trials", "export", "--json", str(paths[0]), "--csv", str(paths[1])]
    code, _, err = run(capsys, *argv, "--report", str(paths[2]), *more)
    assert code == 0, err
    return paths


def delete(capsys: pytest.CaptureFixture[str], store_dir: Path, name: str) -> str:
    code, _, err = run(capsys, "people", "--store", str(store_dir), "delete", name, "--yes")
    assert code == 0, err
    return err


def pending(store_dir: Path) -> list[str]:
    with PeopleStore(store_dir) as store:
        return [erasure.uid for erasure in store.pending_erasures()]


def recorded() -> dict[Path, list[str]]:
    with TrialStore(default_database(load_config())) as store:
        records: dict[Path, list[str]] = {}
        for record in store.reports():
            records.setdefault(record.path, []).append(record.digest)
        return records


def test_every_export_is_recorded_0600_with_what_makes_it_again(
    store_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    paths = export_all(capsys, tmp_path / "reports")
    assert all(path.stat().st_mode & 0o777 == 0o600 for path in paths)
    with TrialStore(default_database(load_config())) as store:
        records = store.reports()
    assert [(r.path, r.kind) for r in records] == [
        (paths[0], "json"),
        (paths[1], "csv"),
        (paths[2], "html"),
    ]
    for record, path in zip(records, paths, strict=True):
        assert record.session_id == 1 and record.last_trial == 3 and record.target_fpr == 0.02
        # the names in it, and every name its label ("live 0") may mention
        assert record.names == {name_digest(ADA), name_digest(BOB)} | mention_digests("live 0")
        assert record.device == path.parent.stat().st_dev
    assert [r.digest for r in records] == [
        hashlib.sha256(p.read_bytes()).hexdigest() for p in paths
    ]
    # Written again: one record a file, of its content now (and a 0644 file becomes 0600).
    paths[0].chmod(0o644)
    export_all(capsys, tmp_path / "reports")
    assert [len(digests) for digests in recorded().values()] == [1, 1, 1]
    assert paths[0].stat().st_mode & 0o777 == 0o600


def test_an_erasure_makes_each_report_again_without_the_name(
    store_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    database = default_database(load_config())
    paths = export_all(capsys, tmp_path / "reports")
    before = [path.read_bytes() for path in paths]
    with TrialStore(database) as store:  # a trial after the export: not in the reports
        session = store.load_session()
        add_trial(session, ADA, None)
        thumbnail = store.load_session().results[0].thumbnail
    assert thumbnail is not None and base64.b64encode(thumbnail) in before[2]
    assert all(ADA.encode() in data for data in before)

    err = delete(capsys, store_dir, ADA)
    # Her three trials (the one after the export too) and the three reports.
    assert "anonymised 3 trials and 3 trial reports" in err and "warning" not in err
    assert pending(store_dir) == []
    with TrialStore(database) as store:
        [label] = [p.name for p in store.load_session().participants if p.name != BOB]
        again = store.load_session(last_trial=3)
    assert label.startswith("erased person ")
    after = [path.read_bytes() for path in paths]
    for data in after:
        # "Ada" alone: outside the embedded images, whose base64 holds it by chance
        text = re.sub(rb"data:[a-z/+]+;base64,[A-Za-z0-9+/=]+", b"", data)
        assert ADA.encode() not in data and b"Ada" not in text and label.encode() in data
    # The figures survive: the same trials, the same outcomes, under the opaque label.
    old, new = json.loads(before[0]), json.loads(after[0])
    for key in ("trials", "tp", "fp", "fn", "tn", "misidentified", "accuracy", "fpr", "ci95"):
        assert new[key] == old[key], key
    assert [r["participant"] for r in new["trial_log"]] == [label, BOB, BOB]
    rows = list(csv.DictReader(after[1].decode().splitlines()))
    assert [(r["participant"], r["answer"], r["outcome"]) for r in rows] == [
        (label, label, "TP"),
        (BOB, label, "FP"),
        (BOB, BOB, "TP"),
    ]
    # Her face thumbnail is gone from the HTML, Bob's stay; its plots are drawn again
    # from the anonymised records (the confusion matrix's labels): as a fresh report.
    assert base64.b64encode(thumbnail) not in after[2]
    assert after[2].count(b"data:image/jpeg;base64,") == 2
    fresh = tmp_path / "fresh.html"
    write_session_report("html", again, fresh, target_fpr=0.02)
    assert fresh.read_bytes() == after[2]
    assert all(path.stat().st_mode & 0o777 == 0o600 for path in paths)
    # The records follow the files as they are now, without her name's digest.
    with TrialStore(database) as store:
        records = store.reports()
    assert all(name_digest(ADA) not in r.names and name_digest(label) in r.names for r in records)
    assert all(r.last_trial == 3 for r in records)
    raw = b"".join(p.read_bytes() for p in database.parent.iterdir() if p.is_file())
    assert name_digest(ADA).encode() not in raw and ADA.encode() not in raw


def test_an_erasure_reaches_a_report_that_mentions_her_only_in_its_free_text(
    store_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A session of Bob's and of an attack with her photo, labelled with her name and
    run on a clip named after her: its label, the clip's file name and the attack's name
    lose her name in the records, and its reports are made again from them."""
    database = default_database(load_config())
    with TrialStore(database) as store:
        session = store.create_session(
            label=f"demo for {ADA}", duration=5.0, threshold=0.8, min_share=0.5
        )
        session.add_participant(BOB, enrolled=True)
        session.start(BOB, now=0.0, wall_clock=2000.0, source="/clips/ada_lovelace_walk.mp4")
        session.add_frame(0.1, Prediction(BOB, BOB, 0.9))
        session.finish()
        add_trial(session, BOB, BOB)  # from the camera: no source
        session.add_participant("photo of ada lovelace", enrolled=False, attack=True)
        session.start("photo of ada lovelace", now=0.0, wall_clock=2001.0)
        session.add_frame(0.1, Prediction(None, ADA, 0.3))  # rejected; nearest: her
        session.finish()
    paths = export_all(capsys, tmp_path / "reports")  # the latest session: this one
    assert all(b"ada_lovelace" in path.read_bytes() for path in paths)
    named = tmp_path / "reports" / "Ada_Lovelace-visit.csv"  # a file named after her
    assert run(capsys, "trials", "export", "--csv", str(named))[0] == 0
    assert all(ADA.encode() in path.read_bytes() for path in (paths[0], paths[2]))  # label
    err = delete(capsys, store_dir, ADA)
    # Her two trials of the first session, the one on her clip and the attack's; the
    # four reports.
    assert "anonymised 4 trials and 4 trial reports" in err and "warning" not in err, err
    with TrialStore(database) as store:
        [_, info] = store.sessions()
        results = store.load_session().results
        [label] = [p.name for p in store.load_session(1).participants if p.name != BOB]
    assert info.label == f"demo for {label}"
    assert [r.source for r in results] == [f"/clips/{label}_walk.mp4", "", ""]
    assert [r.participant.name for r in results] == [BOB, BOB, f"photo of {label}"]
    assert not named.exists()
    renamed = named.with_name(f"{label}-visit.csv")
    assert renamed.read_bytes() == paths[1].read_bytes()  # the same report, made again
    assert set(recorded()) == {*paths, renamed}
    for data in (path.read_bytes() for path in [*paths, renamed]):
        text = re.sub(rb"data:[a-z/+]+;base64,[A-Za-z0-9+/=]+", b"", data)
        assert b"Ada" not in text and b"ada_lovelace" not in data and b"of ada" not in data
        assert f"{label}_walk.mp4".encode() in data and BOB.encode() in data
    raw = b"".join(p.read_bytes() for p in database.parent.iterdir() if p.is_file())
    assert b"ada_lovelace" not in raw and ADA.encode() not in raw


def test_a_report_named_after_her_is_made_again_under_the_label(
    store_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Report files named after her are made again under the label's name; never over
    a file that is there."""
    import kiosk.erasure

    monkeypatch.setattr(kiosk.erasure, "erased_label", lambda: "erased person 00000000")
    folder = tmp_path / "reports"
    first, second = folder / "Ada Lovelace.csv", folder / "ada-lovelace.json"
    code, _, err = run(capsys, "trials", "export", "--csv", str(first), "--json", str(second))
    assert code == 0, err
    (folder / "erased person 00000000.csv").write_text("someone's own file")
    delete(capsys, store_dir, ADA)
    assert sorted(p.name for p in folder.iterdir()) == [
        "erased person 00000000 (2).csv",
        "erased person 00000000.csv",
        "erased person 00000000.json",
    ]
    assert (folder / "erased person 00000000.csv").read_text() == "someone's own file"
    assert set(recorded()) == {
        folder / "erased person 00000000 (2).csv",
        second.with_name("erased person 00000000.json"),
    }


def test_a_report_that_names_someone_else_is_left_as_it_is(
    store_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with PeopleStore(store_dir) as store:
        store.add_person("Cy Young", photos(2, seed=2), consent())
    paths = export_all(capsys, tmp_path / "reports")
    before = [path.read_bytes() for path in paths]
    err = delete(capsys, store_dir, "Cy Young")
    assert "anonymised 0 trials and 0 trial reports" in err
    assert [path.read_bytes() for path in paths] == before


def test_reports_moved_deleted_or_edited_are_not_touched_and_finish_the_erasure(
    store_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    moved, deleted, edited = (
        export_all(capsys, tmp_path / name) for name in ("moved", "deleted", "edited")
    )
    (tmp_path / "moved").rename(tmp_path / "elsewhere")  # the folder too: like a drive
    for path in deleted:
        path.unlink()
    edited[0].write_text(edited[0].read_text().replace('"tp"', '"TP"'))  # by hand
    edited_text = edited[0].read_bytes()
    err = delete(capsys, store_dir, ADA)
    assert "not erased from the trial records" in err and "not reachable" in err
    for path in moved:
        assert str(path) in err
    assert len(pending(store_dir)) == 1
    # The edited JSON is no longer the kiosk's: left as it is; the others are made again.
    assert edited[0].read_bytes() == edited_text
    assert all(ADA.encode() not in path.read_bytes() for path in edited[1:])
    assert set(recorded()) == {*moved, *edited[1:]}
    # The drive is back: the next `kiosk people` command finishes the erasure.
    (tmp_path / "elsewhere").rename(tmp_path / "moved")
    code, _, err = run(capsys, "people", "--store", str(store_dir), "list")
    assert code == 0 and "anonymised 0 trials and 3 trial reports" in err, err
    assert pending(store_dir) == []
    assert all(ADA.encode() not in path.read_bytes() for path in moved)


def test_a_report_that_cannot_be_made_again_is_removed(
    store_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A session of another database (``--db``): the erasure does not anonymise it, so
    its reports cannot be made again without the name."""
    other = tmp_path / "mine.sqlite"
    trials_db(other)
    paths = export_all(capsys, tmp_path / "reports", "--db", str(other))
    kept = export_all(capsys, tmp_path / "kept", "--db", str(other))
    with TrialStore(default_database(load_config())) as store:
        assert {r.session_id for r in store.reports()} == {None}
    # One of them no longer names her (a report of Bob's alone, written as the kiosk does).
    with TrialStore(other) as store:
        session = store.load_session()
        bob = TrialSession(
            duration=5.0,
            threshold=0.8,
            participants=session.participants[1:],
            results=[r for r in session.results if ADA not in (r.participant.name, r.answer)],
        )
        log = ReportLog(default_database(load_config()), [bob], 0.02)
        assert names_in([bob]) == {name_digest(BOB)}
        write_session_report("csv", bob, kept[1], target_fpr=0.02, recorder=log)
    err = delete(capsys, store_dir, ADA)
    assert "removed 0 door events, 0 export folders, 0 cached features, 5 trial reports" in err
    assert not any(path.exists() for path in [*paths, kept[0], kept[2]])
    assert kept[1].exists() and BOB.encode() in kept[1].read_bytes()
    assert set(recorded()) == {kept[1]}
    assert pending(store_dir) == []


def test_a_failed_write_keeps_the_record_of_the_file_there(
    store_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch
) -> None:
    """The record is made before the file is written: a write that fails (a full disk)
    leaves the old file, still recorded, and the erasure still reaches it."""
    [report] = export_all(capsys, tmp_path / "r")[:1]
    with TrialStore(default_database(load_config())) as store:
        add_trial(store.load_session(), BOB, BOB)  # the next export differs

    def disk_full(*args: object) -> None:
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as patched:
        patched.setattr("models.io.os.replace", disk_full)
        code, _, err = run(capsys, "trials", "export", "--json", str(report))
    assert code == 2 and "No space left" in err
    assert len(recorded()[report]) == 2  # the file's and the one that never got there
    delete(capsys, store_dir, ADA)
    assert ADA.encode() not in report.read_bytes()
    assert json.loads(report.read_text())["trials"] == 3
    assert len(recorded()[report]) == 1


def test_a_database_made_before_reports_were_recorded_gets_the_table(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    trials_db(path)
    with sqlite3.connect(path) as db:
        db.execute("DROP TABLE reports")
    db.close()
    with TrialStore(path) as store:
        assert store.reports() == [] and store.load_session().results
        log = ReportLog(path, [store.load_session()], 0.02, remakeable=True)
        write_session_report("json", store.load_session(), tmp_path / "r.json", target_fpr=0.02)
        write_session_report(
            "csv", store.load_session(), tmp_path / "r.csv", target_fpr=0.02, recorder=log
        )
        assert [r.path.name for r in store.reports()] == ["r.csv"]
