"""`kiosk bench live` writes the figures it promises (not their values: timings vary)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from kiosk.cli import main


@pytest.mark.slow
def test_bench_live_writes_json(shared: Callable[..., Path], tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    video = shared("videos", "solo_01.mp4")
    argv = ["bench", "live", "--json", str(out), "--videos", str(video), "--max-frames", "12"]
    assert main([*argv, "--no-reference", "--no-clip", "--no-lifecycle"]) == 0
    report = json.loads(out.read_text())
    assert report["fps"] > 0 and report["latency_p50_ms"] <= report["latency_p95_ms"]
    assert report["gallery"]["fast"]["results"] == 12  # fast mode processes every frame
    assert report["gallery"]["fast"]["mean_faces_per_frame"] == 1.0
    assert report["gallery"]["fast"]["mean_stage_ms"]["detect"] > 0
    camera = report["gallery"]["camera"]
    assert camera["results"] + camera["dropped_frames"] == camera["frames_read"] >= 12
    assert report["reference_fps"] is None and report["clip"] is None
    assert report["clip_int8"] is None and "save_to_named" not in report
    assert 0 < report["rss_start_mb"] <= report["rss_after_gallery_mb"]
    assert report["rss_end_mb"] > 0
    assert set(report["goals"]["gallery"]) == {
        "fps_at_least_15",
        "twice_reference_fps",
        "camera_p95_at_most_150_ms",
        "camera_fps_at_least_25",
        "camera_p95_at_most_100_ms",
    }


def test_bench_live_missing_clip_is_a_user_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "none.mp4"
    argv = ["bench", "live", "--json", str(tmp_path / "b.json"), "--videos", str(missing)]
    assert main(argv) == 2
    assert f"clip {missing} does not exist" in capsys.readouterr().err


@pytest.mark.slow
def test_bench_live_clip_runs_the_clip_recognizer(
    shared: Callable[..., Path], tmp_path: Path, tiny_clip: str
) -> None:
    """The ``clip`` and ``clip_int8`` figures are the door's CLIP recognizer over a bundle
    trained from a people store of the enrolled frames (a tiny open_clip model here, RN50
    by default), its image tower in fp32 and in int8 calibrated on the store's crops."""
    config = tmp_path / "config.toml"
    config.write_text(f'[clip]\nmodel = "{tiny_clip}"\n', encoding="utf-8")
    out = tmp_path / "bench.json"
    videos = [str(shared("videos", f"solo_0{i}.mp4")) for i in (1, 2)]
    argv = ["--config", str(config), "bench", "live", "--json", str(out), "--videos", *videos]
    assert main([*argv, "--max-frames", "6", "--no-reference", "--no-lifecycle"]) == 0
    report = json.loads(out.read_text())
    assert report["clip_untrained_because"]  # no RN50.pt: says why the tower is untrained
    for key, precision in (("clip", "fp32"), ("clip_int8", "int8")):
        clip = report[key]
        assert clip["precision"] == precision
        assert clip["recognizer"].startswith("ClipRecognizer from the people store, ")
        assert "pretrained none (untrained)" in clip["recognizer"]
        assert clip["recognizer"].endswith(f"ONNX tower {precision}")
        assert clip["fast"]["results"] == 12 and clip["fast"]["mean_faces_per_frame"] == 1.0
        assert clip["fast"]["mean_stage_ms"]["classify"] > 0
        assert clip["providers"] == ["CPUExecutionProvider"]  # the ONNX tower, not torch
        assert report["goals"][key]["camera_fps_at_least_25"] in (True, False)


def test_bench_live_refuses_too_few_people_for_the_lifecycle(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["bench", "live", "--json", str(tmp_path / "b.json"), "--people", "2"]
    assert main(argv) == 2
    assert "--people must be at least 3" in capsys.readouterr().err
    assert not (tmp_path / "b.json").exists()


def test_bench_live_lifecycle_needs_two_clips_and_says_so_before_measuring(
    shared: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    video = str(shared("videos", "solo_01.mp4"))
    argv = ["bench", "live", "--json", str(tmp_path / "b.json"), "--videos", video]
    assert main([*argv, "--no-reference"]) == 2
    assert "need two clips at least" in capsys.readouterr().err
    assert not (tmp_path / "b.json").exists()


@pytest.mark.slow
def test_bench_live_without_clip_checks_the_gallerys_delete_only(
    shared: Callable[..., Path], tmp_path: Path
) -> None:
    out = tmp_path / "bench.json"
    videos = [str(shared("videos", f"solo_0{i}.mp4")) for i in (1, 2)]
    argv = ["bench", "live", "--json", str(out), "--videos", *videos, "--max-frames", "6"]
    assert main([*argv, "--no-reference", "--no-clip"]) == 0
    report = json.loads(out.read_text())
    assert report["save_to_named"] is None and "--no-clip" in report["save_to_named_reason"]
    (check,) = report["delete"].values()
    assert check["recognizer"] == "embedding_gallery" and check["measured"]
    in_flight = check["of_which_begun_before_delete_returned"]  # see test_bench_lifecycle.py
    assert check["frames_after_delete_naming_them"] - in_flight == 0 and in_flight <= 1
    assert set(report["goals"]["delete"]) == {"embedding_gallery_no_frame_names_them_after_delete"}
