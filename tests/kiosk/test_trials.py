"""Trial outcomes, metrics, the threshold sweep, persistence across a crash, exports."""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest

from kiosk.trials.report import export_csv, export_json, write_html_report
from kiosk.trials.rules import (
    REJECTED,
    FrameDecision,
    Outcome,
    Participant,
    confusion_matrix,
    decide_answer,
    frame_rates,
    judge,
    outcome_for,
    per_participant,
    summarize,
    sweep_thresholds,
)
from kiosk.trials.session import TrialSession
from kiosk.trials.store import TrialStore
from models.errors import UserError
from models.recognition import Prediction
from tests.helpers import ROOT, stale_temp

ALICE = Participant("alice", enrolled=True)
BOB = Participant("bob", enrolled=True)
VISITOR = Participant("visitor", enrolled=False)


def frames(
    *answers: tuple[str | None, float] | None, threshold: float = 0.8
) -> list[FrameDecision]:
    """Frames from (best name, confidence) pairs; None is a frame without a face."""
    out = []
    for i, answer in enumerate(answers):
        prediction = None
        if answer is not None:
            best, confidence = answer
            name = best if confidence >= threshold else None
            prediction = Prediction(name=name, best=str(best), confidence=confidence)
        out.append(FrameDecision.from_prediction(i * 0.1, prediction, threshold))
    return out


@pytest.mark.parametrize(
    ("participant", "window", "outcome", "misidentified"),
    [
        (ALICE, frames(("alice", 0.9), ("alice", 0.95), ("bob", 0.85)), Outcome.TP, False),
        (ALICE, frames(("bob", 0.9), ("bob", 0.92), ("alice", 0.3)), Outcome.FP, True),
        (ALICE, frames(("alice", 0.5), ("alice", 0.6), ("alice", 0.9)), Outcome.FN, False),
        (VISITOR, frames(("bob", 0.4), ("alice", 0.5), None), Outcome.TN, False),
        (VISITOR, frames(("bob", 0.9), ("bob", 0.85), ("bob", 0.2)), Outcome.FP, False),
        (ALICE, frames(None, None, None), Outcome.NO_FACE, False),
        (VISITOR, [], Outcome.NO_FACE, False),
    ],
    ids=["tp", "fp-misidentified", "fn", "tn", "fp-stranger", "no-face", "no-frames"],
)
def test_outcomes(
    participant: Participant, window: list[FrameDecision], outcome: Outcome, misidentified: bool
) -> None:
    result = judge(participant, window, started_at=0.0, duration=5.0)
    assert result.outcome is outcome
    assert result.misidentified is misidentified


def test_time_to_name() -> None:
    window = frames(None, ("alice", 0.5), ("alice", 0.9), ("alice", 0.95))
    assert judge(ALICE, window, started_at=0.0, duration=5.0).time_to_name == pytest.approx(0.2)
    rejected = judge(ALICE, frames(("alice", 0.1)), started_at=0.0, duration=5.0)
    assert rejected.time_to_name is None


def test_decision_rule_needs_a_majority_of_face_frames() -> None:
    # alice accepted in 2 of 5 face frames: not enough; frames without a face do not vote.
    window = frames(("alice", 0.9), ("alice", 0.9), ("x", 0.1), ("x", 0.1), ("x", 0.1), None)
    assert decide_answer(window) == REJECTED
    assert decide_answer(window, min_share=0.4) == "alice"
    # 3 of 5 face frames (the no-face frames do not count against her).
    window = frames(("alice", 0.9), ("alice", 0.9), ("alice", 0.9), ("x", 0.1), ("x", 0.1), None)
    assert decide_answer(window) == "alice"


def test_tie_goes_to_the_higher_summed_confidence() -> None:
    window = frames(("alice", 0.85), ("bob", 0.99), ("alice", 0.81), ("bob", 0.97))
    assert decide_answer(window) == "bob"


def test_outcome_table_directly() -> None:
    assert outcome_for(ALICE, "alice") == (Outcome.TP, False)
    assert outcome_for(ALICE, "bob") == (Outcome.FP, True)
    assert outcome_for(ALICE, REJECTED) == (Outcome.FN, False)
    assert outcome_for(VISITOR, REJECTED) == (Outcome.TN, False)
    assert outcome_for(VISITOR, "alice") == (Outcome.FP, False)
    assert outcome_for(VISITOR, None) == (Outcome.NO_FACE, False)


def sample_results() -> list:  # type: ignore[type-arg]
    windows = [
        (ALICE, frames(("alice", 0.95), ("alice", 0.9))),  # TP
        (ALICE, frames(("alice", 0.7), ("alice", 0.75))),  # FN at 0.8, TP at 0.7
        (BOB, frames(("alice", 0.85), ("alice", 0.9))),  # FP, misidentified
        (BOB, frames(None, None)),  # no face
        (VISITOR, frames(("bob", 0.6), ("bob", 0.5))),  # TN at 0.8, FP at 0.5
        (VISITOR, frames(("alice", 0.3), ("bob", 0.2))),  # TN
    ]
    return [judge(p, w, started_at=float(i), duration=5.0) for i, (p, w) in enumerate(windows)]


def test_metrics_and_their_definitions() -> None:
    metrics = summarize(sample_results())
    assert (metrics.tp, metrics.fp, metrics.fn, metrics.tn) == (1, 1, 1, 2)
    assert metrics.no_face == 1 and metrics.misidentified == 1 and metrics.trials == 6
    assert metrics.accuracy == pytest.approx(3 / 6)  # no_face counts in N as a failure
    assert metrics.fpr == pytest.approx(1 / 3)  # FP / (FP + TN), no_face left out
    assert metrics.fnr == pytest.approx(1 / 2)  # FN / (FN + TP)
    assert summarize([]).accuracy is None and summarize([]).fpr is None


def test_frame_rates() -> None:
    rates = frame_rates(sample_results())
    assert rates["frames"] == 12 and rates["face_frames"] == 10
    # Enrolled face frames: alice 2 own + 2 rejected (0.7, 0.75), bob 2 named alice.
    assert rates["enrolled_frames_own_name"] == pytest.approx(2 / 6)
    assert rates["enrolled_frames_other_name"] == pytest.approx(2 / 6)
    assert rates["enrolled_frames_rejected"] == pytest.approx(2 / 6)
    assert rates["stranger_face_frames"] == 4 and rates["stranger_frames_named"] == 0.0


