"""Finetuning beyond the research's recipe: warm starts, the angular margin, and the
temperature fitted on the held-out photos."""

from __future__ import annotations

import math

import numpy as np
import pytest

from models.clip.towers import build_clip
from models.train.features import FaceSet
from models.train.finetune import WarmStart, _with_angular_margin, finetune_text_encoder
from tests.helpers import TINY, synthetic_faceset, train_settings


def _subset(faceset: FaceSet, keys: list[str]) -> FaceSet:
    return FaceSet({k: faceset.features[k] for k in keys}, {k: [] for k in keys})


@pytest.fixture
def six(tiny_clip: str) -> FaceSet:
    return synthetic_faceset(6, 10, 32, seed=3)


def test_a_warm_start_keeps_what_was_learned(six: FaceSet) -> None:
    import torch

    settings = train_settings(
        epochs=15, learning_rate=1e-2, trainable_layers=3, device="cpu", seed=1
    )
    torch.manual_seed(0)
    first_model, _ = build_clip(TINY, "none", None, init_seed=0)
    first = finetune_text_encoder(
        first_model, TINY, _subset(six, ["p0", "p1", "p2", "p3"]), settings
    )
    assert first.metrics["train_accuracy"] >= 0.9 and first.metrics["warm_start"] is False

    def again(warm: WarmStart | None) -> dict[str, float]:
        model, _ = build_clip(TINY, "none", None, init_seed=0)
        short = train_settings(epochs=1, learning_rate=1e-9, trainable_layers=3, device="cpu")
        return finetune_text_encoder(model, TINY, six, short, warm_start=warm).metrics

    warm = again(WarmStart(first.text_state, first.logit_scale))
    cold = again(None)
    assert warm["warm_start"] is True
    # With a learning rate of ~0 nothing is learned in this run: what the warm-started
    # model knows about the first four people it brought from the first training.
    assert warm["train_accuracy_before"] >= cold["train_accuracy_before"] + 0.3


def test_a_warm_start_from_other_blocks_is_refused(six: FaceSet) -> None:
    model, _ = build_clip(TINY, "none", None, init_seed=0)
    one_block = finetune_text_encoder(
        model, TINY, six, train_settings(epochs=1, trainable_layers=1, device="cpu")
    )
    model, _ = build_clip(TINY, "none", None, init_seed=0)
    with pytest.raises(ValueError, match="other text blocks"):
        finetune_text_encoder(
            model,
            TINY,
            six,
            train_settings(epochs=1, trainable_layers=2, device="cpu"),
            warm_start=WarmStart(one_block.text_state, one_block.logit_scale),
        )


@pytest.mark.torch
def test_angular_margin_moves_only_the_true_logit() -> None:
    import torch

    theta = torch.tensor([[0.3, 1.0, 2.0], [1.2, 0.4, 0.1], [3.0, 0.2, 0.5]])
    cosines = torch.cos(theta)
    target = torch.tensor([0, 1, 0])
    out = _with_angular_margin(cosines, target, 0.25)
    assert math.isclose(float(out[0, 0]), math.cos(0.3 + 0.25), rel_tol=1e-5)
    assert math.isclose(float(out[1, 1]), math.cos(0.4 + 0.25), rel_tol=1e-5)
    # theta + m beyond pi: the linear fall-back keeps the logit falling, never rising
    assert float(out[2, 0]) < float(cosines[2, 0])
    untouched = torch.ones_like(out, dtype=torch.bool)
    untouched[torch.arange(3), target] = False
    assert torch.equal(out[untouched], cosines[untouched])


def test_training_with_a_margin_still_separates_people(six: FaceSet) -> None:
    model, _ = build_clip(TINY, "none", None, init_seed=0)
    settings = train_settings(
        epochs=20, learning_rate=1e-2, trainable_layers=3, angular_margin=0.2, device="cpu"
    )
    result = finetune_text_encoder(model, TINY, six, settings)
    assert result.metrics["train_accuracy"] >= 0.9


def test_the_temperature_is_fitted_on_the_held_out_photos(six: FaceSet) -> None:
    model, _ = build_clip(TINY, "none", None, init_seed=0)
    settings = train_settings(epochs=10, learning_rate=1e-2, trainable_layers=3, device="cpu")
    result = finetune_text_encoder(model, TINY, six, settings)
    temperature = result.metrics["temperature"]
    assert isinstance(temperature, float) and 1e-3 <= temperature <= 1.0
    model, _ = build_clip(TINY, "none", None, init_seed=0)
    no_held_out = train_settings(epochs=1, test_fraction=0.0, device="cpu")
    assert finetune_text_encoder(model, TINY, six, no_held_out).metrics["temperature"] is None


def test_prompts_use_display_names_for_person_keys(six: FaceSet) -> None:
    model, _ = build_clip(TINY, "none", None, init_seed=0)
    names = {key: f"Person {key.upper()}" for key in six.features}
    settings = train_settings(epochs=1, device="cpu")
    keyed = finetune_text_encoder(model, TINY, six, settings, names=names)
    model, _ = build_clip(TINY, "none", None, init_seed=0)
    plain = finetune_text_encoder(model, TINY, six, settings)
    assert keyed.people == plain.people == sorted(six.features)  # keys, not names
    assert not np.allclose(keyed.text_embeddings, plain.text_embeddings)  # other prompts
