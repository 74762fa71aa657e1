"""The CLIP recognizer's lifecycle from the people store: training from the store, warm
starts, staleness, erasure at once (memory and disk), renames, the background retrain."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from enroll.store import NewPhoto, PeopleStore
from kiosk import build
from kiosk.config import KioskConfig
from kiosk.training import train_from_store
from models.clip.bundle import load_bundle
from tests.helpers import ROOT, consent

TINY_CONFIG = ROOT / "tests" / "data" / "kiosk-tiny-rn.json"


def lifecycle_config(tmp_path: Path, **recognizer: object) -> KioskConfig:
    return KioskConfig.model_validate(
        {
            "clip": {"model": str(TINY_CONFIG), "pretrained": "none"},
            "train": {"epochs": 3, "min_images": 2},
            "models": {"device": "cpu"},
            "enroll": {"store_dir": str(tmp_path / "store")},
            "recognizer": {"bundle": str(tmp_path / "people.bundle"), **recognizer},
            "liveness": {"enabled": False},
        }
    )


def person_photos(seed: int, count: int = 5) -> list[NewPhoto]:
    """Crops of one made-up person: a colour of their own, and noise."""
    rng = np.random.default_rng(seed)
    colour = rng.integers(0, 255, 3)
    return [
        NewPhoto(
            np.clip(colour + rng.normal(0, 12, (224, 224, 3)), 0, 255).astype(np.uint8),
            pose="front",
        )
        for _ in range(count)
    ]


def enroll(config: KioskConfig, name: str, seed: int) -> str:
    with PeopleStore(config.enroll.store_dir) as store:  # type: ignore[arg-type]
        return store.add_person(name, person_photos(seed), consent()).uid


def train(config: KioskConfig) -> tuple[bool, int | None, dict[str, object]]:
    with PeopleStore(config.enroll.store_dir) as store:  # type: ignore[arg-type]
        done = train_from_store(config, store)
    return done.trained, done.version, done.report


@pytest.mark.torch
def test_training_from_the_store_records_its_state_and_warm_starts(tmp_path: Path) -> None:
    config = lifecycle_config(tmp_path)
    uids = {enroll(config, name, seed) for seed, name in enumerate(["Ana", "Bo", "Zoë"])}
    trained, version, report = train(config)
    assert trained and version == 1 and report["warm_start"] is False
    bundle = load_bundle(build.bundle_path(config))
    with PeopleStore(config.enroll.store_dir) as store:  # type: ignore[arg-type]
        state = store.state()
        cached = store._db.execute(
            "SELECT COUNT(*) FROM embeddings WHERE model LIKE 'clip-features:%'"
        ).fetchone()[0]
    assert set(bundle.person_ids) == uids and sorted(bundle.people) == ["Ana", "Bo", "Zoë"]
    assert bundle.source == {"kind": "store", "digest": state.digest}
    assert cached == 15  # every photo's features, cached in the store itself
    assert train(config)[:2] == (False, 1)  # trained from this state already: nothing to do

    enroll(config, "Dee", 7)
    trained, version, report = train(config)
    assert trained and version == 2 and report["warm_start"] is True
    assert len(load_bundle(build.bundle_path(config)).people) == 4


@pytest.mark.torch
def test_a_deleted_person_leaves_the_bundle_and_the_live_recognizer_at_once(
    tmp_path: Path,
) -> None:
    config = lifecycle_config(tmp_path, retrain=False, reload_poll_s=600)
    for seed, name in enumerate(["Ana", "Bo", "Zoë"]):
        enroll(config, name, seed)
    train(config)
    holder = build.recognizer_holder(config)
    try:
        assert sorted(holder.current().people) == ["Ana", "Bo", "Zoë"]
        with PeopleStore(config.enroll.store_dir) as other:  # another process's connection
            zoe = other.delete("Zoë")
            other.rename("Bo", "Bob")
        # The very next frame: no reload, no retrain, no poll.
        current = holder.current()
        assert sorted(current.people) == ["Ana", "Bob"]
        assert zoe not in current.person_ids  # type: ignore[attr-defined]
        # The rebuild that follows drops her from the bundle on disk as well.
        assert holder.reload_if_changed()
        path = build.bundle_path(config)
        assert zoe not in load_bundle(path).person_ids
        assert "Zoë".encode() not in path.read_bytes()
        assert sorted(holder.current().people) == ["Ana", "Bob"]
        with PeopleStore(config.enroll.store_dir) as store:  # type: ignore[arg-type]
            assert store.state().digest != load_bundle(path).source["digest"]  # stale: retrain
    finally:
        holder.stop()


@pytest.mark.torch
def test_no_bundle_yet_names_nobody_and_a_bundle_from_a_folder_is_used_as_it_is(
    tmp_path: Path,
) -> None:
    from kiosk.live.holder import NobodyEnrolled

    config = lifecycle_config(tmp_path, retrain=False)
    enroll(config, "Ana", 1)
    holder = build.recognizer_holder(config)
    try:
        assert isinstance(holder.current(), NobodyEnrolled)
    finally:
        holder.stop()


@pytest.mark.slow
@pytest.mark.torch
def test_the_background_retrain_runs_in_a_child_and_reports_progress(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The product's own path: `python -m kiosk train --from-store --progress` in a child
    process with the configuration from $KIOSK_CONFIG, as the door and the wizard run it."""
    from kiosk.live.retrain import Retrainer

    config = lifecycle_config(tmp_path)
    for seed, name in enumerate(["Ana", "Bo"]):
        enroll(config, name, seed)
    config_file = tmp_path / "kiosk.toml"
    config_file.write_text(
        f'[clip]\nmodel = "{TINY_CONFIG}"\npretrained = "none"\n'
        '[train]\nepochs = 3\nmin_images = 2\n[models]\ndevice = "cpu"\n',
        encoding="utf-8",
    )
    monkeypatch.setenv("KIOSK_CONFIG", str(config_file))
    retrainer = Retrainer.for_config(store=tmp_path / "store", bundle=build.bundle_path(config))
    seen: list[float] = []
    retrainer.request()
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        status = retrainer.status()
        seen.append(status.progress)
        if status.state in ("done", "failed") and not status.pending:
            break
        time.sleep(0.1)
    retrainer.stop()
    assert status.state == "done", status.message
    assert status.version == 1 and "knows 2 people" in status.message
    assert load_bundle(build.bundle_path(config)).source["kind"] == "store"
    assert max(seen) > 0.0  # progress came through before the end
    # A second request finds the bundle current and ends at once.
    retrainer.request()
    time.sleep(0.2)
    while retrainer.status().busy:
        time.sleep(0.1)
    assert retrainer.status().message == "the recognizer is up to date"
    retrainer.stop()


def test_the_default_recognizer_is_clip_and_old_kinds_say_what_they_became() -> None:
    from pydantic import ValidationError

    assert KioskConfig().recognizer.kind == "clip"
    with pytest.raises(ValidationError, match='now kind = "embedding_gallery"'):
        KioskConfig.model_validate({"recognizer": {"kind": "store"}})
    with pytest.raises(ValidationError, match="path was split in two"):
        KioskConfig.model_validate({"recognizer": {"kind": "clip", "path": "x.bundle"}})
    with pytest.raises(ValidationError, match="folder is for"):
        KioskConfig.model_validate({"recognizer": {"kind": "clip", "folder": "people"}})
