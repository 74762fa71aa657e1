"""Erasure that reaches everything (kiosk/erasure.py): a person who went through every
part of the kiosk (enrolled, seen by the door, trained into CLIP, in a trial and its
reports, exported) and is then deleted leaves nothing in the data, cache and config
folders nor in the export and the reports: not their name, nor their id (but in the
audit log), nor any face picture or feature file of theirs."""

from __future__ import annotations

import base64
import csv
import hashlib
import json
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from enroll.keys import KEY_ENV, new_key
from enroll.store import DB_NAME, default_store_dir
from kiosk import build
from kiosk.cli import main
from kiosk.config import default_config_path, load_config
from kiosk.live.events import EventLog
from kiosk.live.results import FrameResult
from kiosk.trials.runs import default_database
from kiosk.trials.session import record_live_result
from kiosk.trials.store import TrialStore
from models.clip.bundle import load_bundle
from models.paths import user_cache_dir, user_config_dir, user_data_dir
from tests.helpers import enroll_from_video

NAME = "Grace Hopper"  # a space: never found by chance in base64 or in random bytes
OTHER = "Alan Turing"


def files_under(*roots: Path) -> list[Path]:
    return sorted(
        path for root in roots if root.exists() for path in root.rglob("*") if path.is_file()
    )


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def trial_thumbnails(database: Path, name: str) -> list[bytes]:
    with TrialStore(database) as trials:
        return [
            r.thumbnail
            for r in trials.load_session().results
            if r.participant.name == name and r.thumbnail is not None
        ]


def outcomes(database: Path) -> list[tuple[str, bool, str]]:
    with TrialStore(database) as trials:
        return [
            (str(r.outcome), r.misidentified, r.participant.name)
            for r in trials.load_session().results
        ]


