"""IoU tracking and the per-track vote, on synthetic faces (no model needed)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest

from kiosk.config import load_config
from kiosk.live.tracking import Tracker, TrackerSettings, TrackUpdate, match_boxes
from models.detector import Face
from models.errors import UserError
from models.recognition import Prediction

FRAME = np.zeros((480, 640, 3), np.uint8)


def face(x: float, y: float = 100.0, size: float = 100.0) -> Face:
    box = np.array([x, y, x + size, y + size], np.float32)
    return Face(box=box, score=0.9, kps=np.zeros((5, 2), np.float32))


def named(name: str, confidence: float = 0.9) -> Prediction:
    return Prediction(name=name, best=name, confidence=confidence)


def rejected(best: str = "ada", confidence: float = 0.3) -> Prediction:
    return Prediction(name=None, best=best, confidence=confidence)


def given(*predictions: Prediction) -> Callable[[Sequence[int]], list[Prediction]]:
    """A classifier answering ``predictions`` for faces 0, 1, ..."""
    return lambda indices: [predictions[i] for i in indices]


def feed(tracker: Tracker, predictions: list[Prediction], x: float = 100.0) -> list[TrackUpdate]:
    return [tracker.update(FRAME, [face(x)], given(p))[0] for p in predictions]


def test_a_single_frame_never_names_anyone() -> None:
    with pytest.raises(ValueError):
        TrackerSettings(min_frames=1, window=1)
    tracker = Tracker(TrackerSettings(min_frames=2, window=2))
    first, second = feed(tracker, [named("ada", 0.99)] * 2)
    assert first.view.state == "pending" and not first.announce
    assert second.view.state == "recognized" and second.announce


def test_name_needs_min_frames_agreeing_and_is_announced_once() -> None:
    tracker = Tracker(TrackerSettings(min_frames=3, window=5))
    updates = feed(tracker, [named("ada")] * 6)
    states = [u.view.state for u in updates]
    assert states == ["pending", "pending", "recognized", "recognized", "recognized", "recognized"]
    assert [u.announce for u in updates] == [False, False, True, False, False, False]
    assert updates[-1].view.label == "ada"
    assert updates[-1].view.confidence == pytest.approx(0.9)
    assert len({u.view.track_id for u in updates}) == 1


def test_disagreeing_frames_stay_pending() -> None:
    tracker = Tracker(TrackerSettings(min_frames=3, window=4))
    updates = feed(tracker, [named("ada"), named("bob"), named("ada"), named("bob")] * 2)
    assert all(u.view.state == "pending" and u.view.label == "Unknown" for u in updates)
    assert not any(u.announce for u in updates)


def test_a_stranger_becomes_unknown_and_is_never_announced() -> None:
    tracker = Tracker(TrackerSettings(min_frames=3, window=5))
    updates = feed(tracker, [rejected(), named("ada", 0.55), rejected(), rejected(), rejected()])
    assert updates[-1].view.state == "unknown"
    assert not any(u.announce for u in updates)


def test_confident_votes_outweigh_hesitant_ones() -> None:
    tracker = Tracker(TrackerSettings(min_frames=2, window=5))
    # two hesitant rejections (weight 0.2 each) against two confident names (0.95 each)
    updates = feed(tracker, [rejected(confidence=0.8)] * 2 + [named("ada", 0.95)] * 2)
    assert updates[-1].view.state == "recognized"


def test_decision_holds_through_a_stray_frame() -> None:
    tracker = Tracker(TrackerSettings(min_frames=3, window=6))
    updates = feed(tracker, [named("ada")] * 4 + [named("bob"), rejected()] + [named("ada")])
    assert [u.view.label for u in updates[3:]] == ["ada"] * 4


def test_two_faces_keep_their_own_tracks_and_a_lost_face_expires() -> None:
    tracker = Tracker(TrackerSettings(min_frames=2, window=4, max_missed=2))
    ids = []
    for step in range(4):  # two faces drifting slowly right
        updates = tracker.update(
            FRAME, [face(50 + 5 * step), face(400 + 5 * step)], given(named("ada"), named("bob"))
        )
        ids.append([u.view.track_id for u in updates])
    assert ids == [[1, 2]] * 4
    assert [u.view.label for u in updates] == ["ada", "bob"]
    for _ in range(3):  # the right face leaves for longer than max_missed
        tracker.update(FRAME, [face(70)], given(named("ada")))
    assert tracker.active_tracks == 1
    back = tracker.update(FRAME, [face(70), face(415)], given(named("ada"), named("bob")))
    assert [u.view.track_id for u in back] == [1, 3]
    assert back[1].view.state == "pending"  # a new track votes afresh


def test_veto_blocks_naming() -> None:
    vetoed: set[int] = {1}
    tracker = Tracker(
        TrackerSettings(min_frames=2, window=4),
        veto=lambda track_id, frame, face: track_id in vetoed,
    )
    updates = feed(tracker, [named("ada")] * 3)
    assert all(u.view.state == "not_live" and not u.announce for u in updates)
    vetoed.clear()  # the liveness check is satisfied: the votes already cast count
    update = feed(tracker, [named("ada")])[0]
    assert update.view.state == "recognized" and update.announce


def test_a_decided_track_is_reclassified_every_nth_frame() -> None:
    tracker = Tracker(TrackerSettings(min_frames=2, window=4, reclassify_every=3))
    asked: list[int] = []

    def classify(indices: Sequence[int]) -> list[Prediction]:
        asked.append(len(indices))
        return [named("ada")] * len(indices)

    states = [tracker.update(FRAME, [face(100)], classify)[0].view.state for _ in range(8)]
    assert asked == [1, 1, 1, 1]  # frames 1, 2 (pending), then every third: 5, 8
    assert states == ["pending"] + ["recognized"] * 7
    with pytest.raises(ValueError, match="predictions for 1 faces"):
        Tracker(TrackerSettings()).update(FRAME, [face(100)], lambda indices: [])


def test_an_undecided_track_is_classified_every_nth_frame_and_still_needs_min_frames() -> None:
    tracker = Tracker(TrackerSettings(min_frames=3, window=8, reclassify_every=4, pending_every=2))
    asked: list[int] = []

    def classify(indices: Sequence[int]) -> list[Prediction]:
        asked.append(len(indices))
        return [named("ada")] * len(indices)

    updates = [tracker.update(FRAME, [face(100)], classify)[0] for _ in range(6)]
    assert asked == [1, 1, 1]  # frames 1 (its first), 3 and 5; then decided (every 4th)
    assert [u.view.state for u in updates] == ["pending"] * 4 + ["recognized"] * 2
    assert [u.announce for u in updates] == [False] * 4 + [True, False]  # on the 3rd vote


def test_at_most_max_classify_faces_a_frame_undecided_and_longest_waiting_first() -> None:
    tracker = Tracker(TrackerSettings(min_frames=2, window=4, reclassify_every=2, max_classify=1))
    asked: list[list[int]] = []

    def classify(indices: Sequence[int]) -> list[Prediction]:
        asked.append(list(indices))
        return [named("ada" if i == 0 else "bo") for i in indices]

    faces = [face(100), face(400)]
    views = [[u.view for u in tracker.update(FRAME, faces, classify)] for _ in range(6)]
    # one face a frame: the two undecided tracks take turns, the one waiting longer first
    assert asked[:4] == [[0], [1], [0], [1]]
    assert all(len(a) == 1 for a in asked)
    assert [v.state for v in views[3]] == ["recognized", "recognized"]
    assert [v.label for v in views[3]] == ["ada", "bo"]
    assert [v.state for v in views[2]] == ["recognized", "pending"]  # bo has 1 vote only


def test_settings_are_validated(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        TrackerSettings(min_frames=5, window=3)
    for wrong in ({"pending_every": 0}, {"max_classify": -1}, {"reclassify_every": 0}):
        with pytest.raises(ValueError):
            TrackerSettings(**wrong)  # type: ignore[arg-type]
    config = tmp_path / "config.toml"
    config.write_text("[kiosk]\nmin_frames = 9\nwindow = 4\n")
    with pytest.raises(UserError, match="min_frames"):
        load_config(config)
    config.write_text('[events]\nurl = "ftp://door"\n')
    with pytest.raises(UserError, match=r"events\.url"):
        load_config(config)
    config.write_text("[kiosk]\nsorce = 'x'\n")
    with pytest.raises(UserError, match=r"unknown key 'kiosk\.sorce'"):
        load_config(config)
    config.write_text("")
    defaults = load_config(config)
    assert defaults.kiosk.detector_input_size == 320
    assert defaults.recognizer.kind == "clip" and defaults.events.enabled


def test_match_boxes_pairs_best_overlap_first_and_leaves_weak_pairs_unmatched() -> None:
    tracks = [face(100).box, face(300).box, face(500).box]
    faces = [face(310).box, face(105).box, face(120).box, face(900).box]
    # face 1 overlaps track 0 most; face 2 also overlaps it but less, and stays new;
    # face 3 overlaps nothing; track 2 finds no face.
    assert match_boxes(tracks, faces, 0.3) == {0: 1, 1: 0}
    assert match_boxes(tracks, faces, 0.99) == {}
    assert match_boxes([], faces, 0.3) == {} and match_boxes(tracks, [], 0.3) == {}


def test_retain_names_forgets_an_erased_name_at_once() -> None:
    tracker = Tracker(TrackerSettings(min_frames=2, window=4, reclassify_every=3))
    *_, last = feed(tracker, [named("zoë")] * 3)
    assert last.view.label == "zoë" and last.view.state == "recognized"
    tracker.retain_names({"ada"})  # zoë was deleted: no track keeps her name
    [update] = tracker.update(FRAME, [face(100.0)], given(rejected("ada")))
    assert update.view.label != "zoë" and update.view.raw_best != "zoë"
    assert update.view.state == "pending"
