"""kiosk.training: the one CLIP bundle training entry point (`kiosk train`, `kiosk bench
core` and `kiosk bench live` train through it), on a tiny CLIP and ORL faces."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from kiosk.config import KioskConfig
from kiosk.training import people_in_folder, save_trained_bundle, train_bundle
from models.clip.bundle import load_bundle
from models.clip.classifier import onnx_tower_path
from models.errors import UserError


@pytest.fixture
def config(tiny_clip: str) -> KioskConfig:
    return KioskConfig.model_validate(
        {
            "clip": {"model": tiny_clip, "pretrained": "none"},
            "train": {"epochs": 3, "trainable_layers": 1, "learning_rate": 0.01},
        }
    )


def orl(shared: Callable[..., Path], count: int, photos: int) -> dict[str, list[Path]]:
    return {
        f"s{i}": sorted(shared("faces", "att_orl", f"s{i}").glob("*.pgm"))[:photos]
        for i in range(1, count + 1)
    }


def test_train_bundle_takes_photos_per_person_and_overrides(
    config: KioskConfig, shared: Callable[..., Path], tmp_path: Path
) -> None:
    logged: list[str] = []
    bundle, report = train_bundle(
        config,
        orl(shared, 3, 3),
        overrides={"epochs": 1, "min_images": 3},
        cache_dir=tmp_path / "cache",
        log=logged.append,
    )
    assert bundle.people == ["s1", "s2", "s3"]
    assert bundle.settings.epochs == 1  # the override, not the config's 3
    assert bundle.settings.threshold == config.clip.threshold
    assert report["people"] == 3 and report["usable_images"] == 9 and report["skipped"] == 0
    assert report["pretrained"] == "none"
    out = save_trained_bundle(bundle, tmp_path / "b" / "people.bundle", tmp_path / "cache")
    assert load_bundle(out).people == bundle.people
    # the tower exported while training, placed where ClipRecognizer.load looks for it
    assert onnx_tower_path(out, bundle.identity).is_file()


def test_too_few_people_is_a_user_error_naming_the_skipped(
    config: KioskConfig, shared: Callable[..., Path]
) -> None:
    from models.io import Skipped

    logged: list[str] = []
    people = orl(shared, 2, 2)
    with pytest.raises(UserError, match="nothing written: only 0 people have at least 3"):
        train_bundle(
            config,
            people,
            overrides={"min_images": 3},
            skipped=[Skipped("x/bad", "unsafe name")],
            log=logged.append,
        )
    people["s2"] = people["s2"][:1]
    with pytest.raises(UserError, match="nothing written: only 1 people have at least 2"):
        train_bundle(config, people, overrides={"min_images": 2}, log=logged.append)
    assert "skipped x/bad: unsafe name" in logged


def test_a_prompt_without_a_name_and_a_missing_folder_are_user_errors(
    config: KioskConfig, tmp_path: Path
) -> None:
    nameless = config.model_copy(
        update={"clip": config.clip.model_copy(update={"prompt": "a face"})}
    )
    with pytest.raises(UserError, match=r"no \{name\} placeholder"):
        train_bundle(nameless, {})
    with pytest.raises(UserError, match="does not exist"):
        people_in_folder(tmp_path / "none")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="has no person folders"):
        people_in_folder(tmp_path / "empty")


@pytest.mark.slow
def test_bench_core_train_one_and_stage_latency(
    config: KioskConfig, shared: Callable[..., Path], tmp_path: Path
) -> None:
    """`kiosk bench core`'s two halves in this process (its child processes could not see
    the tiny model): a training run's report, then stage latency on its bundle."""
    import json

    from kiosk.bench.core import stage_latency, train_one

    root = shared("faces").parent
    out = tmp_path / "train_10.json"
    train_one(config, 10, out, root, threads=1, max_photos=2, pretrained="none")
    report = json.loads(out.read_text())
    assert report["set"] == "att_orl" and report["max_photos"] == 2
    assert report["people"] == 10 and report["usable_images"] == 20
    stages = stage_latency(config, out.with_suffix(".npz"), root, 2, 1)
    assert stages["faces"] > 0 and stages["frames"] >= stages["faces"]
    assert set(stages["stage_ms"]) >= {"detect", "image_tower_onnx", "classify"}
    assert stages["onnx_vs_torch_max_abs_diff"] < 1e-3