@pytest.mark.slow
@pytest.mark.torch
@pytest.mark.parametrize("encrypt", [False, True], ids=["plain", "encrypted-deleted-keyless"])
def test_a_deleted_person_leaves_nothing_anywhere(
    encrypt: bool,
    shared: Callable[..., Path],
    tiny_clip: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    key = new_key().encode() if encrypt else None
    if key is not None:
        monkeypatch.setenv(KEY_ENV, key.decode())
    config_file = default_config_path()
    config_file.parent.mkdir(parents=True, exist_ok=True)
    config_file.write_text(
        f'[clip]\nmodel = "{tiny_clip}"\npretrained = "none"\n'
        '[train]\nepochs = 2\nmin_images = 2\n[models]\ndevice = "cpu"\n'
        f"[enroll]\nencrypt = {'true' if encrypt else 'false'}\n"
        '[recognizer]\nkind = "embedding_gallery"\nretrain = false\n'
        "[liveness]\nenabled = false\n[kiosk]\nrealtime = false\n",
        encoding="utf-8",
    )
    config = load_config()
    store_dir = default_store_dir()
    # The door's detector (320): at 640 SCRFD misses the shared clips' large faces.
    detector = build.detector(config, input_size=config.kiosk.detector_input_size)
    video = shared("videos", "solo_02.mp4")
    others_video = shared("videos", "solo_03.mp4")
    uid = enroll_from_video(store_dir, NAME, video, detector, key=key, encrypt=encrypt)
    other = enroll_from_video(store_dir, OTHER, others_video, detector, key=key, encrypt=encrypt)

    # The door, on her video and on his: events and their thumbnails.
    def door(video: Path) -> list[FrameResult]:
        pipeline = build.live_pipeline(config, source=str(video))
        try:
            return list(pipeline.run(max_frames=60))
        finally:
            pipeline.stop()

    seen = {NAME: door(video)}
    events_dir = build.events_dir(config)
    events = build.event_log(config)
    logged = events.read()
    assert logged and {event.person_uid for event in logged} == {uid}
    assert all(event.thumbnail.endswith(".sealed") == encrypt for event in logged)
    pictures = {sha256(events.thumbnail(event)) for event in logged}  # as shown
    pictures |= {sha256(path.read_bytes()) for path in files_under(events_dir / "thumbnails")}
    seen[OTHER] = door(others_video)
    assert {event.person_uid for event in events.read()} == {uid, other}

    # A trial each, on the door's results.
    database = default_database(config)
    with TrialStore(database) as trials:
        session = trials.create_session(  # a label and a clip that name her too
            label=f"{NAME}'s visit",
            duration=1e6,
            threshold=0.5,
            min_share=0.5,
            recognizer="gallery",
        )
        for participant, results in seen.items():
            session.add_participant(participant, enrolled=True)
            clip = f"/clips/{participant.replace(' ', '_')}.mp4"
            session.start(
                participant, now=results[0].captured_at, wall_clock=time.time(), source=clip
            )
            for result in results:
                record_live_result(session, result, liveness=False)
            trial = session.finish()
            assert trial.thumbnail is not None
            if participant == NAME:
                pictures.add(sha256(trial.thumbnail))
    before = outcomes(database)
    assert [name for *_, name in before] == [NAME, OTHER]

    # The session's reports, as `kiosk trials export` writes them.
    reports = tmp_path / "reports"
    written = [reports / "trials.json", reports / "trials.csv", reports / "trials.html"]
    argv = ["trials", "export", "--json", str(written[0]), "--csv", str(written[1])]
    assert main([*argv, "--report", str(written[2])]) == 0
    assert all(NAME.encode() in path.read_bytes() for path in written)
    embedded = {base64.b64encode(t).decode() for t in trial_thumbnails(database, NAME)}
    assert embedded and all(data in written[2].read_text() for data in embedded)
    figures = json.loads(written[0].read_text())

    # Her export, CLIP trained from it (the feature cache) and from the store (the bundle).
    export = tmp_path / "usb-drive"
    assert main(["people", "export", str(export)]) == 0
    exported = files_under(export / NAME)
    crops = {sha256(path.read_bytes()) for path in exported}
    assert len(crops) == 6
    bundle = build.bundle_path(config)
    assert main(["train", "--people", str(export), "--out", str(bundle)]) == 0
    features = [p for p in files_under(user_cache_dir()) if p.suffix == ".npy" and p.stem in crops]
    assert features, "training from the export cached no features of hers"
    assert main(["train"]) == 0  # from the store: the kiosk's bundle knows people by id
    assert uid in load_bundle(bundle).person_ids
    feature_contents = {sha256(path.read_bytes()) for path in features}
    capsys.readouterr()

    # The erasure request, honoured without the key.
    monkeypatch.delenv(KEY_ENV, raising=False)
    assert main(["people", "delete", NAME, "--yes"]) == 0
    err = capsys.readouterr().err
    assert (
        f"erased person {uid}: removed the recognizer bundle, {len(logged)} door events, "
        f"1 export folders, {len(features)} cached features, 0 trial reports; "
        "anonymised 1 trials and 3 trial reports"
    ) in err, err
    assert "warning" not in err, err

    # Nothing is left: no name, no id (but in the audit log), no face picture, no feature.
    roots = [user_data_dir(), user_cache_dir(), user_config_dir(), export, store_dir, events_dir]
    roots.append(reports)
    left = files_under(*roots)
    assert left and any(path.name == DB_NAME for path in left)
    needles = [NAME.encode(), NAME.casefold().encode(), b"Grace_Hopper", uid.encode()]
    faces = pictures | crops
    for path in left:
        data = path.read_bytes()
        assert path.stem not in crops, f"{path}: a feature or crop named after her photo"
        assert sha256(data) not in faces | feature_contents, f"{path}: a face of hers"
        for needle in needles:
            if needle in data:
                assert path == store_dir / DB_NAME and needle == uid.encode(), (path, needle)
    with sqlite3.connect(store_dir / DB_NAME) as db:
        tables = [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        holding = {
            table
            for table in tables
            for row in db.execute(f"SELECT * FROM {table}")
            if any(uid in str(value) for value in row)
        }
    db.close()
    assert holding == {"audit"}  # the audit log keeps the opaque id, and only it
    assert not (export / NAME).exists() and (export / OTHER).is_dir()
    assert NAME not in load_bundle(bundle).people and OTHER in load_bundle(bundle).people
    assert [(outcome, wrong) for outcome, wrong, _ in outcomes(database)] == [
        (outcome, wrong) for outcome, wrong, _ in before
    ]  # the metrics survive, under an opaque label
    assert {event.person_uid for event in EventLog(events_dir).read()} == {other}
    # The reports were made again: her opaque label, the same figures, no face of hers.
    [label] = {name for *_, name in outcomes(database)} - {OTHER}
    assert all(label.encode() in path.read_bytes() for path in written)
    again = json.loads(written[0].read_text())
    for key in ("trials", "tp", "fp", "fn", "tn", "misidentified", "accuracy", "ci95"):
        assert again[key] == figures[key], key
    rows = list(csv.DictReader(written[1].read_text().splitlines()))
    assert [row["participant"] for row in rows] == [label, OTHER]
    assert [row["source"] for row in rows] == [f"/clips/{label}.mp4", "/clips/Alan_Turing.mp4"]
    page = written[2].read_text()
    assert not any(data in page for data in embedded) and page.count("image/jpeg") == 1


def test_retention_erases_a_person_from_the_door_events_too(tmp_path: Path) -> None:
    """A purge (the retention period ended) is an erasure like a deletion: the door's
    start (`kiosk run`, `kiosk enroll`) finishes it."""
    import numpy as np

    from enroll.store import PeopleStore
    from kiosk.config import KioskConfig
    from kiosk.erasure import finish_erasures
    from tests.helpers import consent, photos

    config = KioskConfig.model_validate(
        {"enroll": {"store_dir": str(tmp_path / "store"), "retention_days": 30}}
    )
    assert finish_erasures(config) == []  # no store yet: nothing to do, none made
    assert not (tmp_path / "store").exists()
    with PeopleStore(tmp_path / "store") as store:
        old = store.add_person(NAME, photos(2), consent(days_ago=31)).uid
        kept = store.add_person(OTHER, photos(2, seed=1), consent()).uid
    events = build.event_log(config)
    for uid, name in ((old, NAME), (kept, OTHER)):
        events.append(uid, name, 0.9, 1, np.zeros((8, 8, 3), np.uint8))
    [erased] = finish_erasures(config)
    assert erased.uid == old and erased.events == 1 and erased.complete
    assert [event.person_uid for event in events.read()] == [kept]
    with PeopleStore(tmp_path / "store") as store:
        assert [p.uid for p in store.people()] == [kept] and store.pending_erasures() == []
    assert finish_erasures(config) == []


def test_an_erasure_removes_every_int8_tower_calibrated_on_the_crops(tmp_path: Path) -> None:
    """The int8 image towers beside the bundle were calibrated on the enrolled crops: an
    erasure removes them whatever recipe (or older program) named them; the fp32 tower
    and other files stay."""
    from datetime import UTC, datetime

    from enroll.store import Erasure
    from kiosk.config import KioskConfig
    from kiosk.erasure import erase_traces

    bundle = tmp_path / "recognizer.bundle"
    config = KioskConfig.model_validate(
        {"recognizer": {"bundle": str(bundle)}, "trials": {"database": str(tmp_path / "t.db")}}
    )
    kept = ["recognizer.bundle.tower-abc.onnx", "other.tower-abc.int8-u8s8.onnx"]
    towers = [
        "recognizer.bundle.tower-abc.int8-u8s8-r7.onnx",
        "recognizer.bundle.tower-abc.int8.onnx",
    ]
    for name in kept + towers:
        (tmp_path / name).write_bytes(b"x")
    erased = erase_traces(config, Erasure("u" * 32, "d" * 64, datetime.now(UTC), (), ()))
    assert erased.complete, erased.problems
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(kept)
