"""The door side end to end, headless: liveness vetoes in the pipeline, and people saved to
the store reaching a running pipeline without a restart."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray

from enroll.config import EnrollConfig
from enroll.store import PeopleStore
from kiosk.build import live_pipeline
from kiosk.config import EventsConfig, KioskConfig, LiveConfig, LivenessConfig, RecognizerConfig
from kiosk.live.events import EventLog, folder_names
from kiosk.live.liveness import LivenessMonitor
from kiosk.live.pipeline import LivePipeline
from models.antispoof import LivenessScore
from models.detector import Face
from tests.helpers import enroll_from_video


def events_of(folder: Path, names: dict[str, str] | None = None) -> list[str]:
    """The names of the logged events: a folder gallery's, or ``names`` (uid -> name)."""
    log = EventLog(folder)
    resolve = names or folder_names(["Printed Person"])
    return [event.name for event in log.read(resolve)] if log.path.exists() else []


@pytest.fixture
def spoof_setup(shared: Callable[..., Path], tmp_path: Path) -> tuple[Path, Path]:
    """A folder of frames that are the printed-photo spoof, and a gallery of that face."""
    frames, gallery = tmp_path / "frames", tmp_path / "gallery" / "Printed Person"
    frames.mkdir()
    gallery.mkdir(parents=True)
    spoof = shared("antispoof", "spoof_printed_photo.jpg")
    for index in range(3):
        shutil.copy(spoof, frames / f"{index}.jpg")
    shutil.copy(spoof, gallery / "a.jpg")
    return frames, gallery.parent


def spoof_config(gallery: Path, events: Path, liveness: LivenessConfig) -> KioskConfig:
    return KioskConfig(
        kiosk=LiveConfig(realtime=False, loop=True),
        events=EventsConfig(dir=events),
        recognizer=RecognizerConfig(kind="embedding_gallery", folder=gallery, reload=False),
        liveness=liveness,
    )


def test_a_printed_photo_of_an_enrolled_face_never_opens_the_door(
    spoof_setup: tuple[Path, Path], tmp_path: Path
) -> None:
    frames, gallery = spoof_setup
    guarded = live_pipeline(
        spoof_config(gallery, tmp_path / "guarded", LivenessConfig()), source=str(frames)
    )
    results = list(guarded.run(max_frames=24))
    assert all(track.label != "Printed Person" for r in results for track in r.tracks)
    assert results[-1].tracks and all(t.state == "not_live" for t in results[-1].tracks)
    assert all("liveness" in r.stage_ms for r in results)
    assert events_of(tmp_path / "guarded") == []
    # The same frames without liveness: the gallery does name the photo, and opens.
    open_door = live_pipeline(
        spoof_config(gallery, tmp_path / "open", LivenessConfig(enabled=False)),
        source=str(frames),
    )
    results = list(open_door.run(max_frames=6))
    assert any(t.label == "Printed Person" for r in results for t in r.tracks)
    assert "liveness" not in results[-1].stage_ms
    assert events_of(tmp_path / "open") == ["Printed Person"]


class BandChecker:
    """A liveness checker whose live probability the test sets (no model)."""

    model_count = 2

    def __init__(self, live: float) -> None:
        self.live = live

    def check(
        self, image: NDArray[np.uint8], face: Face, model: int | None = None
    ) -> LivenessScore:
        return LivenessScore(probs=(1.0 - self.live, self.live, 0.0))


def test_an_uncertain_face_waits_with_a_prompt_then_opens_once_live(
    spoof_setup: tuple[Path, Path], tmp_path: Path
) -> None:
    frames, gallery = spoof_setup
    settings = spoof_config(gallery, tmp_path / "events", LivenessConfig(enabled=False))
    pipeline = live_pipeline(settings, source=str(frames))
    checker = BandChecker(live=0.45)  # between spoof_threshold and live_threshold
    config = LivenessConfig(min_face_px=1)
    pipeline = LivePipeline(
        pipeline.source,
        pipeline.detector,
        pipeline.recognizers,
        pipeline.tracker,
        events=pipeline.events,
        liveness=LivenessMonitor(config, checker),  # type: ignore[arg-type]
    )
    waiting = list(pipeline.run(max_frames=8))[-1].tracks
    assert [(t.state, t.label, t.prompt) for t in waiting] == [
        ("pending", "Unknown", config.prompt)
    ]
    assert events_of(tmp_path / "events") == []
    checker.live = 0.99
    named = list(pipeline.run(max_frames=20))[-1].tracks
    assert [(t.state, t.label, t.prompt) for t in named] == [("recognized", "Printed Person", "")]
    assert events_of(tmp_path / "events") == ["Printed Person"]


@pytest.mark.slow
def test_a_person_saved_to_the_store_is_named_by_the_running_pipeline(
    shared: Callable[..., Path], tmp_path: Path
) -> None:
    store_dir = tmp_path / "people"
    settings = KioskConfig(
        kiosk=LiveConfig(realtime=True, loop=True),
        events=EventsConfig(dir=tmp_path / "events"),
        enroll=EnrollConfig(store_dir=store_dir),
        recognizer=RecognizerConfig(kind="embedding_gallery", reload_poll_s=0.2),
        liveness=LivenessConfig(enabled=False),
    )
    video = shared("videos", "solo_02.mp4")
    pipeline = live_pipeline(settings, source=str(video))
    detector = pipeline.detector
    pipeline.start()
    try:
        deadline = time.monotonic() + 20
        while (result := pipeline.latest()) is None or not result.tracks:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert result.notice.startswith("nobody is enrolled")
        assert all(t.state != "recognized" for t in result.tracks)
        enroll_from_video(store_dir, "Grace Hopper", video, detector)
        deadline = time.monotonic() + 30
        while not any(t.label == "Grace Hopper" for t in pipeline.latest().tracks):  # type: ignore[union-attr]
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert pipeline.recognizers.version == 2
        assert list(pipeline.recognizers.current().people) == ["Grace Hopper"]
        assert not pipeline.latest().notice  # type: ignore[union-attr]
    finally:
        pipeline.stop()
    with PeopleStore(store_dir) as store:
        names = store.state().names
    assert events_of(tmp_path / "events", names) == ["Grace Hopper"]


def test_check_now_reloads_without_waiting_for_the_poll(tmp_path: Path) -> None:
    from kiosk.live.holder import NobodyEnrolled, RecognizerHolder

    watched = tmp_path / "gallery"
    watched.mkdir()
    holder = RecognizerHolder(NobodyEnrolled, watched, poll_s=600)
    holder.start()
    try:
        (watched / "someone.txt").write_text("enrolled")
        holder.check_now()  # what the wizard's `enrolled` signal does
        deadline = time.monotonic() + 5
        while holder.version < 2:
            assert time.monotonic() < deadline, "the reload waited for the 600 s poll"
            time.sleep(0.02)
    finally:
        started = time.monotonic()
        holder.stop()
    assert time.monotonic() - started < 1  # stop wakes the watcher too
