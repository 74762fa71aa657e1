"""The zero-shot CLIP gallery as the kiosk's recognizer (``[recognizer] embedder = "clip"``):
CLIP's frozen image tower embeds the people store's photos; no training."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from enroll.store import PeopleStore
from kiosk.build import StoreGallery, gallery_embedder
from kiosk.config import KioskConfig
from kiosk.setup.first_run import needed_models
from models.clip import embedder as clip_embedder
from models.clip.embedder import ClipFaceEmbedder
from models.gallery import EmbeddingGallery
from models.paths import user_cache_dir
from tests.helpers import consent


def clip_config(tmp_path: Path, model: str, pretrained: str = "none") -> KioskConfig:
    return KioskConfig.model_validate(
        {
            "clip": {"model": model, "pretrained": pretrained},
            "recognizer": {
                "kind": "embedding_gallery",
                "embedder": "clip",
                "gallery_threshold": 0.99,
            },
            "enroll": {"store_dir": str(tmp_path / "store")},
        }
    )


def test_the_clip_gallery_needs_its_own_threshold() -> None:
    with pytest.raises(ValidationError, match="needs its own gallery_threshold"):
        KioskConfig.model_validate({"recognizer": {"embedder": "clip"}})
    given = {"recognizer": {"embedder": "clip", "gallery_threshold": 0.9}}
    assert KioskConfig.model_validate(given).recognizer.gallery_threshold == 0.9


def test_first_run_asks_for_the_clip_weights_until_the_tower_is_cached(tmp_path: Path) -> None:
    config = clip_config(tmp_path, "RN50", "openai")
    assert "clip_rn50_openai" in needed_models(config)
    assert "mobilefacenet_128d" not in needed_models(config)
    cached = ClipFaceEmbedder.tower_path("RN50", "openai", user_cache_dir() / "clip")
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"")
    assert "clip_rn50_openai" not in needed_models(config)


@pytest.mark.torch
def test_missing_clip_weights_say_which_file_and_the_fix(tmp_path: Path) -> None:
    from models.errors import ModelError

    config = clip_config(tmp_path, "RN50", "openai").model_copy(
        update={"models": KioskConfig().models.model_copy(update={"dir": tmp_path / "empty"})}
    )
    with pytest.raises(ModelError, match=r"RN50\.pt .*kiosk models fetch clip_rn50_openai"):
        gallery_embedder(config)
    assert not list((user_cache_dir() / "clip").glob("*"))  # nothing half-written


@pytest.mark.torch
def test_without_torch_the_uncached_tower_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The door bundle has no torch: it can only use a tower exported elsewhere."""
    from models.errors import ModelError

    monkeypatch.setitem(sys.modules, "open_clip", None)  # import open_clip: ImportError
    with pytest.raises(ModelError, match=r"open_clip is missing.*full installation"):
        gallery_embedder(clip_config(tmp_path, "RN50", "none"))


def test_store_recognizer_on_the_clip_gallery(
    tmp_path: Path,
    shared: Callable[..., Path],
    tiny_clip: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from kiosk.build import photo_aligner

    source = shared("faces", "faces94")
    people = sorted(p.name for p in source.iterdir() if not p.name.startswith("_"))[:3]
    folder = tmp_path / "in"
    for name in people:
        (folder / name).mkdir(parents=True)
        for image in sorted((source / name).iterdir())[:3]:
            shutil.copy(image, folder / name / image.name)
    config = clip_config(tmp_path, tiny_clip)
    with PeopleStore(tmp_path / "store") as store:
        store.import_folder(folder, consent(), align=photo_aligner(config))

    recognizers = StoreGallery(config)
    try:
        gallery = recognizers.build()
        assert isinstance(gallery, EmbeddingGallery)
        embedder = gallery.embedder
        assert isinstance(embedder, ClipFaceEmbedder)
        assert embedder.key == f"clip:{tiny_clip}:none:seed0"
        assert embedder.providers == ["CPUExecutionProvider"]
        assert sorted(gallery.people) == people
        store = recognizers.store
        for name in people:
            crops = [store.read_image(record) for record in store.photos(name)]
            predictions = gallery.predict(crops)  # the store's 224 crops are CLIP's input
            assert [p.name for p in predictions] == [name] * len(crops)
            assert min(p.confidence for p in predictions) > 0.999

        def no_embedding(crops: list[object]) -> np.ndarray:
            raise AssertionError("the embeddings should come from the store's cache")

        vectors, labels = store.embeddings(embedder.key, no_embedding)
        assert vectors.shape == (9, embedder.dim) and sorted(set(labels)) == people
    finally:
        recognizers.close()

    def no_torch(*args: object, **kwargs: object) -> None:
        raise AssertionError("the cached ONNX tower should be used")

    monkeypatch.setattr(clip_embedder, "build_clip", no_torch)
    again = gallery_embedder(config)
    assert isinstance(again, ClipFaceEmbedder)
    np.testing.assert_allclose(again.embed(crops), embedder.embed(crops), atol=1e-6)