def test_per_participant_and_confusion_matrix() -> None:
    results = sample_results()
    people = per_participant(results)
    assert [s.participant.name for s in people] == ["alice", "bob", "visitor"]
    assert people[1].answers == {"alice": 1, "no face": 1}
    matrix = confusion_matrix(results, enrolled=["alice", "bob", "carol"])
    assert matrix.rows == ["alice", "bob", "carol", "not enrolled"]
    assert matrix.columns == ["alice", "bob", "carol", "rejected", "no face"]
    expected = np.zeros((4, 5), dtype=int)
    expected[0, 0] = 1  # alice -> alice
    expected[0, 3] = 1  # alice -> rejected
    expected[1, 0] = 1  # bob -> alice
    expected[1, 4] = 1  # bob -> no face
    expected[3, 3] = 2  # visitors rejected
    np.testing.assert_array_equal(matrix.counts, expected)


def test_threshold_sweep_recomputes_from_frames() -> None:
    sweep = sweep_thresholds(sample_results(), current=0.8, target_fpr=0.0)
    by_threshold = {round(p.threshold, 4): p.metrics for p in sweep.points}
    at_07 = by_threshold[0.7]
    assert (at_07.tp, at_07.fn) == (2, 0)  # alice's 0.7/0.75 window is accepted at 0.7
    at_05 = by_threshold[0.5]
    assert at_05.fp == 2  # the visitor's 0.6/0.5 window becomes a false positive
    assert by_threshold[0.8].fpr == pytest.approx(1 / 3)
    # bob named as alice at 0.85/0.9: one accepted frame of two is still a majority, so
    # only a threshold above 0.9 (the next grid step, 0.01 apart) stops the FP.
    assert sweep.meets_target == pytest.approx(0.91)


def _crash_script(db: Path) -> str:
    return textwrap.dedent(
        f"""
        import os
        from kiosk.trials.rules import Participant
        from kiosk.trials.store import TrialStore
        from models.recognition import Prediction

        store = TrialStore({str(db)!r})
        session = store.create_session(
            label="crash", duration=5.0, threshold=0.8, min_share=0.5,
            participants=[Participant("alice", True), Participant("visitor", False)],
        )
        for name, best, conf in [("alice", "alice", 0.9), ("visitor", "alice", 0.3)]:
            session.start(name, now=0.0, wall_clock=1000.0)
            for i in range(10):
                accepted = best if conf >= 0.8 else None
                session.add_frame(i * 0.1, Prediction(accepted, best, conf))
            session.finish()
        session.start("alice", now=10.0, wall_clock=2000.0)
        for i in range(5):
            session.add_frame(10.0 + i * 0.1, Prediction("alice", "alice", 0.99))
        os._exit(9)  # power cut: no close, no commit, no cleanup
        """
    )


def test_crash_loses_only_the_trial_in_progress(tmp_path: Path) -> None:
    db = tmp_path / "trials.sqlite"
    run = subprocess.run(
        [sys.executable, "-c", _crash_script(db)], cwd=ROOT, capture_output=True, text=True
    )
    assert run.returncode == 9, run.stderr
    with TrialStore(db) as store:
        session = store.load_session()
        assert [p.name for p in session.participants] == ["alice", "visitor"]
        assert [r.outcome for r in session.results] == [Outcome.TP, Outcome.TN]
        assert all(len(r.frames) == 10 for r in session.results)
        assert session.results[0].frames[3].confidence == pytest.approx(0.9)
        # The session resumes: a new trial is saved next to the old ones.
        session.start("visitor", now=0.0, wall_clock=3000.0)
        session.add_frame(0.0, Prediction("alice", "alice", 0.95))
        session.finish()
    with TrialStore(db) as store:
        assert [r.outcome for r in store.load_session().results] == [
            Outcome.TP,
            Outcome.TN,
            Outcome.FP,
        ]


def test_closing_mid_trial_rolls_it_back(tmp_path: Path) -> None:
    db = tmp_path / "t.sqlite"
    store = TrialStore(db)
    session = store.create_session(label="s", duration=5.0, threshold=0.8, min_share=0.5)
    session.add_participant("alice", enrolled=True)
    session.start("alice", now=0.0, wall_clock=0.0)
    session.add_frame(0.1, Prediction("alice", "alice", 0.9))
    with pytest.raises(UserError, match="in progress"):
        session.add_participant("late visitor", enrolled=False)
    store.close()
    with TrialStore(db) as store:
        info = store.sessions()[0]
        assert info.trials == 0
        assert store.load_session(info.id).results == []


def test_frames_from_another_thread_are_saved(tmp_path: Path) -> None:
    with TrialStore(tmp_path / "t.sqlite") as store:
        session = store.create_session(
            label="s",
            duration=5.0,
            threshold=0.8,
            min_share=0.5,
            participants=[Participant("alice", True)],
        )
        session.start("alice", now=0.0, wall_clock=0.0)

        def pipeline() -> None:  # the live pipeline's thread
            for i in range(50):
                session.add_frame(i * 0.05, Prediction("alice", "alice", 0.9))

        worker = threading.Thread(target=pipeline)
        worker.start()
        worker.join()
        session.finish()
    with TrialStore(tmp_path / "t.sqlite") as store:
        assert len(store.load_session().results[0].frames) == 50


def test_session_rules(tmp_path: Path) -> None:
    session = TrialSession(duration=5.0)
    session.add_participant("alice", enrolled=True)
    with pytest.raises(UserError, match="already"):
        session.add_participant("alice", enrolled=False)
    with pytest.raises(UserError, match="name"):
        session.add_participant("  ", enrolled=False)
    with pytest.raises(UserError, match="not on the roster"):
        session.start("nobody", now=0.0, wall_clock=0.0)
    session.start("alice", now=100.0, wall_clock=0.0)
    with pytest.raises(UserError, match="already running"):
        session.start("alice", now=100.0, wall_clock=0.0)
    assert session.add_frame(99.0, None) is None  # before the window
    assert session.add_frame(105.0, None) is None  # after it
    assert session.add_frame(101.0, Prediction("alice", "alice", 0.9)) is not None
    assert not session.is_due(104.9) and session.is_due(105.0)
    assert session.finish().outcome is Outcome.TP
    with (
        TrialStore(tmp_path / "x.sqlite") as store,
        pytest.raises(UserError, match="no trial session"),
    ):
        store.load_session(42)


