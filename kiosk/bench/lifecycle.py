"""`kiosk bench live`'s lifecycle figures, measured on the door path while it runs.

Each figure runs the product's own door (:func:`kiosk.build.live_pipeline` over a people
store, a clip looped at camera speed standing in for the camera) and records every
result it publishes:

- ``save_to_named`` (:func:`save_to_named`): a door with ``people - 1`` people enrolled
  (photos of LFW people) and a CLIP bundle trained from them; a new person (the clip's)
  is saved into the store as the wizard saves (``add_person``, then
  ``check_recognizer``). The background retrain (kiosk/live/retrain.py: a child
  ``kiosk train --from-store``, warm-started, ``nice``) makes the bundle that holds them,
  the holder swaps it in; the figures are the seconds from Save to the first frame
  processed with that bundle, and to the first frame that names the new person. An
  untrained tower (``pretrained = "none"``, all these machines have) seldom clears the
  0.8 threshold, so then the naming is reported as not measurable, with what was seen.
- ``delete`` (:func:`delete_check`): the door names someone; they are deleted from the
  store; the figure is how many frames published after ``delete()`` returned still
  name them (and how many of those had begun before it returned). The embedding
  gallery names for real; the CLIP check runs with a threshold of 0 so the untrained
  tower names someone at all, and it also times the bundle file dropping them.

The retrain child reads its configuration from a TOML file written here
(:func:`config_toml`): the run's settings, with the store and bundle in a temporary
folder.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from enroll.store import Consent, NewPhoto, PeopleStore, utc_now
from kiosk.build import bundle_path, live_pipeline, photo_aligner
from kiosk.config import CONFIG_ENV, KioskConfig
from kiosk.live.results import FrameResult
from kiosk.live.sources import FrameSource
from models.errors import UserError
from models.io import ImageRefused, read_image, scan_people, split_images

if TYPE_CHECKING:
    from kiosk.live.pipeline import LivePipeline

GOAL_SAVE_TO_NAMED_S = 60.0
START_TIMEOUT_S = 300.0  # a door's first recognizer may export RN50's tower on a busy machine


# -- the configuration the door and its retrain child run with -----------------------


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # a JSON string is a TOML basic string
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"no TOML form for {value!r}")


def config_toml(config: KioskConfig) -> str:
    """``config`` as a TOML file :func:`kiosk.config.load_config` reads back to it."""
    lines: list[str] = []

    def table(name: str, values: dict[str, Any]) -> None:
        if name:
            lines.append(f"[{name}]")
        lines.extend(
            f"{key} = {_toml_value(value)}"
            for key, value in values.items()
            if not isinstance(value, dict)
        )
        for key, value in values.items():
            if isinstance(value, dict):
                table(f"{name}.{key}" if name else key, value)

    table("", config.model_dump(mode="json", exclude_none=True))
    return "\n".join(lines) + "\n"


def door_config(
    base: KioskConfig,
    work: Path,
    *,
    kind: str,
    retrain: bool,
    pretrained: str,
    threshold: float | None = None,
    epochs: int | None = None,
) -> KioskConfig:
    """``base`` as a door over a people store in ``work``: CLIP or the embedding gallery
    of the store, its bundle there too; no door events (they would open a door)."""
    clip = {"pretrained": pretrained, **({"threshold": threshold} if threshold is not None else {})}
    train = {"min_images": 2, **({"epochs": epochs} if epochs is not None else {})}
    return base.model_copy(
        update={
            "enroll": base.enroll.model_copy(update={"store_dir": work / "store"}),
            "recognizer": base.recognizer.model_copy(
                update={
                    "kind": kind,
                    "bundle": work / "people.bundle",
                    "folder": None,
                    "retrain": retrain,
                    "reload": True,
                }
            ),
            "clip": base.clip.model_copy(update=clip),
            "train": base.train.model_copy(update=train),
            "events": base.events.model_copy(update={"enabled": False}),
            "site": None,
        }
    )


@contextlib.contextmanager
def _environment(name: str, value: str) -> Iterator[None]:
    before = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = before


# -- what the door publishes -----------------------------------------------------------


@dataclass(frozen=True)
class Seen:
    """One published result, as far as these figures need it."""

    captured_at: float
    started_at: float  # when its processing began (published_at less its stages)
    published_at: float
    people: int  # in the recognizer it was processed with
    named: tuple[str, ...]  # the labels of its recognized tracks
    best: tuple[tuple[str | None, float | None], ...]  # each track's newest raw answer


class Recorder:
    """The pipeline's ``on_result``: keeps a :class:`Seen` of every result."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: list[Seen] = []

    def __call__(self, result: FrameResult) -> None:
        busy_s = result.stage_ms.get("total", 0.0) / 1000.0
        seen = Seen(
            captured_at=result.captured_at,
            started_at=result.published_at - busy_s,
            published_at=result.published_at,
            people=result.recognizer.people,
            named=tuple(t.label for t in result.tracks if t.state == "recognized"),
            best=tuple((t.raw_best, t.raw_confidence) for t in result.tracks),
        )
        with self._lock:
            self._seen.append(seen)

    def all(self) -> list[Seen]:
        with self._lock:
            return list(self._seen)

    def after(self, moment: float) -> list[Seen]:
        return [s for s in self.all() if s.published_at > moment]

    def wait_for(
        self, found: Callable[[Seen], bool], after: float, timeout_s: float
    ) -> Seen | None:
        """The first result published after ``after`` for which ``found``, waiting up to
        ``timeout_s`` for it."""
        deadline = time.monotonic() + timeout_s
        checked = 0
        while True:
            seen = self.all()
            for item in seen[checked:]:
                if item.published_at > after and found(item):
                    return item
            checked = len(seen)
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.02)


