"""`kiosk bench quantize` writes the comparison it promises, at tiny sizes (the figures'
values are not asserted beyond their ranges: they are the benchmark's to report)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from kiosk.cli import main
from tests.helpers import ROOT

TINY_CONFIG = ROOT / "tests" / "data" / "kiosk-tiny-rn.json"


@pytest.mark.slow
@pytest.mark.torch
def test_bench_quantize_judges_mobilefacenet_and_says_why_clip_is_not_judged(
    shared: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "config.toml"
    config.write_text(f'[clip]\nmodel = "{TINY_CONFIG}"\npretrained = "none"\n', encoding="utf-8")
    out = tmp_path / "quantize.json"
    argv = ["--config", str(config), "bench", "quantize", "--json", str(out)]
    assert main([*argv, "--people", "4", "--photos", "3", "--reps", "2"]) == 0
    report = json.loads(out.read_text())
    assert report["gallery_images"] == 8 and report["images"] > report["gallery_images"]
    mfn = report["mobilefacenet"]
    assert mfn["calibration_crops"] == 8 and mfn["int8_mb"] < mfn["fp32_mb"] / 2
    quality = mfn["quality"]
    assert quality["probes"] == report["images"] - 8 and quality["gallery"] == 8
    assert 0.0 <= quality["top1_agreement"] <= 1.0
    assert 0.9 < quality["cosine_min"] <= quality["cosine_mean"] <= 1.0 + 1e-6
    clip = report["clip"]
    assert clip["quality"] is None and 'pretrained = "none"' in clip["quality_reason"]
    assert clip["speed"][0]["threads"] == 2 and clip["speed"][0]["int8_ms"] > 0
    assert report["goals"]["clip"]["top1_agreement_at_least_99"] is None
    assert isinstance(report["goals"]["mobilefacenet"]["top1_agreement_at_least_99"], bool)
    printed = json.loads(capsys.readouterr().out)
    assert printed["mobilefacenet"] == quality
    assert printed["clip"].startswith("quality skipped: not measured")


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--people", "1"], "--people must be at least 2"),
        (["--photos", "2"], "--photos must be at least 3"),
        (["--reps", "0"], "--reps must be at least 1"),
    ],
)
def test_bench_quantize_refuses_sizes_it_cannot_compare(
    flags: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "q.json"
    assert main(["bench", "quantize", "--json", str(out), *flags]) == 2
    assert message in capsys.readouterr().err and not out.exists()