def test_corrupt_database_is_a_user_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.sqlite"
    bad.write_bytes(b"this is not a database" * 100)
    with pytest.raises(UserError, match="cannot open the trials database"):
        TrialStore(bad)


def test_anonymising_a_person_keeps_the_metrics_and_drops_their_thumbnails(
    tmp_path: Path,
) -> None:
    from models.names import name_digest

    db = tmp_path / "t.sqlite"
    with TrialStore(db) as store:
        session = store.create_session(
            label="ALICE SMITH and bob", duration=5.0, threshold=0.8, min_share=0.5
        )
        other = store.create_session(label="Alice Smithson", duration=5, threshold=1, min_share=1)
        session.add_participant("Alice Smith", enrolled=True)
        session.add_participant("bob", enrolled=True)
        session.add_participant("photo of Alice Smith", enrolled=False, attack=True)
        crop = np.full((32, 32, 3), 90, np.uint8)
        trials = (
            ("Alice Smith", "Alice Smith", ""),
            ("bob", "Alice Smith", "/clips/bob.mp4"),
            ("bob", "bob", "/clips/alice-smith.mp4"),  # bob's trial, on her clip
            ("photo of Alice Smith", "bob", ""),  # an attack misidentified as bob
        )
        for who, answer, source in trials:
            session.start(who, now=0.0, wall_clock=1000.0, source=source)
            for i in range(3):
                session.add_frame(0.1 * i, Prediction(answer, answer, 0.9), face_crop=crop)
            session.finish()
        before = store.load_session(1)
        # by the digest of her name's key: any case matches
        assert store.anonymise(name_digest("alice smith"), "erased person 0a1b2c3d") == 4
        after = store.load_session(1)
        labels = [info.label for info in store.sessions()]
    assert other.session_id == 2 and labels == [
        "erased person 0a1b2c3d and bob",
        "Alice Smithson",  # someone else
    ]
    assert [r.source for r in after.results] == [
        "",
        "/clips/bob.mp4",
        "/clips/erased person 0a1b2c3d.mp4",
        "",
    ]
    attack = "photo of erased person 0a1b2c3d"
    assert [p.name for p in after.participants] == ["erased person 0a1b2c3d", "bob", attack]
    assert after.results[3].participant.name == attack and after.results[3].participant.attack
    assert [(r.outcome, r.misidentified) for r in after.results] == [
        (r.outcome, r.misidentified) for r in before.results
    ]
    assert [r.answer for r in after.results] == ["erased person 0a1b2c3d"] * 2 + ["bob"] * 2
    assert {f.best for r in after.results[:2] for f in r.frames} == {"erased person 0a1b2c3d"}
    assert [r.thumbnail is not None for r in after.results] == [False, True, True, True]
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    assert re.search(rb"Alice Smith(?!son)|alice-smith|ALICE", raw) is None


def test_the_consoles_roster_follows_the_people_store(tmp_path: Path) -> None:
    """Someone deleted in another terminal leaves the console's roster: a trial of theirs
    in progress is dropped, none can be started for them, and once the erasure is
    finished (by the console's finisher) the session's trials are shown anonymised."""
    from enroll.store import PeopleStore
    from kiosk.config import KioskConfig
    from kiosk.erasure import ErasureFinisher
    from kiosk.trials.runs import EnrolledRoster, default_database
    from tests.helpers import consent, photos

    ada, bob = "Ada Lovelace", "Bob Kahn"
    store_dir = tmp_path / "people"
    with PeopleStore(store_dir) as people:
        people.add_person(ada, photos(2), consent())
        people.add_person(bob, photos(2, seed=1), consent())
    config = KioskConfig.model_validate(
        {"enroll": {"store_dir": str(store_dir)}, "trials": {"database": str(tmp_path / "t")}}
    )
    roster = EnrolledRoster(config)
    finished = threading.Event()
    try:
        assert sorted(roster.names) == [ada, bob] and roster.erased() == []
        with TrialStore(default_database(config)) as trials:
            session = trials.create_session(
                label="live 0",
                duration=5.0,
                threshold=0.8,
                min_share=0.5,
                participants=[Participant(name, enrolled=True) for name in roster.names],
            )
            for start in (0.0, 10.0):  # one trial of hers finished, one in progress
                if session.active is not None:
                    session.finish()
                session.start(ada, now=start, wall_clock=1000.0 + start)
                session.add_frame(start + 0.1, Prediction(ada, ada, 0.9))
            with PeopleStore(store_dir) as people:  # `kiosk people delete`, elsewhere
                people.delete(ada)
            assert roster.erased() == [ada] and roster.erased() == []
            assert session.forget([ada]) and session.active is None
            assert [p.name for p in session.participants] == [bob]
            with pytest.raises(UserError, match="not on the roster"):
                session.start(ada, now=20.0, wall_clock=1020.0)
            ErasureFinisher(config, on_finished=finished.set).request()
            assert finished.wait(30.0)
            session.reload_results()
            [result] = session.results  # the dropped trial was never recorded
            assert trials.load_session().results == [result]
        assert result.participant.name.startswith("erased person ") and result.answer == (
            result.participant.name
        )
    finally:
        roster.close()


def test_exports(tmp_path: Path) -> None:
    session = TrialSession(duration=5.0, threshold=0.8)
    session.results.extend(sample_results())
    session.participants.extend([ALICE, BOB, VISITOR])
    summary = export_json(session, tmp_path / "s.json")
    loaded = json.loads((tmp_path / "s.json").read_text())
    for key in ("tp", "fp", "tn", "fn", "misidentified", "accuracy", "fpr", "fnr", "trials"):
        assert loaded[key] == summary[key]
    assert loaded["trials"] == 6 and loaded["misidentified"] == 1
    assert len(loaded["trial_log"][0]["frame_decisions"]) == 2
    export_csv(session, tmp_path / "s.csv")
    rows = list(csv.DictReader((tmp_path / "s.csv").open()))
    assert [r["outcome"] for r in rows] == ["TP", "FN", "FP", "no_face", "TN", "TN"]
    write_html_report(session, tmp_path / "r.html")
    page = (tmp_path / "r.html").read_text()
    assert page.count("data:image/png;base64,") == 3
    assert "FPR = FP/(FP+TN+refused attacks)" in page and "33.3%" in page
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.html", "s.csv", "s.json"]
    assert all(p.stat().st_mode & 0o777 == 0o600 for p in tmp_path.iterdir())  # names: private


