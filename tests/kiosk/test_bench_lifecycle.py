"""`kiosk bench live`'s lifecycle figures (kiosk/bench/lifecycle.py): that they measure
what they say on the product's door path, at tiny sizes (their values are timings and
are not asserted, except the ones that are correctness: nobody named after a delete)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from kiosk.bench.lifecycle import config_toml, door_config, save_to_named
from kiosk.config import KioskConfig, load_config
from tests.helpers import tiny_door_config


def base_config() -> KioskConfig:
    return tiny_door_config(epochs=2)


def test_the_retrain_childs_config_file_reads_back_to_the_door_config(tmp_path: Path) -> None:
    config = door_config(
        base_config(), tmp_path, kind="clip", retrain=True, pretrained="none", threshold=0.5
    )
    file = tmp_path / "kiosk.toml"
    file.write_text(config_toml(config), encoding="utf-8")
    again = load_config(file)
    assert again == config
    assert again.enroll.store_dir == tmp_path / "store" and again.clip.threshold == 0.5
    assert again.recognizer.retrain and not again.events.enabled


@pytest.mark.slow
@pytest.mark.torch
@pytest.mark.parametrize("kind", ["embedding_gallery", "clip"])
def test_after_a_delete_no_frame_begun_after_it_names_them(
    kind: str, shared: Callable[..., Path]
) -> None:
    from kiosk.bench.lifecycle import delete_check

    videos = [shared("videos", f"solo_0{i}.mp4") for i in (1, 2)]
    report = delete_check(base_config(), videos, kind, pretrained="none", photos=4, after_s=1.5)
    assert report["measured"], report.get("reason")
    assert report["deleted"] in {"solo_01", "solo_02"} and report["named_before_delete"] > 0
    assert report["frames_after_delete"] > 5
    # a frame already past the recognizer when delete() returned may still name them;
    # none begun after it does
    in_flight = report["of_which_begun_before_delete_returned"]
    assert report["frames_after_delete_naming_them"] - in_flight == 0
    assert in_flight <= 1  # the door checks the store again just before it publishes
    assert report["first_frame_after_delete_people"] == 1
    if kind == "clip":
        assert report["bundle_file_drops_them_s"] is not None  # the file forgets them too


@pytest.mark.slow
@pytest.mark.torch
def test_save_to_named_follows_the_background_retrain_to_the_swap(
    shared: Callable[..., Path],
) -> None:
    """Three people (two from LFW, the clip's person saved while the door runs): the
    retrain child makes their bundle and the door swaps it in."""
    report = save_to_named(
        base_config(),
        shared("videos", "solo_01.mp4"),
        shared("faces", "lfw_min10"),
        pretrained="none",
        people=3,
        photos=3,
        named_timeout_s=2.0,
        swap_timeout_s=240.0,
    )
    assert report["people"] == 3 and report["newcomer"] == "solo_01"
    states = [state for _, state, _ in report["retrain_states"]]
    assert "training" in states and states[-1] == "done", report["retrain_states"]
    assert report["retrain_s"] is not None and report["retrain_s"] > 0
    live = report["save_to_bundle_live_s"]
    assert live is not None and live > report["save_to_retrain_start_s"] >= 0.0
    assert report["after_swap"]["frames"] > 0
    assert report["door_before_save"]["frames"] > 1
    if report["save_to_named_s"] is None:  # an untrained tiny tower seldom clears 0.8
        assert "untrained" in report["named_reason"]
    else:
        assert report["save_to_named_s"] >= live and report["named_reason"] == ""
