"""The learning test on real faces: ORL, the untrained RN50, text-encoder finetuning."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from kiosk.config import TrainConfig


@pytest.mark.slow
def test_finetuning_untrained_rn50_learns_orl(
    shared: Callable[..., Path], model_dir: Path, tmp_path: Path
) -> None:
    import torch

    from models.detector import FaceDetector
    from models.finetune import TrainSettings, scan_people, train_recognizer

    torch.set_num_threads(2)
    people, skipped = scan_people(shared("faces", "att_orl"))
    assert len(people) == 40 and not skipped
    detector = FaceDetector.from_name("scrfd_2.5g", model_dir, input_size=320)
    defaults = TrainConfig()  # the shipped defaults are what is tested
    settings = TrainSettings(
        epochs=defaults.epochs,
        learning_rate=defaults.learning_rate,
        weight_decay=defaults.weight_decay,
        trainable_layers=defaults.trainable_layers,
        max_classes_per_step=defaults.max_classes_per_step,
    )
    bundle, report = train_recognizer(
        people, detector, "RN50", "none", model_dir, settings, cache_root=tmp_path
    )
    print(report)  # the figures for the notes: pytest -s shows them
    assert report["people"] == 40 and report["usable_images"] == 400
    assert report["test_accuracy"] >= 4 * report["chance"]  # chance: 2.5%
    assert report["test_accuracy"] > report["test_accuracy_before"]
    assert bundle.metrics["test_accuracy"] == report["test_accuracy"]