def test_failed_export_keeps_the_old_file_and_leaves_no_temp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    session = TrialSession(duration=5.0, threshold=0.8)
    session.results.extend(sample_results())
    session.participants.extend([ALICE, BOB, VISITOR])
    export_json(session, tmp_path / "s.json")
    before = (tmp_path / "s.json").read_bytes()
    session.results.extend(sample_results())

    def disk_full(*args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("models.io.os.replace", disk_full)
    with pytest.raises(UserError, match=r"cannot write .*s\.json.*No space"):
        export_json(session, tmp_path / "s.json")
    monkeypatch.undo()
    assert (tmp_path / "s.json").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["s.json"]


def test_opening_the_trials_database_removes_killed_exports(tmp_path: Path) -> None:
    killed = stale_temp(tmp_path, ".tmp-k1lled_0.html")
    with TrialStore(tmp_path / "trials.sqlite"):
        assert not killed.exists()


def test_report_without_matplotlib(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The door bundle leaves matplotlib out: the report is still written, without plots."""
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes `import matplotlib` fail
    session = TrialSession(duration=5.0, threshold=0.8)
    session.results.extend(sample_results())
    write_html_report(session, tmp_path / "r.html")
    page = (tmp_path / "r.html").read_text()
    assert "Plots need matplotlib" in page and "FPR = FP/(FP+TN+refused attacks)" in page


ATTACK = Participant("photo of alice", enrolled=False, attack=True)


def live_frames(*answers: tuple[str, float, bool | None]) -> list[FrameDecision]:
    """Frames from (best name, confidence, live) triples, at the research threshold."""
    out = []
    for i, (best, confidence, live) in enumerate(answers):
        name = best if confidence >= 0.8 else None
        prediction = Prediction(name=name, best=best, confidence=confidence)
        out.append(FrameDecision.from_prediction(i * 0.1, prediction, 0.8, live=live))
    return out


@pytest.mark.parametrize(
    ("participant", "window", "outcome"),
    [
        # a photo named, liveness unsure: the door opens for a photo
        (ATTACK, live_frames(("alice", 0.9, None), ("alice", 0.95, True)), Outcome.FP),
        # the same names, but the liveness check found the face not live: refused
        (
            ATTACK,
            live_frames(("alice", 0.9, False), ("alice", 0.95, False)),
            Outcome.ATTACK_REFUSED,
        ),
        # the recognizer itself rejected the photo
        (ATTACK, live_frames(("alice", 0.4, True), ("bob", 0.5, None)), Outcome.ATTACK_REFUSED),
        # a real enrolled person wrongly found not live is refused: FN
        (ALICE, live_frames(("alice", 0.9, False), ("alice", 0.95, False)), Outcome.FN),
        # one live frame against two not-live ones does not reach the majority
        (
            ALICE,
            live_frames(("alice", 0.9, True), ("alice", 0.9, False), ("alice", 0.9, False)),
            Outcome.FN,
        ),
        (
            ALICE,
            live_frames(("alice", 0.9, True), ("alice", 0.9, True), ("alice", 0.9, False)),
            Outcome.TP,
        ),
        (ATTACK, [FrameDecision(t=0.0, face=False)], Outcome.NO_FACE),
    ],
    ids=[
        "accepted",
        "not-live",
        "rejected",
        "live-refused",
        "minority-live",
        "majority-live",
        "none",
    ],
)
def test_attack_and_liveness_outcomes(
    participant: Participant, window: list[FrameDecision], outcome: Outcome
) -> None:
    result = judge(participant, window, started_at=0.0, duration=5.0)
    assert result.outcome is outcome
    assert result.attack_accepted is (participant.attack and outcome is Outcome.FP)
    assert result.misidentified is False


def test_attack_metrics_apcer_and_confusion() -> None:
    named = live_frames(("alice", 0.9, None), ("alice", 0.9, None))
    refused = live_frames(("alice", 0.9, False), ("alice", 0.9, False))
    results = [
        judge(ATTACK, named, started_at=0.0, duration=5.0),
        judge(ATTACK, refused, started_at=5.0, duration=5.0),
        judge(ATTACK, refused, started_at=10.0, duration=5.0),
        judge(ATTACK, [FrameDecision(t=0.0, face=False)], started_at=15.0, duration=5.0),
        judge(VISITOR, refused, started_at=20.0, duration=5.0),
        judge(ALICE, named, started_at=25.0, duration=5.0),
    ]
    metrics = summarize(results)
    assert (metrics.tp, metrics.fp, metrics.tn, metrics.no_face) == (1, 1, 1, 1)
    assert (metrics.attack_refused, metrics.attack_accepted, metrics.attacks) == (2, 1, 3)
    assert metrics.apcer == pytest.approx(1 / 3)
    assert metrics.fpr == pytest.approx(1 / 4)  # FP / (FP + TN + refused attacks)
    assert metrics.accuracy == pytest.approx(4 / 6)
    assert metrics.as_dict()["apcer"] == pytest.approx(1 / 3)
    matrix = confusion_matrix(results, enrolled=["alice"])
    assert matrix.rows == ["alice", "not enrolled", "attack"]
    assert matrix.counts[2].tolist() == [1, 2, 1]  # alice, rejected, no face
    rates = frame_rates(results)
    assert rates["attack_frames_named"] == pytest.approx(2 / 6)
    assert rates["live_frames_not_live"] == pytest.approx(2 / 4)
    people = per_participant(results)
    assert [p.participant.kind for p in people] == ["enrolled", "not enrolled", "attack"]


def test_attack_trials_and_liveness_persist_and_export(tmp_path: Path) -> None:
    with TrialStore(tmp_path / "trials.sqlite") as store:
        session = store.create_session(label="attacks", duration=1.0, threshold=0.8, min_share=0.5)
        session.add_participant("alice", enrolled=True)
        session.add_participant("photo of alice", enrolled=False, attack=True)
        for start, name, live in [(0.0, "photo of alice", False), (2.0, "photo of alice", None)]:
            session.start(name, now=start, wall_clock=1000.0 + start)
            for i in range(5):
                session.add_frame(start + i * 0.1, Prediction("alice", "alice", 0.9), live=live)
            session.finish()
        export_csv(session, tmp_path / "t.csv")
        summary = export_json(session, tmp_path / "t.json")
    with TrialStore(tmp_path / "trials.sqlite") as store:
        loaded = store.load_session()
    assert [p.kind for p in loaded.participants] == ["enrolled", "attack"]
    assert [r.outcome for r in loaded.results] == [Outcome.ATTACK_REFUSED, Outcome.FP]
    assert [f.live for f in loaded.results[0].frames] == [False] * 5
    assert loaded.metrics().apcer == pytest.approx(0.5)
    assert summary["attack_accepted"] == 1 and summary["apcer"] == pytest.approx(0.5)
    rows = list(csv.DictReader((tmp_path / "t.csv").open()))
    assert [(r["kind"], r["attack_accepted"], r["not_live_frames"]) for r in rows] == [
        ("attack", "False", "5"),
        ("attack", "True", "0"),
    ]


def test_liveness_refusals_count_real_people_refused() -> None:
    from kiosk.trials.rules import liveness_refusals

    carol = Participant("carol", enrolled=False)
    results = [
        judge(
            ALICE,
            live_frames(("alice", 0.9, False), ("alice", 0.9, False)),
            started_at=0,
            duration=5,
        ),
        judge(
            ALICE,
            live_frames(("alice", 0.9, False), ("alice", 0.9, True)),
            started_at=5,
            duration=5,
        ),
        judge(
            ALICE,
            live_frames(("alice", 0.9, True), ("alice", 0.9, None)),
            started_at=10,
            duration=5,
        ),
        # a stranger refused by liveness who would have been named: still a wrong refusal
        judge(
            carol, live_frames(("bob", 0.9, False), ("bob", 0.9, False)), started_at=15, duration=5
        ),
        # rejected by the recognizer anyway: liveness changed nothing
        judge(
            BOB, live_frames(("bob", 0.3, False), ("bob", 0.2, False)), started_at=20, duration=5
        ),
        judge(
            ATTACK,
            live_frames(("alice", 0.9, False), ("alice", 0.9, False)),
            started_at=25,
            duration=5,
        ),
    ]
    summary = liveness_refusals(results)
    assert summary["tracks"] == 5  # the attack is left out
    assert summary["refused_by_liveness"] == 2
    assert summary["participants"] == ["alice", "carol"]
    assert summary["ended_not_live"] == 3 and summary["ended_undecided"] == 1
    assert summary["refused_rate"] == pytest.approx(2 / 5)


def test_live_results_record_the_largest_face_raw_prediction_and_liveness() -> None:
    from kiosk.live.results import FrameResult
    from kiosk.live.tracking import Tracker, TrackerSettings
    from kiosk.trials.session import record_live_result
    from models.detector import Face

    def face(x: float, size: float) -> Face:
        box = np.array([x, 100, x + size, 100 + size], dtype=np.float32)
        return Face(box=box, score=0.9, kps=np.zeros((5, 2), dtype=np.float32))

    vetoed: set[int] = set()
    tracker = Tracker(TrackerSettings(min_frames=2, window=4), veto=lambda t, f, _: t in vetoed)
    image = np.full((400, 600, 3), 90, dtype=np.uint8)
    answers = [  # (small face's prediction, large face's prediction) per frame
        (Prediction("bob", "bob", 0.99), Prediction("alice", "alice", 0.9)),
        (Prediction("bob", "bob", 0.99), Prediction(None, "alice", 0.6)),
        (Prediction("bob", "bob", 0.99), Prediction("alice", "alice", 0.95)),
        (Prediction("bob", "bob", 0.99), Prediction("alice", "alice", 0.97)),
    ]
    session = TrialSession(duration=5.0, threshold=0.8)
    session.add_participant("alice", enrolled=True)
    session.start("alice", now=0.0, wall_clock=0.0)
    for i, pair in enumerate(answers):
        if i == 3:
            vetoed.add(2)  # the large face's track (id 2) is found not live
        updates = tracker.update(image, [face(10, 40), face(200, 150)], lambda _, p=pair: list(p))
        result = FrameResult(
            frame_index=i,
            frame=image,
            captured_at=0.1 * i,
            tracks=tuple(u.view for u in updates),
        )
        record_live_result(session, result, liveness=True)
    empty = FrameResult(frame_index=4, frame=image, captured_at=0.4, tracks=())
    record_live_result(session, empty, liveness=True)
    recorded = session.finish().frames
    assert [(f.best, f.confidence, f.accepted) for f in recorded[:4]] == [
        ("alice", 0.9, "alice"),
        ("alice", 0.6, None),  # the raw frame, not the track's voted label
        ("alice", 0.95, "alice"),
        ("alice", 0.97, "alice"),
    ]
    # pending twice, recognized (liveness on: only a live track is named), then not live
    assert [f.live for f in recorded[:4]] == [None, None, True, False]
    assert recorded[3].named is None
    assert not recorded[4].face


def test_every_frame_names_its_recognizer_in_the_store_and_the_exports(tmp_path: Path) -> None:
    db = tmp_path / "t.sqlite"
    with TrialStore(db) as store:
        session = store.create_session(
            label="s", duration=5.0, threshold=0.8, min_share=0.5, recognizer="clip RN50"
        )
        session.add_participant("alice", enrolled=True)
        session.start("alice", now=0.0, wall_clock=0.0)
        session.add_frame(0.0, Prediction("alice", "alice", 0.9), recognizer="clip v3")
        session.add_frame(0.1, None, recognizer="clip v3")
        session.add_frame(0.2, Prediction("alice", "alice", 0.95), recognizer="clip v4")
        session.finish()
    with TrialStore(db) as store:
        loaded = store.load_session()
    assert loaded.recognizer == "clip RN50"
    assert [f.recognizer for f in loaded.results[0].frames] == ["clip v3", "clip v3", "clip v4"]
    summary = export_json(loaded, tmp_path / "s.json")
    assert summary["description"] == "clip RN50" and not summary["untrained"]
    frames_out = json.loads((tmp_path / "s.json").read_text())["trial_log"][0]["frame_decisions"]
    assert [f["recognizer"] for f in frames_out] == ["clip v3", "clip v3", "clip v4"]
    export_csv(loaded, tmp_path / "s.csv")
    (row,) = csv.DictReader((tmp_path / "s.csv").open())
    assert row["recognizer"] == "clip v3 clip v4"  # a retrain swapped in mid-trial
    write_html_report(loaded, tmp_path / "r.html")
    assert "<td>clip v3 clip v4</td>" in (tmp_path / "r.html").read_text()


OLD_SCHEMA = """
CREATE TABLE sessions (id INTEGER PRIMARY KEY, label TEXT NOT NULL, created_at REAL NOT NULL,
    duration REAL NOT NULL, threshold REAL NOT NULL, min_share REAL NOT NULL,
    recognizer TEXT NOT NULL DEFAULT '');
CREATE TABLE participants (session_id INTEGER NOT NULL REFERENCES sessions(id),
    position INTEGER NOT NULL, name TEXT NOT NULL, enrolled INTEGER NOT NULL,
    PRIMARY KEY (session_id, name));
CREATE TABLE trials (id INTEGER PRIMARY KEY, session_id INTEGER NOT NULL REFERENCES sessions(id),
    participant TEXT NOT NULL, enrolled INTEGER NOT NULL, started_at REAL NOT NULL,
    duration REAL NOT NULL, finished INTEGER NOT NULL DEFAULT 0, answer TEXT, outcome TEXT,
    misidentified INTEGER NOT NULL DEFAULT 0, thumbnail BLOB, source TEXT NOT NULL DEFAULT '');
CREATE TABLE frames (trial_id INTEGER NOT NULL REFERENCES trials(id) ON DELETE CASCADE,
    t REAL NOT NULL, face INTEGER NOT NULL, best TEXT, confidence REAL, threshold REAL NOT NULL,
    accepted TEXT, live INTEGER);
INSERT INTO sessions VALUES (1, 'old', 1000.0, 5.0, 0.8, 0.5, 'embedding_gallery');
INSERT INTO participants VALUES (1, 0, 'alice', 1);
INSERT INTO trials VALUES (1, 1, 'alice', 1, 1000.0, 5.0, 1, 'alice', 'TP', 0, NULL, 'cam');
INSERT INTO frames VALUES (1, 0.0, 1, 'alice', 0.9, 0.8, 'alice', 1);
INSERT INTO frames VALUES (1, 0.1, 0, NULL, NULL, 0.8, NULL, NULL);
"""


def test_a_trials_database_from_before_the_recognizer_label_is_migrated(tmp_path: Path) -> None:
    import sqlite3

    db = tmp_path / "old.sqlite"
    with sqlite3.connect(db) as old:
        old.executescript(OLD_SCHEMA)
    for _ in range(2):  # the migration runs once; opening again finds the column there
        with TrialStore(db) as store:
            session = store.load_session()
            (trial,) = session.results
            assert [(f.face, f.accepted, f.recognizer) for f in trial.frames] == [
                (True, "alice", ""),
                (False, None, ""),
            ]
            assert trial.outcome is Outcome.TP and session.recognizer == "embedding_gallery"
    with TrialStore(db) as store:  # and new trials in the old file keep their label
        session = store.load_session()
        session.start("alice", now=0.0, wall_clock=2000.0)
        session.add_frame(0.0, Prediction("alice", "alice", 0.9), recognizer="clip v1")
        session.finish()
    with TrialStore(db) as store:
        old_trial, new_trial = store.load_session().results
    assert [f.recognizer for f in new_trial.frames] == ["clip v1"]
    assert [f.recognizer for f in old_trial.frames] == ["", ""]
    export_csv(TrialStore(db).load_session(), tmp_path / "o.csv")
    assert [r["recognizer"] for r in csv.DictReader((tmp_path / "o.csv").open())] == ["", "clip v1"]


def test_a_vetoed_frame_stays_refused_at_every_threshold() -> None:
    # A fusion refused CLIP's 0.95 (the gallery disagreed); a plain 0.7 was under 0.8.
    vetoed = FrameDecision.from_prediction(0.0, Prediction(None, "alice", 0.95), 0.8)
    low = FrameDecision.from_prediction(0.1, Prediction(None, "alice", 0.7), 0.8)
    assert vetoed.vetoed and not low.vetoed
    assert vetoed.at_threshold(0.5).accepted is None
    assert low.at_threshold(0.5).accepted == "alice"
    result = judge(ALICE, [vetoed, vetoed, vetoed], started_at=0.0, duration=5.0)
    sweep = sweep_thresholds([result], current=0.8)
    assert all(point.metrics.tp == 0 for point in sweep.points)  # the door never opened


def test_live_results_record_the_recognizer_and_a_refused_name() -> None:
    from kiosk.live.results import FrameResult, RecognizerInfo
    from kiosk.live.tracking import Tracker, TrackerSettings
    from kiosk.trials.session import record_live_result
    from models.detector import Face

    box = np.array([100, 100, 250, 250], dtype=np.float32)
    face = Face(box=box, score=0.9, kps=np.zeros((5, 2), dtype=np.float32))
    tracker = Tracker(TrackerSettings(min_frames=2, window=4))
    image = np.full((400, 600, 3), 90, dtype=np.uint8)
    session = TrialSession(duration=5.0, threshold=0.8)
    session.add_participant("visitor", enrolled=False)
    session.start("visitor", now=0.0, wall_clock=0.0)
    fusion = RecognizerInfo(kind="fusion", version=4)
    # CLIP is sure (0.95) but the gallery disagrees: the fusion refuses the name.
    for i, prediction in enumerate(
        [Prediction(None, "alice", 0.95), Prediction("alice", "alice", 0.9)]
    ):
        updates = tracker.update(image, [face], lambda _, p=prediction: [p])
        result = FrameResult(i, image, 0.1 * i, tuple(u.view for u in updates), recognizer=fusion)
        record_live_result(session, result, liveness=False)
    record_live_result(
        session, FrameResult(2, image, 0.2, (), recognizer=RecognizerInfo()), liveness=False
    )
    frames = session.finish().frames
    assert [(f.best, f.accepted) for f in frames[:2]] == [("alice", None), ("alice", "alice")]
    assert frames[0].vetoed
    assert [f.recognizer for f in frames] == ["fusion v4", "fusion v4", "nobody enrolled"]


def test_a_console_session_records_the_configured_recognizer() -> None:
    from kiosk.config import KioskConfig
    from kiosk.trials.runs import configured_recognizer

    assert configured_recognizer(KioskConfig()) == "clip RN50, pretrained openai"
    untrained = KioskConfig.model_validate({"clip": {"pretrained": "none"}})
    assert configured_recognizer(untrained) == "clip RN50, pretrained none: UNTRAINED"
    fusion = KioskConfig.model_validate({"recognizer": {"kind": "fusion"}})
    assert configured_recognizer(fusion).startswith("fusion RN50")
    gallery = KioskConfig.model_validate({"recognizer": {"kind": "embedding_gallery"}})
    assert configured_recognizer(gallery) == "embedding_gallery (mobilefacenet)"


# -- reports people can trust (issue 13, part 4) -------------------------------------------


def test_wilson_intervals_match_known_values_and_stay_inside_zero_one() -> None:
    from kiosk.trials.report import wilson_interval

    assert wilson_interval(0, 0) is None
    low, high = wilson_interval(0, 2) or (None, None)
    assert low == 0.0 and high == pytest.approx(0.6576, abs=1e-3)  # not zero-width at 0 of n
    assert wilson_interval(1, 3) == pytest.approx((0.0615, 0.7923), abs=1e-3)
    low, high = wilson_interval(10, 10) or (None, None)
    assert high == 1.0 and low == pytest.approx(0.7225, abs=1e-3)
    # Symmetric: k of n's interval mirrors (n - k) of n's; it narrows as n grows.
    a, b = wilson_interval(3, 20) or (0.0, 0.0)
    c, d = wilson_interval(17, 20) or (0.0, 0.0)
    assert (a, b) == pytest.approx((1 - d, 1 - c))
    assert wilson_interval(30, 200)[1] - wilson_interval(30, 200)[0] < b - a  # type: ignore[index]
    with pytest.raises(ValueError):
        wilson_interval(4, 3)


def sample_session(copies: int = 1) -> TrialSession:
    session = TrialSession(duration=5.0, threshold=0.8)
    for _ in range(copies):
        session.results.extend(sample_results())
    session.participants.extend([ALICE, BOB, VISITOR])
    return session


def test_every_rate_has_its_interval_in_json_html_and_the_printed_summary(
    tmp_path: Path,
) -> None:
    from kiosk.trials.runs import summary_lines

    session = sample_session()
    summary = export_json(session, tmp_path / "s.json")
    ci = json.loads((tmp_path / "s.json").read_text())["ci95"]
    assert ci["fpr"]["k"] == 1 and ci["fpr"]["n"] == 3  # FP / (FP + TN)
    assert (ci["fpr"]["low"], ci["fpr"]["high"]) == pytest.approx((0.0615, 0.7923), abs=1e-3)
    assert (ci["fnr"]["k"], ci["fnr"]["n"]) == (1, 2) and (ci["accuracy"]["n"]) == 6
    assert ci["apcer"] is None  # no attack trials: undefined, no interval
    assert summary["participants"][0]["ci95"]["fnr"]["n"] == 2  # alice's two trials
    write_html_report(session, tmp_path / "r.html")
    page = (tmp_path / "r.html").read_text()
    assert "33.3% (1/3; 95% CI 6.2-79.2%)" in page and "Wilson 95%" in page
    lines = "\n".join(summary_lines(summary))
    assert "FPR 33.3% (1/3; 95% CI 6.2-79.2%)" in lines
    assert "accuracy 50.0% (3/6; 95% CI" in lines


def test_no_threshold_is_recommended_from_too_few_trials(tmp_path: Path) -> None:
    from kiosk.trials.report import MIN_TRIALS_PER_CLASS, session_summary
    from kiosk.trials.runs import summary_lines

    few = sample_session()  # 3 enrolled trials with a face (bob's no-face one aside), 2 strangers
    summary = export_json(few, tmp_path / "few.json")
    advice = summary["recommendation"]
    assert MIN_TRIALS_PER_CLASS == 10 and advice["threshold"] is None
    expected = (
        "not enough trials to recommend a threshold: 3 enrolled, 2 strangers; need 10 of each"
    )
    assert advice["reason"] == expected
    assert summary["threshold_sweep"]["meets_target"] is None  # withheld, not just unsaid
    assert f"threshold: {expected}" in summary_lines(summary)
    write_html_report(few, tmp_path / "few.html")
    page = (tmp_path / "few.html").read_text()
    assert expected in page and "lowest threshold with" not in page
    # Five copies: 15 enrolled, 10 strangers; the analysis recommends again.
    enough = session_summary(sample_session(5), target_fpr=0.0, frames=False)
    assert enough["recommendation"]["threshold"] == pytest.approx(0.91)
    assert enough["threshold_sweep"]["meets_target"] == pytest.approx(0.91)
    assert enough["recommendation"]["reason"].startswith("the lowest threshold with FPR <= 0")
    # The minimum is a parameter: two of each suffices when asked.
    two = session_summary(sample_session(), target_fpr=0.0, min_per_class=2)
    assert two["recommendation"]["threshold"] == pytest.approx(0.91)


def test_exports_carry_a_header_from_the_store_with_the_date_in_local_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import time

    monkeypatch.setenv("TZ", "Asia/Kolkata")  # +05:30, no daylight saving
    time.tzset()
    try:
        with TrialStore(tmp_path / "t.sqlite") as store:
            session = store.create_session(
                label="live 0",
                duration=5.0,
                threshold=0.8,
                min_share=0.5,
                recognizer="clip RN50, pretrained openai",
                site="kiosk on db.example",
                kiosk="door-1",
                operator="Zoë",
            )
            session.add_participant("alice", enrolled=True)
            for version in ("clip v3", "clip v4"):
                session.start("alice", now=0.0, wall_clock=0.0)
                session.add_frame(0.0, Prediction("alice", "alice", 0.9), recognizer=version)
                session.finish()
            created = store.sessions()[0].created_at
        with TrialStore(tmp_path / "t.sqlite") as store:
            loaded = store.load_session()
        # Exported after its store was closed: the header is still there.
        summary = export_json(loaded, tmp_path / "s.json")
        export_csv(loaded, tmp_path / "s.csv")
        write_html_report(loaded, tmp_path / "r.html")
        expected_date = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(created))
    finally:
        monkeypatch.undo()
        time.tzset()
    header = json.loads((tmp_path / "s.json").read_text())["header"]
    assert header == summary["header"]
    assert header["date"] == f"{expected_date} IST" and header["created_at"] == created
    assert (header["site"], header["kiosk"], header["operator"]) == (
        "kiosk on db.example",
        "door-1",
        "Zoë",
    )
    assert header["session_id"] == 1 and header["label"] == "live 0"
    assert header["recognizer"] == "clip RN50, pretrained openai"
    assert header["versions"] == ["clip v3", "clip v4"]  # a retrain between the trials
    rows = list(csv.DictReader((tmp_path / "s.csv").open()))
    assert {(r["session"], r["session_date"], r["kiosk"], r["operator"]) for r in rows} == {
        ("1", f"{expected_date} IST", "door-1", "Zoë")
    }
    page = (tmp_path / "r.html").read_text()
    texts = ("door-1", "Zoë", "kiosk on db.example", f"{expected_date} IST", "clip v3, clip v4")
    for text in texts:
        assert f"<td>{text}</td>" in page
    assert "<td>1 live 0</td>" in page


def test_a_session_without_a_store_says_what_its_header_lacks(tmp_path: Path) -> None:
    write_html_report(sample_session(), tmp_path / "r.html")
    page = (tmp_path / "r.html").read_text()
    assert "<td>(none: a single kiosk)</td>" in page and "<td>(not recorded)</td>" in page


def test_sessions_from_before_the_header_read_back_empty_fields(tmp_path: Path) -> None:
    import sqlite3

    db = tmp_path / "old.sqlite"
    with sqlite3.connect(db) as old:
        old.executescript(OLD_SCHEMA)
    with TrialStore(db) as store:
        (info,) = store.sessions()
        assert (info.site, info.kiosk, info.operator) == ("", "", "")
        store.create_session(
            label="new", duration=5.0, threshold=0.8, min_share=0.5, kiosk="k", operator="o"
        )
    with TrialStore(db) as store:
        assert [(i.label, i.kiosk, i.operator) for i in store.sessions()] == [
            ("old", "", ""),
            ("new", "k", "o"),
        ]


def test_session_origin_names_the_kiosk_and_operator() -> None:
    import socket

    from kiosk.config import KioskConfig
    from kiosk.trials.runs import session_origin

    alone = session_origin(KioskConfig(), "Ada ")
    assert alone == {"site": "", "kiosk": socket.gethostname(), "operator": "Ada"}
    site = KioskConfig.model_validate({"site": {"host": "db.example", "user": "door_2"}})
    assert session_origin(site, "Ada") == {
        "site": "kiosk on db.example",
        "kiosk": "door_2",
        "operator": "Ada",
    }
    assert session_origin(KioskConfig())["operator"]  # the login name by default


# -- readable plots ------------------------------------------------------------------------


def test_confusion_counts_are_white_on_dark_cells_and_black_on_light_ones() -> None:
    from kiosk.trials.report import confusion_figure, text_colour
    from kiosk.trials.rules import ConfusionMatrix

    assert text_colour((0.03, 0.19, 0.42)) == "white"  # Blues' darkest: navy
    assert text_colour((0.87, 0.92, 0.97)) == "black"  # Blues' palest
    counts = np.array([[5, 1], [0, 2]])
    figure = confusion_figure(ConfusionMatrix(["alice", "not enrolled"], ["alice", "x"], counts))
    colours = {t.get_text(): t.get_color() for t in figure.axes[0].texts}
    assert colours["5"] == "white" and colours["1"] == "black"  # the largest count readable
    assert "0" not in colours  # empty cells stay blank


def _clean_session() -> TrialSession:
    """FPR 0 and FNR 0 at every threshold from 0.5 to 0.9: the marks all fall on (0, 0)."""
    session = TrialSession(duration=5.0, threshold=0.5)
    session.results.extend(
        [
            judge(ALICE, frames(("alice", 0.95), ("alice", 0.97)), started_at=0.0, duration=5.0),
            judge(VISITOR, frames(("bob", 0.3), ("bob", 0.2)), started_at=1.0, duration=5.0),
        ]
    )
    return session


def test_operating_points_on_one_spot_stay_visible_and_legends_are_honest() -> None:
    import warnings

    from kiosk.trials.report import sweep_figure, tradeoff_figure

    session = _clean_session()
    sweep = sweep_thresholds(session.results, current=0.5, target_fpr=0.02)
    assert sweep.meets_target is not None and sweep.meets_target < 0.5
    axes = tradeoff_figure(sweep).axes[0]
    rings = [line for line in axes.lines if line.get_label().startswith(("in use", "research"))]
    lowest = [line for line in axes.lines if line.get_label().startswith("lowest")]
    assert len(rings) == 2 and len(lowest) == 1
    assert [tuple(line.get_xydata()[0]) for line in rings] == [(0.0, 0.0), (0.0, 0.0)]
    assert len({line.get_markersize() for line in rings}) == 2  # concentric, none hidden
    notes = [t.get_text() for t in axes.texts]
    assert any("0.5" in n and "0.8" in n for n in notes)  # the point names both thresholds
    labels = axes.get_legend_handles_labels()[1]
    assert "in use: 0.5" in labels and "research default: 0.8" in labels
    # With 0.8 in use, one mark says both, never "0.8 (0.8)".
    at_08 = sweep_thresholds(session.results, current=0.8, target_fpr=0.02)
    labels = tradeoff_figure(at_08).axes[0].get_legend_handles_labels()[1]
    assert "in use = research default: 0.8" in labels
    assert not any("(0.8)" in label for label in labels)
    # Nobody enrolled tried: FNR undefined everywhere, no curve, and no legend warning.
    strangers = [r for r in session.results if not r.participant.enrolled]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        empty = sweep_thresholds(strangers, current=0.8)
        axes = tradeoff_figure(empty).axes[0]
        assert axes.get_legend() is None and "undefined" in axes.texts[0].get_text()
        labels = sweep_figure(empty).axes[0].get_legend_handles_labels()[1]
    assert "FNR: undefined, no trials of enrolled people" in labels
    assert "FPR (95% band)" in labels
