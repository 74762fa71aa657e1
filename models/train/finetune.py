"""Text-encoder finetuning from cached image features; produces a recognizer bundle.

The research's recipe: CLIP's image tower frozen, its text encoder finetuned so that the
prompt "This is the image of a person named {name}" matches that person's photos;
AdamW with weight decay, cosine annealing, cross-entropy (mean), mini-batches of 16,
224x224 aligned faces, a deterministic 80/20 split per person.

What makes it fast and bounded (see ``make_text_encoder`` for the exact shortcuts):

- every photo goes through detection, alignment and the frozen image tower once; the
  features are cached on disk keyed by the file's sha256 and the model's identity, so an
  epoch costs only text-encoder passes and a second run costs none;
- the features are centred with the training mean (stored in the bundle and applied
  identically at recognition): an untrained tower's features are nearly identical
  (pairwise cosine 0.9999) and centring is what leaves a signal;
- a step encodes at most ``max_classes_per_step`` prompts: the classes in the batch plus
  negatives sampled from the others. Memory per step is therefore independent of the
  number of people; the final per-person embeddings are computed in chunks without
  gradients;
- a retrain after one more person is enrolled starts from the tuned weights of the bundle
  in use (:class:`WarmStart`), so the people already known stay where they were.

Two options beyond the research's recipe:

- ``angular_margin`` (the research's proposed next step): an additive angular margin on
  the image-text logits, ArcFace style: the true person's logit is ``s cos(theta + m)``,
  so training must separate people by more than ``m`` radians;
- the softmax temperature fitted on the held-out 20% (negative log-likelihood of the true
  person over the cosines), stored in the bundle for ``[clip] rejection = "calibrated"``.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from models.clip.text import make_text_encoder, prompt_length, tokenize
from models.clip.towers import normalise_rows
from models.train.features import FaceSet

Log = Callable[[str], None]


@dataclass(frozen=True)
class TrainSettings:
    """How to finetune; built from the config's [train] (kiosk/commands/train_cmd.py's
    ``train_settings``), whose defaults are the only ones."""

    prompt: str
    epochs: int
    learning_rate: float
    weight_decay: float
    batch_size: int
    seed: int
    test_fraction: float
    min_images: int
    max_classes_per_step: int
    trainable_layers: int
    train_logit_scale: bool
    subtract_null_prompt: bool
    angular_margin: float  # radians; 0 is the research's plain cross-entropy
    device: str  # torch device for the finetuning: auto (CUDA when present), cpu, cuda


@dataclass(frozen=True)
class WarmStart:
    """The tuned text-encoder weights (and logit scale) of a bundle to continue from."""

    text_state: dict[str, NDArray[np.float32]]
    logit_scale: float


def torch_device(requested: str, cuda_available: bool | None = None) -> str:
    """The torch device to train on: ``auto`` takes CUDA when torch sees a GPU, else the CPU.

    ``cuda`` without a usable GPU is an error rather than a silent fall back to the CPU.
    """
    if requested not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device must be auto, cpu or cuda, got {requested!r}")
    if requested == "cpu":
        return "cpu"
    if cuda_available is None:
        import torch

        cuda_available = bool(torch.cuda.is_available())
    if cuda_available:
        return "cuda"
    if requested == "cuda":
        raise ValueError(
            '[models] device = "cuda" but torch sees no CUDA GPU (a CPU-only torch build, or '
            'no NVIDIA driver); install a CUDA build of torch, or set device = "auto"'
        )
    return "cpu"


def split_indices(count: int, test_fraction: float, seed: int, name: str) -> tuple[Any, Any]:
    """Deterministic per-person split: same seed and name, same split, on any machine."""
    rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
    order = rng.permutation(count)
    n_test = min(round(count * test_fraction), count - 1)
    return np.sort(order[n_test:]), np.sort(order[:n_test])


@dataclass
class TrainResult:
    people: list[str]
    text_embeddings: NDArray[np.float32]
    feature_mean: NDArray[np.float32]
    logit_scale: float
    text_state: dict[str, NDArray[np.float32]]
    metrics: dict[str, Any]
    context_length: int


def _accuracy(
    features: NDArray[np.float32], labels: NDArray[np.int64], text: NDArray[np.float32]
) -> float | None:
    if len(labels) == 0:
        return None
    predicted = (features @ normalise_rows(text).T).argmax(axis=1)
    return float((predicted == labels).mean())


def finetune_text_encoder(
    model: Any,
    model_name: str,
    faceset: FaceSet,
    settings: TrainSettings,
    log: Log | None = None,
    *,
    names: dict[str, str] | None = None,
    warm_start: WarmStart | None = None,
    on_epoch: Callable[[int, int], None] | None = None,
) -> TrainResult:
    """Finetune the text tower of ``model`` (in place) on cached image features.

    ``faceset`` is keyed by person key (a store's opaque id, or a folder's name); the
    prompt names ``names[key]`` (default: the key itself). ``warm_start`` continues from a
    bundle's tuned weights; it must come from the same number of tuned blocks. Runs on
    ``settings.device`` (see :func:`torch_device`); the model is back on the CPU when
    this returns.
    """
    import torch
    import torch.nn.functional as F

    device = torch_device(settings.device)
    people = sorted(faceset.features)
    if len(people) < 2:
        raise ValueError(f"at least 2 people with usable photos are needed, got {len(people)}")
    train_x, train_y, test_x, test_y = [], [], [], []
    for label, name in enumerate(people):
        feats = faceset.features[name]
        train_idx, test_idx = split_indices(len(feats), settings.test_fraction, settings.seed, name)
        train_x.append(feats[train_idx])
        test_x.append(feats[test_idx])
        train_y += [label] * len(train_idx)
        test_y += [label] * len(test_idx)
    x_train = np.concatenate(train_x)
    mean = x_train.mean(axis=0).astype(np.float32)
    x_train = normalise_rows(x_train - mean)
    x_test = normalise_rows(np.concatenate(test_x) - mean)
    y_train, y_test = np.array(train_y, np.int64), np.array(test_y, np.int64)

    # The last row is the prompt without a name: its embedding is the part every
    # person's prompt shares, subtracted (when enabled) so only the name's part is compared.
    shown = names or {}
    prompts = [settings.prompt.format(name=shown.get(key, key)) for key in [*people, ""]]
    tokens_np = tokenize(model_name, [p.strip() for p in prompts])
    null = len(people)
    context = prompt_length(tokens_np)
    encoder = make_text_encoder(model, context, settings.trainable_layers).to(device)
    tokens = torch.from_numpy(tokens_np[:, :context]).to(device)
    eot = tokens.argmax(dim=-1)
    chunk = max(settings.max_classes_per_step, 64)
    prefix = torch.cat([encoder.prefix(tokens[i : i + chunk]) for i in range(0, null + 1, chunk)])

    def class_embeddings(classes: torch.Tensor) -> torch.Tensor:
        if not settings.subtract_null_prompt:
            return encoder.head(prefix[classes], eot[classes])
        rows = torch.cat([classes, torch.tensor([null], device=classes.device)])
        text = encoder.head(prefix[rows], eot[rows])
        return text[:-1] - text[-1:]

    def embed_all() -> NDArray[np.float32]:
        with torch.no_grad():
            parts = [
                class_embeddings(torch.arange(i, min(i + chunk, null), device=device))
                for i in range(0, null, chunk)
            ]
        return np.asarray(torch.cat(parts).cpu().numpy(), dtype=np.float32)

    initial_scale = model.logit_scale.detach().clone().reshape(())
    if warm_start is not None:
        _load_warm_start(encoder, warm_start)
        initial_scale = torch.tensor(float(np.log(warm_start.logit_scale)))
    before = embed_all()
    log_scale = torch.nn.Parameter(initial_scale.to(device))
    params = [p for p in encoder.parameters() if p.requires_grad]
    if settings.train_logit_scale:
        params.append(log_scale)
    generator = torch.Generator().manual_seed(settings.seed)
    steps_per_epoch = max(1, -(-len(y_train) // settings.batch_size))
    total_steps = settings.epochs * steps_per_epoch
    optimizer = torch.optim.AdamW(
        params, lr=settings.learning_rate, weight_decay=settings.weight_decay
    )
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)
    # Sampling stays on the CPU (the seeded generator); features and text go to the device.
    xt, yt = torch.from_numpy(x_train).to(device), torch.from_numpy(y_train)
    n_people = len(people)
    started = time.perf_counter()
    encoder.train()
    for epoch in range(settings.epochs):
        order = torch.randperm(len(yt), generator=generator)
        epoch_loss = 0.0
        for step in range(steps_per_epoch):
            batch = order[step * settings.batch_size : (step + 1) * settings.batch_size]
            classes = torch.unique(yt[batch])
            if n_people > settings.max_classes_per_step and len(classes) < n_people:
                mask = torch.ones(n_people, dtype=torch.bool)
                mask[classes] = False
                others = torch.nonzero(mask).squeeze(1)
                room = max(0, settings.max_classes_per_step - len(classes))
                pick = others[torch.randperm(len(others), generator=generator)[:room]]
                classes = torch.cat([classes, pick])
            else:
                classes = torch.arange(n_people)
            remap = torch.full((n_people,), -1, dtype=torch.long)
            remap[classes] = torch.arange(len(classes))
            text = F.normalize(class_embeddings(classes.to(device)), dim=-1)
            target = remap[yt[batch]].to(device)
            cosines = xt[batch.to(device)] @ text.T
            if settings.angular_margin > 0:
                cosines = _with_angular_margin(cosines, target, settings.angular_margin)
            logits = log_scale.clamp(max=np.log(100.0)).exp() * cosines
            loss = F.cross_entropy(logits, target, reduction="mean")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            epoch_loss += float(loss.detach())
        if log:
            log(
                f"epoch {epoch + 1}/{settings.epochs}: loss {epoch_loss / steps_per_epoch:.3f} "
                f"({time.perf_counter() - started:.1f} s)"
            )
        if on_epoch:
            on_epoch(epoch + 1, settings.epochs)
    encoder.eval()
    after = embed_all()
    encoder.to("cpu")
    trainable = {
        name: np.asarray(p.detach().numpy(), dtype=np.float32)
        for name, p in encoder.named_parameters()
        if p.requires_grad
    }
    metrics = {
        "warm_start": warm_start is not None,
        "temperature": _held_out_temperature(x_test, y_test, after),
        "train_accuracy": _accuracy(x_train, y_train, after),
        "test_accuracy": _accuracy(x_test, y_test, after),
        "test_accuracy_before": _accuracy(x_test, y_test, before),
        "train_accuracy_before": _accuracy(x_train, y_train, before),
        "train_images": len(y_train),
        "test_images": len(y_test),
        "steps": total_steps,
        "chance": 1.0 / n_people,
        "finetune_seconds": round(time.perf_counter() - started, 2),
        "device": device,
    }
    return TrainResult(
        people=people,
        text_embeddings=after,
        feature_mean=mean,
        logit_scale=float(log_scale.detach().cpu().clamp(max=np.log(100.0)).exp()),
        text_state=trainable,
        metrics=metrics,
        context_length=context,
    )


def _load_warm_start(encoder: Any, warm: WarmStart) -> None:
    import torch

    tuned = {name: p for name, p in encoder.named_parameters() if p.requires_grad}
    if set(tuned) != set(warm.text_state):
        raise ValueError(
            "the bundle to continue from was tuned with other text blocks "
            f"({len(warm.text_state)} tensors, this training tunes {len(tuned)}); "
            "train from scratch instead"
        )
    with torch.no_grad():
        for name, parameter in tuned.items():
            parameter.copy_(torch.from_numpy(np.asarray(warm.text_state[name])))


def _with_angular_margin(cosines: Any, target: Any, margin: float) -> Any:
    """cos(theta + m) for each row's true column, the other columns unchanged."""
    import torch

    rows = torch.arange(cosines.shape[0], device=cosines.device)
    true = cosines[rows, target].clamp(-1 + 1e-6, 1 - 1e-6)
    shifted = true * np.cos(margin) - torch.sqrt(1 - true**2) * np.sin(margin)
    # Past theta = pi - m, cos(theta + m) would rise again: fall back to a linear penalty.
    shifted = torch.where(true > np.cos(np.pi - margin), shifted, true - margin * np.sin(margin))
    out = cosines.clone()
    out[rows, target] = shifted
    return out


def _held_out_temperature(
    features: NDArray[np.float32], labels: NDArray[np.int64], text: NDArray[np.float32]
) -> float | None:
    """The softmax temperature over cosines fitted on the held-out photos (None without)."""
    if len(labels) < 2 or len(set(labels.tolist())) < 2:
        return None
    from models.eval.openset import fit_temperature

    return round(fit_temperature(features @ normalise_rows(text).T, labels), 5)