@contextlib.contextmanager
def running_door(
    config: KioskConfig, config_file: Path, video: Path | FrameSource
) -> Iterator[tuple[LivePipeline, Recorder]]:
    """The door pipeline the config describes, on ``video`` looped at camera speed (or on
    a given source). The retrain child (if any) is given ``config_file`` as its
    configuration."""
    from kiosk.live.sources import VideoFileSource

    source = (
        video
        if isinstance(video, FrameSource)
        else VideoFileSource(video, loop=True, realtime=True)
    )
    with _environment(CONFIG_ENV, str(config_file)):
        pipeline = live_pipeline(config, source=source)
    recorder = Recorder()
    pipeline.on_result = recorder
    pipeline.start()
    try:
        yield pipeline, recorder
    finally:
        pipeline.stop()


def door_figures(seen: Sequence[Seen]) -> dict[str, Any]:
    """FPS and latency of the door over ``seen``."""
    if len(seen) < 2:
        return {"frames": len(seen), "fps": None, "latency_p95_ms": None}
    span = seen[-1].published_at - seen[0].published_at
    latencies = [(s.published_at - s.captured_at) * 1000.0 for s in seen]
    return {
        "frames": len(seen),
        "fps": round((len(seen) - 1) / span, 2) if span > 0 else None,
        "latency_p50_ms": round(float(np.percentile(latencies, 50)), 1),
        "latency_p95_ms": round(float(np.percentile(latencies, 95)), 1),
    }


# -- people to enroll ------------------------------------------------------------------


def _consent() -> Consent:
    return Consent("bench", utc_now())


def clip_crops(
    video: Path, photos: int, align: Callable[[NDArray[np.uint8]], NDArray[np.uint8] | None]
) -> list[NDArray[np.uint8]]:
    """What the wizard would save of the clip's person: aligned crops of ``photos`` frames
    spread over the clip's first seconds."""
    from kiosk.bench.live import read_frames

    frames = read_frames(video, list(range(0, photos * 6, 6)))
    crops = [crop for crop in map(align, frames) if crop is not None]
    if len(crops) < 2:
        raise UserError(f"{video}: a face in only {len(crops)} of the sampled frames")
    return crops


def folder_people(
    folder: Path,
    count: int,
    photos: int,
    align: Callable[[NDArray[np.uint8]], NDArray[np.uint8] | None],
) -> dict[str, list[NDArray[np.uint8]]]:
    """``count`` people of a folder-per-person face set with at least 2 usable photos
    each, up to ``photos`` aligned crops of each."""
    people, _ = scan_people(folder)
    chosen: dict[str, list[NDArray[np.uint8]]] = {}
    for name, files in people.items():
        if len(chosen) == count:
            break
        crops = []
        for photo in split_images(files)[0]:
            with contextlib.suppress(ImageRefused):
                crop = align(read_image(photo))
                if crop is not None:
                    crops.append(crop)
            if len(crops) == photos:
                break
        if len(crops) >= 2:
            chosen[name] = crops
    if len(chosen) < count:
        raise UserError(f"{folder} has only {len(chosen)} people with 2 usable photos")
    return chosen


def enroll(store_dir: Path, people: dict[str, list[NDArray[np.uint8]]]) -> dict[str, str]:
    """Store each person (name -> crops); their uids by name."""
    with PeopleStore(store_dir) as store:
        return {
            name: store.add_person(
                name, [NewPhoto(crop, pose="front") for crop in crops], _consent()
            ).uid
            for name, crops in people.items()
        }


def train_store_bundle(config: KioskConfig, store_dir: Path) -> tuple[float, dict[str, Any]]:
    """Train the config's CLIP bundle from the store in this process: seconds, report."""
    from kiosk.training import train_from_store

    started = time.perf_counter()
    with PeopleStore(store_dir) as store:
        done = train_from_store(config, store)
    return time.perf_counter() - started, done.report


