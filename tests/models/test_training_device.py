"""Training's torch device: auto takes CUDA when present, cpu and cuda are respected."""

from __future__ import annotations

import numpy as np
import pytest

from kiosk.build import train_settings
from kiosk.config import KioskConfig
from models.train.features import FaceSet
from models.train.finetune import finetune_text_encoder, torch_device
from tests.helpers import train_settings as settings


@pytest.mark.parametrize(
    ("requested", "cuda", "chosen"),
    [("auto", True, "cuda"), ("auto", False, "cpu"), ("cpu", True, "cpu"), ("cuda", True, "cuda")],
)
def test_device_choice(requested: str, cuda: bool, chosen: str) -> None:
    assert torch_device(requested, cuda_available=cuda) == chosen


def test_cuda_without_a_gpu_is_an_error_not_a_fallback() -> None:
    with pytest.raises(ValueError, match="no CUDA GPU"):
        torch_device("cuda", cuda_available=False)
    with pytest.raises(ValueError, match="auto, cpu or cuda"):
        torch_device("gpu", cuda_available=True)


@pytest.mark.torch
def test_auto_asks_torch() -> None:
    import torch

    assert torch_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")


def test_config_device_reaches_training() -> None:
    config = KioskConfig.model_validate({"models": {"device": "cpu"}})
    assert train_settings(config).device == "cpu"
    assert train_settings(KioskConfig()).device == "auto"


def test_metrics_report_the_device(tiny_clip: str) -> None:
    from models.clip.towers import build_clip

    model, _ = build_clip(tiny_clip, "none", None, init_seed=0)
    rng = np.random.default_rng(0)
    features = {f"p{i}": rng.normal(size=(4, 32)).astype(np.float32) for i in range(3)}
    faceset = FaceSet(features=features, sources={k: [] for k in features}, images=12)
    result = finetune_text_encoder(model, tiny_clip, faceset, settings(epochs=1, device="cpu"))
    assert result.metrics["device"] == "cpu"
    assert all(p.device.type == "cpu" for p in model.parameters())
