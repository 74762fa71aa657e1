"""`kiosk bench churn` (kiosk/bench/churn.py): a door running while people are enrolled
and deleted at random, at tiny sizes. Correctness only: every enrolled person is named
in the end and nobody deleted is named by a frame begun after the delete returned; the
timings are the benchmark's, never asserted."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from kiosk.bench.churn import Churn, DoorScene, Person, churn
from kiosk.config import KioskConfig
from models.errors import UserError
from tests.helpers import tiny_door_config


def base_config() -> KioskConfig:
    return tiny_door_config(epochs=1)


def test_the_scene_holds_each_visitor_then_leaves_a_gap() -> None:
    photos = {name: np.full((4, 4, 3), value, np.uint8) for name, value in (("a", 10), ("b", 20))}
    visitors = iter(["a", "b", None])
    scene = DoorScene(photos, lambda: next(visitors), fps=1000.0, hold=2, gap=1)
    frames = [scene.read() for _ in range(7)]
    shown = [scene.visitor_at(f.captured_at) for f in frames if f is not None]
    assert shown == ["a", "a", None, "b", "b", None, None]
    assert frames[0] is not None and frames[0].image[0, 0, 0] == 10
    assert frames[2] is not None and frames[2].image.max() == 128  # nobody: an empty frame


def test_the_door_sees_the_deleted_once_then_those_waiting_to_be_named() -> None:
    people = {name: Person(name) for name in ("a", "b", "c")}
    state = Churn(people, random.Random(0))
    people["a"].saved_at = people["b"].saved_at = 1.0
    people["b"].named_at = 2.0
    people["c"].saved_at, people["c"].deleted_at, people["c"].delete_returned = 1.0, 3.0, 3.1
    assert state.pick() == "c" and people["c"].checked_at is not None  # just deleted: comes once
    assert [state.pick() for _ in range(3)] == ["a", "a", "a"]  # waiting to be named
    people["a"].named_at = 4.0
    assert {state.pick() for _ in range(30)} <= {"a", "b", "c"}  # then anyone


@pytest.mark.parametrize(
    ("people", "deletes", "kind"),
    [(1, 0, "embedding_gallery"), (3, 4, "embedding_gallery"), (3, 1, "fusion")],
)
def test_impossible_churns_are_refused_before_anything_runs(
    people: int, deletes: int, kind: str, tmp_path: Path
) -> None:
    with pytest.raises(UserError):
        churn(base_config(), tmp_path, kind=kind, people=people, deletes=deletes)


def _check(report: dict[str, object], people: int, deletes: int) -> None:
    summary = report["summary"]
    assert isinstance(summary, dict)
    assert summary["enrolled"] == people and summary["deleted"] == deletes
    assert summary["deleted_shown_after_delete"] == deletes  # the check is not vacuous
    assert summary["frames_naming_deleted_begun_after_delete"] == 0
    assert summary["frames_naming_deleted_in_flight_at_delete"] <= deletes


@pytest.mark.slow
def test_a_gallery_door_names_everyone_enrolled_and_no_one_deleted(
    shared: Callable[..., Path],
) -> None:
    report = churn(
        base_config(),
        shared("faces", "lfw_min10"),
        people=4,
        deletes=2,
        seed=3,
        photos=3,
        interval_s=0.5,
        named_timeout_s=60.0,
    )
    _check(report, 4, 2)
    summary = report["summary"]
    assert summary["named"] == 4  # every enrolled person, in the end
    rows = report["per_person"]
    assert all(row["save_to_named_s"] is not None for row in rows)
    assert sum("deleted" in row for row in rows) == 2


@pytest.mark.slow
@pytest.mark.torch
def test_a_clip_door_retrains_for_everyone_and_names_no_one_deleted(
    shared: Callable[..., Path], tiny_clip: str
) -> None:
    """The tiny untrained tower seldom clears 0.8, so naming is not asserted: the bundle
    the background retrain writes holds each person saved (until their delete)."""
    report = churn(
        base_config(),
        shared("faces", "lfw_min10"),
        kind="clip",
        people=3,
        deletes=1,
        seed=1,
        photos=3,
        interval_s=0.5,
        # each person's wait: in the bundle 5-6 s after Save on a quiet machine (the first
        # retrain, which starts a child, 12 s), never named by the untrained tower
        named_timeout_s=30.0,
        fps=8.0,  # the door's frames cost CPU for the whole wait; half of its 15 do
    )
    _check(report, 3, 1)
    kept = [row for row in report["per_person"] if "deleted" not in row]
    assert kept and all(row.get("save_to_bundle_s") is not None for row in kept)