# -- from Save to named ----------------------------------------------------------------


def save_to_named(
    base: KioskConfig,
    video: Path,
    faces: Path,
    *,
    pretrained: str,
    people: int = 40,
    photos: int = 10,
    named_timeout_s: float = 30.0,
    swap_timeout_s: float = 900.0,
) -> dict[str, Any]:
    """The seconds from the wizard's Save of the clip's person to the first frame with
    the retrained bundle, and to the first frame naming them (module docstring)."""
    if people < 3:
        raise UserError("save-to-named needs at least 3 people (2 before the save)")
    with tempfile.TemporaryDirectory(prefix="bench-save-") as tmp:
        work = Path(tmp)
        config = door_config(base, work, kind="clip", retrain=True, pretrained=pretrained)
        config_file = work / "kiosk.toml"
        config_file.write_text(config_toml(config), encoding="utf-8")
        align = photo_aligner(config)
        newcomer = video.stem
        newcomer_crops = clip_crops(video, photos, align)
        others = folder_people(faces, people - 1, photos, align)
        enroll(work / "store", others)
        first_s, first_report = train_store_bundle(config, work / "store")
        report: dict[str, Any] = {
            "people": len(others) + 1,
            "photos_of_newcomer": len(newcomer_crops),
            "photos_of_others": sum(map(len, others.values())),
            "others_from": faces.name,
            "newcomer": newcomer,
            "pretrained": pretrained,
            "epochs": config.train.epochs,
            "first_training_s": round(first_s, 1),
            "first_training_images": first_report.get("usable_images"),
        }
        with running_door(config, config_file, video) as (pipeline, seen):
            warm = seen.wait_for(lambda s: s.people == len(others), -1.0, START_TIMEOUT_S)
            if warm is None:
                raise UserError(
                    f"the door did not start with the first bundle within {START_TIMEOUT_S:g} s"
                )
            time.sleep(2.0)  # steady state before the save
            before = seen.all()
            pressed = time.monotonic()
            with PeopleStore(work / "store") as store:
                store.add_person(
                    newcomer, [NewPhoto(c, pose="front") for c in newcomer_crops], _consent()
                )
            saved = time.monotonic()
            pipeline.check_recognizer()  # what the wizard does after a save
            retrain = _follow_retrain(pipeline, seen, len(others) + 1, pressed, swap_timeout_s)
            swap = seen.wait_for(lambda s: s.people == len(others) + 1, saved, 0.0)
            named = None
            if swap is not None:
                named = seen.wait_for(
                    lambda s: newcomer in s.named, saved, max(0.0, named_timeout_s)
                )
            end = time.monotonic()
        after_swap = [
            s for s in seen.all() if swap is not None and s.published_at >= swap.published_at
        ]
        report.update(
            {
                "save_s": round(saved - pressed, 3),
                **retrain,
                "save_to_bundle_live_s": _since(pressed, swap),
                "save_to_named_s": _since(pressed, named),
                "after_swap": _answers_for(after_swap, newcomer, end),
                "door_before_save": door_figures(before[-50:]),
                "door_during_retrain": door_figures(
                    [
                        s
                        for s in seen.all()
                        if saved < s.published_at < (swap.published_at if swap else end)
                    ]
                ),
            }
        )
        report["named_reason"] = _named_reason(report, pretrained, named_timeout_s)
        return report


def _since(start: float, seen: Seen | None) -> float | None:
    return round(seen.published_at - start, 2) if seen is not None else None


def _follow_retrain(
    pipeline: LivePipeline, seen: Recorder, people: int, pressed: float, timeout_s: float
) -> dict[str, Any]:
    """Watch the retrainer until the bundle with ``people`` is live (or the time is up):
    each change of its state, in seconds since Save."""
    retrainer = pipeline.retrainer
    states: list[tuple[float, str, str]] = []

    def note() -> None:
        if retrainer is None:
            return
        status = retrainer.status()
        if not states or states[-1][1] != status.state:
            states.append((round(time.monotonic() - pressed, 2), status.state, status.message))
        if status.state == "failed":
            raise UserError(f"the background retrain failed: {status.message}")

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        note()
        if seen.wait_for(lambda s: s.people == people, pressed, 0.0) is not None:
            break
        time.sleep(0.05)
    # The swap can be seen before the retrainer has said it is done (its child still
    # exiting, which a busy machine can take many seconds over): wait for that, within
    # the time given.
    settle = max(deadline, time.monotonic() + 5.0)
    while states and states[-1][1] == "training" and time.monotonic() < settle:
        time.sleep(0.05)
        note()
    began = next((t for t, state, _ in states if state == "training"), None)
    ended = next((t for t, state, _ in states if state == "done"), None)
    return {
        "save_to_retrain_start_s": began,
        "retrain_s": round(ended - began, 1) if began is not None and ended is not None else None,
        "retrain_states": [list(state) for state in states],
    }


