"""The live pipeline on real models and shared videos: replay, threads, hot reload."""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import pytest

from kiosk.build import live_pipeline, recognizer_factory
from kiosk.config import EventsConfig, KioskConfig, LiveConfig, LivenessConfig, RecognizerConfig
from kiosk.live.events import EventLog, folder_names
from kiosk.live.holder import RecognizerHolder
from kiosk.live.pipeline import LivePipeline
from models.recognition import Recognizer

ENROLLED = ("solo_01", "solo_02", "solo_03")
NO_LIVENESS = LivenessConfig(enabled=False)


def write_gallery(folder: Path, shared: Callable[..., Path], people: tuple[str, ...]) -> None:
    """A folder per person from a few frames of their video (the first 2 s)."""
    for person in people:
        capture = cv2.VideoCapture(str(shared("videos", f"{person}.mp4")))
        (folder / person).mkdir(parents=True)
        for index in range(50):
            ok, frame = capture.read()
            assert ok
            if index % 16 == 0:
                cv2.imwrite(str(folder / person / f"{index:03d}.jpg"), frame)
        capture.release()


@pytest.fixture(scope="module")
def gallery(shared: Callable[..., Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("gallery")
    write_gallery(folder, shared, ENROLLED)
    return folder


def config(gallery: Path, tmp_path: Path, **live: object) -> KioskConfig:
    return KioskConfig(
        kiosk=LiveConfig(realtime=False, **live),  # type: ignore[arg-type]
        events=EventsConfig(dir=tmp_path / "events"),
        recognizer=RecognizerConfig(kind="embedding_gallery", folder=gallery, reload_poll_s=0.2),
        liveness=NO_LIVENESS,  # tests/kiosk/test_door.py covers the pipeline with liveness
    )


def tracks_of(pipeline: LivePipeline, max_frames: int | None = None) -> dict[int, list[str]]:
    labels: dict[int, list[str]] = defaultdict(list)
    for result in pipeline.run(max_frames):
        assert set(result.stage_ms) >= {"decode", "detect", "align", "classify", "track"}
        assert result.providers and result.latency_ms > 0
        for track in result.tracks:
            labels[track.track_id].append(track.label if track.state == "recognized" else "-")
    return labels


@pytest.mark.slow
def test_replay_gives_one_stable_identity_per_track(
    gallery: Path, shared: Callable[..., Path], tmp_path: Path
) -> None:
    settings = config(gallery, tmp_path)
    pipeline = live_pipeline(settings, source=str(shared("videos", "solo_01.mp4")))
    tracks = tracks_of(pipeline)
    assert sum(len(labels) for labels in tracks.values()) >= 70  # a face in nearly every frame
    main = max(tracks.values(), key=len)
    for labels in tracks.values():
        assert len(set(labels) - {"-"}) <= 1, labels  # never two names on one track
        named = labels.index("solo_01") if "solo_01" in labels else len(labels)
        assert all(label == "solo_01" for label in labels[named:])  # once named, stays named
    assert main[: settings.kiosk.min_frames - 1] == ["-"] * (settings.kiosk.min_frames - 1)
    assert main.count("solo_01") >= len(main) - 10
    events = EventLog(tmp_path / "events").read(folder_names(ENROLLED))
    assert [event.name for event in events] == ["solo_01"]
    assert b"solo_01" not in (tmp_path / "events" / "events.jsonl").read_bytes()
    assert (tmp_path / "events" / events[0].thumbnail).is_file()


@pytest.mark.slow
def test_a_stranger_is_never_named(
    gallery: Path, shared: Callable[..., Path], tmp_path: Path
) -> None:
    pipeline = live_pipeline(config(gallery, tmp_path), source=str(shared("videos", "solo_05.mp4")))
    tracks = tracks_of(pipeline, max_frames=80)
    assert tracks and all(set(labels) == {"-"} for labels in tracks.values())
    assert EventLog(tmp_path / "events").read() == []


def live_threads() -> set[str]:
    names = {"capture", "inference", "recognizer-reload", "door-hooks"}
    return {t.name for t in threading.enumerate() if t.name in names}


def test_threads_publish_newest_results_and_stop_joins_them(
    gallery: Path, shared: Callable[..., Path], tmp_path: Path
) -> None:
    settings = KioskConfig(
        kiosk=LiveConfig(loop=True, realtime=True),
        events=EventsConfig(dir=tmp_path / "events", url="http://127.0.0.1:9/door"),
        recognizer=RecognizerConfig(kind="embedding_gallery", folder=gallery),
        liveness=NO_LIVENESS,
    )
    pipeline = live_pipeline(settings, source=str(shared("videos", "solo_01.mp4")))
    pipeline.start()
    try:
        deadline = time.monotonic() + 20
        while (result := pipeline.latest()) is None or result.frame_index < 40:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert "inference" in live_threads() and "capture" in live_threads()
        assert result.fps > 0 and result.latency_ms < 1000
        assert pipeline.latest() is result or pipeline.latest().frame_index > result.frame_index  # type: ignore[union-attr]
    finally:
        pipeline.stop()
    assert live_threads() == set()


def test_missing_camera_shows_status_and_stops_cleanly(gallery: Path, tmp_path: Path) -> None:
    settings = KioskConfig(
        kiosk=LiveConfig(source="7", retry_initial_s=0.1, retry_max_s=0.2),
        events=EventsConfig(dir=tmp_path / "events"),
        recognizer=RecognizerConfig(kind="embedding_gallery", folder=gallery, reload=False),
        liveness=NO_LIVENESS,
    )
    pipeline = live_pipeline(settings)
    pipeline.start()
    try:
        deadline = time.monotonic() + 5
        while "no camera at index 7" not in pipeline.status():
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert pipeline.latest() is None and not pipeline.finished.is_set()
    finally:
        started = time.monotonic()
        pipeline.stop()
    assert time.monotonic() - started < 2 and live_threads() == set()


def test_nobody_enrolled_runs_and_says_so(shared: Callable[..., Path], tmp_path: Path) -> None:
    pipeline = live_pipeline(
        config(tmp_path / "no-gallery-yet", tmp_path), source=str(shared("videos", "solo_01.mp4"))
    )
    results = list(pipeline.run(max_frames=5))
    assert results[-1].notice.startswith("nobody is enrolled")
    assert all(track.state != "recognized" for r in results for track in r.tracks)


@pytest.mark.slow
def test_hot_reload_swaps_the_recognizer_without_stalling_video(
    shared: Callable[..., Path], tmp_path: Path
) -> None:
    folder = tmp_path / "gallery"
    write_gallery(folder, shared, ("solo_02",))
    settings = config(folder, tmp_path, loop=True)
    build = recognizer_factory(settings)
    building = threading.Event()

    def slow_build() -> Recognizer:
        building.set()
        time.sleep(1.5)  # a big bundle: the video must go on meanwhile
        return build()

    pipeline = live_pipeline(settings, source=str(shared("videos", "solo_01.mp4")))
    pipeline.recognizers = RecognizerHolder(slow_build, folder, poll_s=0.1, initial=build())
    assert list(pipeline.recognizers.current().people) == ["solo_02"]
    pipeline.start()
    try:
        while pipeline.latest() is None:
            time.sleep(0.05)
        write_gallery(folder, shared, ("solo_01",))  # someone enrolls
        assert building.wait(10)
        before = pipeline.latest()
        time.sleep(1.0)
        during = pipeline.latest()
        assert before is not None and during is not None
        assert during.frame_index - before.frame_index >= 5  # frames kept flowing
        deadline = time.monotonic() + 20
        while pipeline.recognizers.version < 2:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert list(pipeline.recognizers.current().people) == ["solo_01", "solo_02"]
        deadline = time.monotonic() + 20
        while not any(t.label == "solo_01" for t in pipeline.latest().tracks):  # type: ignore[union-attr]
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        pipeline.stop()


def test_stage_timings_add_up(gallery: Path, shared: Callable[..., Path], tmp_path: Path) -> None:
    pipeline = live_pipeline(config(gallery, tmp_path), source=str(shared("videos", "solo_01.mp4")))
    classified = []
    for result in pipeline.run(max_frames=6):
        stages = result.stage_ms
        # the tracker's own time is left once align and classify are taken out of its lap
        assert stages["detect"] > 0 and stages["track"] > 0
        classified.append(stages["classify"] > 0)
        parts = sum(v for k, v in stages.items() if k not in ("decode", "total"))
        assert parts == pytest.approx(stages["total"])
        assert stages["total"] <= result.latency_ms + 1e-6
    # every frame until the track is decided (3), then every third (reclassify_every)
    assert classified == [True, True, True, False, False, True]


def test_a_video_that_ends_says_so_and_one_that_loops_goes_on(
    gallery: Path, shared: Callable[..., Path], tmp_path: Path
) -> None:
    """solo_01 has 78 frames: without [kiosk] loop the window is told the video has ended
    and how to loop it (not "camera lost: reconnecting"); with it, frames keep coming."""
    video = str(shared("videos", "solo_01.mp4"))
    pipeline = live_pipeline(config(gallery, tmp_path, source=video))
    pipeline.start()
    try:
        assert pipeline.finished.wait(60)
        said = pipeline.status()
    finally:
        pipeline.stop()
    assert said == (
        "video solo_01.mp4 has ended: set loop = true under [kiosk] in the config to play it "
        "in a loop"
    )
    looping = live_pipeline(config(gallery, tmp_path, source=video, loop=True))
    try:
        indices = [result.frame_index for result in looping.run(max_frames=100)]
    finally:
        looping.stop()
    assert len(indices) == 100 and not looping.source.finished
    assert "ended" not in looping.status() and "lost" not in looping.status()


def test_the_configured_cadence_reaches_the_door(
    gallery: Path, shared: Callable[..., Path], tmp_path: Path
) -> None:
    """`[kiosk] pending_every` and `max_classify` from the config drive the door's tracker."""
    settings = config(gallery, tmp_path, pending_every=2, max_classify=1)
    pipeline = live_pipeline(settings, source=str(shared("videos", "solo_01.mp4")))
    assert (pipeline.tracker.settings.pending_every, pipeline.tracker.settings.max_classify) == (
        2,
        1,
    )
    results = list(pipeline.run(max_frames=8))
    classified = [result.stage_ms["classify"] > 0 for result in results]
    # undecided: its first frame, then every second; decided on the 3rd vote (frame 5),
    # then every third frame (reclassify_every)
    assert classified == [True, False, True, False, True, False, False, True]
    states = [result.tracks[0].state for result in results]
    assert states[:4] == ["pending"] * 4 and states[4:] == ["recognized"] * 4


def test_someone_erased_while_a_frame_is_classified_is_not_named_by_it(
    gallery: Path, shared: Callable[..., Path], tmp_path: Path
) -> None:
    """The door asks who is enrolled again before it publishes a frame: erased between
    its classification and its result, a person is not shown by it, nor let in."""
    pipeline = live_pipeline(config(gallery, tmp_path), source=str(shared("videos", "solo_01.mp4")))
    real = pipeline.recognizers
    everyone = real.current()
    assert "solo_01" in everyone.people
    erased = everyone.without({"solo_01"})  # type: ignore[attr-defined]

    class Holder:
        """The real holder, whose recognizer loses solo_01 once frame 3 is classified."""

        now = everyone

        def current(self) -> object:
            return self.now

        def __getattr__(self, name: str) -> object:
            return getattr(real, name)

    holder = Holder()
    pipeline.recognizers = holder  # type: ignore[assignment]
    update, frames = pipeline.tracker.update, []

    def update_then_erase(*args: Any) -> Any:
        updates = update(*args)
        frames.append(1)
        if len(frames) == 3:  # the frame whose third vote decides solo_01
            holder.now = erased
        return updates

    pipeline.tracker.update = update_then_erase  # type: ignore[method-assign]
    results = list(pipeline.run(max_frames=6))
    assert [r.tracks[0].state for r in results[:2]] == ["pending", "pending"]
    assert not any(t.label == "solo_01" for r in results for t in r.tracks)
    assert not any(t.raw_best == "solo_01" for r in results[2:] for t in r.tracks)
    assert EventLog(tmp_path / "events").read() == []  # no door opened for them
