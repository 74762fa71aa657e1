"""The simulation's CLIP recognizer (kiosk/trials/recognizers.py) on the tiny CLIP: every
bundle trained from the same weights and the same features, the tower's memory."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

from kiosk.trials.recognizers import CannotBuild, ClipFactory, RememberingTower
from tests.helpers import train_settings


def person(seed: int, count: int = 5) -> list[np.ndarray]:
    """Crops of one synthetic person: a base image and small variations of it."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, (224, 224, 3)).astype(np.int16)
    return [
        np.clip(base + rng.integers(-12, 12, base.shape), 0, 255).astype(np.uint8)
        for _ in range(count)
    ]


@pytest.fixture
def factory(tiny_clip: str, tmp_path: Path) -> ClipFactory:
    from models.clip.towers import OnnxImageTower, build_clip, export_image_tower
    from models.train.bundle import DetectorRecord

    model, identity = build_clip(tiny_clip, "none", None)
    tower = OnnxImageTower(export_image_tower(model.visual, tmp_path / "t.onnx"), device="cpu")
    settings = train_settings(epochs=3, device="cpu")
    return ClipFactory(
        model, identity, tower, settings, DetectorRecord("scrfd_2.5g", 320), threshold=0.8
    )


def test_every_bundle_starts_from_the_same_weights_and_features(factory: ClipFactory) -> None:
    photos = {"ada": person(1), "bob": person(2), "cy": person(3)}
    first, details = factory.train(photos, 1)
    assert details["people"] == ["ada", "bob", "cy"] and details["version"] == 1
    assert details["train_images"] + details["test_images"] == 15
    encoded = factory.tower.encoded
    assert encoded == 15  # each enrollment crop through the tower once
    held_out, _ = factory.train({k: v for k, v in photos.items() if k != "bob"}, 2)
    assert held_out.people == ["ada", "cy"] and held_out.version == 2
    again, _ = factory.train(photos, 3)
    # The finetuning changed the text tower in place; it is put back after each bundle,
    # so training from everyone again gives the first bundle (not one warm-started from
    # the held-out one).
    np.testing.assert_allclose(
        again.bundle.text_embeddings, first.bundle.text_embeddings, rtol=1e-4, atol=1e-5
    )
    assert factory.tower.encoded == encoded  # no feature computed twice
    # Recognition of crops the tower has seen costs no tower pass.
    predictions = first.predict(photos["cy"][:2])
    assert factory.tower.encoded == encoded
    assert {p.best for p in predictions} <= {"ada", "bob", "cy"}
    assert factory.untrained and factory.description.endswith("UNTRAINED")


def test_one_person_makes_no_clip_bundle(factory: ClipFactory) -> None:
    with pytest.raises(CannotBuild, match="at least 2 are needed"):
        factory.train({"ada": person(1)}, 1)


def test_the_remembering_tower_runs_each_input_once() -> None:
    class Counting:
        providers: ClassVar[list[str]] = ["test"]
        dim = 2

        def __init__(self) -> None:
            self.rows = 0

        def encode(self, blob: np.ndarray) -> np.ndarray:
            self.rows += len(blob)
            return blob.reshape(len(blob), -1)[:, :2].copy()

    inner = Counting()
    tower = RememberingTower(inner)
    a = np.arange(12, dtype=np.float32).reshape(2, 6)
    b = np.arange(12, 24, dtype=np.float32).reshape(2, 6)
    first = tower.encode(a)
    both = tower.encode(np.concatenate([b, a]))
    assert inner.rows == 4 and tower.encoded == 4
    np.testing.assert_array_equal(both, np.concatenate([b[:, :2], a[:, :2]]))
    np.testing.assert_array_equal(first, a[:, :2])