def _answers_for(seen: Sequence[Seen], name: str, end: float) -> dict[str, Any]:
    """How the recognizer answered the newcomer's face once their bundle was live."""
    answers = [b for s in seen for b in s.best if b[0] is not None]
    theirs = [c for best, c in answers if best == name and c is not None]
    return {
        "frames": len(seen),
        "seconds": round(end - seen[0].published_at, 1) if seen else 0.0,
        "frames_naming_them": sum(name in s.named for s in seen),
        "answers": len(answers),
        "answers_best_is_them": len(theirs),
        "their_confidence_max": round(max(theirs), 3) if theirs else None,
        "any_confidence_max": (
            round(max(c for _, c in answers if c is not None), 3) if answers else None
        ),
    }


def _named_reason(report: dict[str, Any], pretrained: str, timeout_s: float) -> str:
    if report["save_to_named_s"] is not None:
        return ""
    if report["save_to_bundle_live_s"] is None:
        return "the retrained bundle did not go live in time"
    best = report["after_swap"]["their_confidence_max"]
    untrained = pretrained == "none"
    return (
        f"not named within {timeout_s:g} s of the swap; their highest confidence was "
        f"{best if best is not None else 'never the best'} against the threshold"
        + (
            ": the image tower is untrained (no RN50.pt here), so the naming is not "
            "measurable on this machine"
            if untrained
            else ""
        )
    )


# -- after a delete --------------------------------------------------------------------


def delete_check(
    base: KioskConfig,
    videos: Sequence[Path],
    kind: str,
    *,
    pretrained: str,
    photos: int = 10,
    wait_named_s: float = START_TIMEOUT_S,
    after_s: float = 3.0,
) -> dict[str, Any]:
    """Frames naming a person after their deletion returned (module docstring); the door
    plays ``videos[0]``, everyone in ``videos`` is enrolled."""
    clip = kind == "clip"
    with tempfile.TemporaryDirectory(prefix="bench-delete-") as tmp:
        work = Path(tmp)
        config = door_config(
            base,
            work,
            kind=kind,
            retrain=False,
            pretrained=pretrained,
            threshold=0.0 if clip else None,
            epochs=1 if clip else None,
        )
        config_file = work / "kiosk.toml"
        config_file.write_text(config_toml(config), encoding="utf-8")
        align = photo_aligner(config)
        uids = enroll(
            work / "store", {video.stem: clip_crops(video, photos, align) for video in videos}
        )
        if clip:
            train_store_bundle(config, work / "store")
        report: dict[str, Any] = {
            "recognizer": kind,
            "people": len(uids),
            "video": videos[0].name,
            "threshold": config.clip.threshold if clip else config.recognizer.gallery_threshold,
            "retrain": False,
        }
        bundle = bundle_path(config)
        with running_door(config, config_file, videos[0]) as (_, seen):
            named = seen.wait_for(lambda s: bool(s.named), -1.0, wait_named_s)
            if named is None:
                return {
                    **report,
                    "measured": False,
                    "reason": f"nobody named in {wait_named_s:g} s",
                }
            victim = named.named[0]
            with PeopleStore(work / "store") as store:
                asked = time.monotonic()
                store.delete(victim)
                returned = time.monotonic()
            dropped = _bundle_drops(bundle, uids[victim], after_s) if clip else None
            time.sleep(max(0.0, after_s - (time.monotonic() - returned)))
        after = seen.after(returned)
        naming = [s for s in after if victim in s.named]
        report.update(
            {
                "measured": True,
                "deleted": victim,
                "named_before_delete": sum(
                    victim in s.named for s in seen.all() if s.published_at <= asked
                ),
                "delete_s": round(returned - asked, 3),
                "frames_after_delete": len(after),
                "frames_after_delete_naming_them": len(naming),
                "of_which_begun_before_delete_returned": sum(
                    s.started_at <= returned for s in naming
                ),
                "first_frame_after_delete_people": after[0].people if after else None,
            }
        )
        if clip:
            report["bundle_file_drops_them_s"] = dropped
        return report


def _bundle_drops(bundle: Path, uid: str, timeout_s: float) -> float | None:
    """Seconds until the bundle file no longer holds ``uid`` (None: not within the time)."""
    from kiosk.build import current_bundle

    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        current = current_bundle(bundle)
        if current is not None and uid not in current.person_ids:
            return round(time.monotonic() - started, 3)
        time.sleep(0.02)
    return None
