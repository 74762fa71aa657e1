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
  gradients.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from models import IMAGE_SUFFIXES, registry
from models.align import align_for_clip
from models.bundle import BundleSettings, RecognizerBundle
from models.clip_classifier import (
    ClipIdentity,
    ImageTower,
    encode_crops,
    make_text_encoder,
    normalise_rows,
    prompt_length,
    tokenize,
)
from models.detector import FaceDetector
from models.names import InvalidName, name_key, validate_name

Log = Callable[[str], None]


@dataclass(frozen=True)
class Skipped:
    path: str
    reason: str

    def as_dict(self) -> dict[str, str]:
        return {"path": self.path, "reason": self.reason}


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
    device: str  # torch device for the finetuning: auto (CUDA when present), cpu, cuda


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


@dataclass
class FaceSet:
    """Image features per person, and what was skipped on the way."""

    features: dict[str, NDArray[np.float32]]  # display name -> (photos, dim)
    sources: dict[str, list[str]]
    skipped: list[Skipped] = field(default_factory=list)
    images: int = 0


def scan_people(root: Path) -> tuple[dict[str, list[Path]], list[Skipped]]:
    """Image files per person folder of ``root``; bad names and duplicates are skipped."""
    if not root.is_dir():
        raise FileNotFoundError(f"people folder {root} does not exist or is not a folder")
    people: dict[str, list[Path]] = {}
    seen: dict[str, str] = {}
    skipped: list[Skipped] = []
    for folder in sorted(root.iterdir()):
        if not folder.is_dir() or folder.name.startswith((".", "_")):
            continue
        try:
            name = validate_name(folder.name)
        except InvalidName as error:
            skipped.append(Skipped(str(folder), f"unsafe name: {error}"))
            continue
        key = name_key(name)
        if key in seen:
            skipped.append(Skipped(str(folder), f"duplicate name: same person as {seen[key]!r}"))
            continue
        seen[key] = name
        files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
        people[name] = files
    return people, skipped


def _read_image(data: bytes) -> NDArray[np.uint8] | None:
    import cv2

    if not data:
        return None
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    return None if image is None else np.asarray(image, dtype=np.uint8)


class FeatureCache:
    """Image features on disk, one ``.npy`` per (model identity, detection setup, file)."""

    def __init__(self, root: Path, identity: ClipIdentity, setup: str) -> None:
        self.folder = root / identity.key / setup

    def get(self, digest: str) -> NDArray[np.float32] | None:
        path = self.folder / f"{digest}.npy"
        try:
            return np.asarray(np.load(path, allow_pickle=False), dtype=np.float32)
        except (OSError, ValueError, EOFError):
            return None

    def put(self, digest: str, feature: NDArray[np.float32]) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        handle, tmp = tempfile.mkstemp(dir=self.folder, suffix=".tmp")
        with os.fdopen(handle, "wb") as stream:
            np.save(stream, feature)
        os.replace(tmp, self.folder / f"{digest}.npy")


def extract_features(
    people: dict[str, list[Path]],
    detector: FaceDetector,
    tower: ImageTower,
    cache: FeatureCache | None,
    align_margin: float = 0.0,
    log: Log | None = None,
) -> FaceSet:
    """Detect the largest face of every photo, align it, run the image tower (once).

    Crops go through the tower 32 at a time, so memory holds 32 crops, not every photo.
    """
    faceset = FaceSet(features={}, sources={})
    pending: list[tuple[str, NDArray[np.uint8]]] = []  # digest, crop
    computed: dict[str, NDArray[np.float32]] = {}
    found: dict[str, list[tuple[str, NDArray[np.float32] | None, str]]] = {}

    def flush() -> None:
        features = encode_crops(tower, [crop for _, crop in pending])
        for (digest, _), feature in zip(pending, features, strict=True):
            computed[digest] = feature
            if cache:
                cache.put(digest, feature)
        pending.clear()

    for name, files in people.items():
        rows = found.setdefault(name, [])
        for path in files:
            faceset.images += 1
            if path.suffix.lower() not in IMAGE_SUFFIXES:
                faceset.skipped.append(Skipped(str(path), "not an image file (by its suffix)"))
                continue
            try:
                data = path.read_bytes()
            except OSError as error:
                faceset.skipped.append(Skipped(str(path), f"unreadable: {error.strerror}"))
                continue
            digest = hashlib.sha256(data).hexdigest()
            cached = cache.get(digest) if cache else None
            if cached is not None:
                rows.append((str(path), cached, digest))
                continue
            image = _read_image(data)
            if image is None:
                faceset.skipped.append(Skipped(str(path), "corrupt or not an image"))
                continue
            faces = detector.detect(image, mode="largest")
            if not faces:
                faceset.skipped.append(Skipped(str(path), "no face found"))
                continue
            rows.append((str(path), None, digest))
            pending.append((digest, align_for_clip(image, faces[0].kps, align_margin)))
            if len(pending) == 32:
                flush()
    if pending:
        flush()
    if log:
        log(f"image tower: {len(computed)} new faces ({faceset.images} photos)")
    for name, rows in found.items():
        vectors = [vec if vec is not None else computed[digest] for _, vec, digest in rows]
        if vectors:
            faceset.features[name] = np.stack(vectors).astype(np.float32)
            faceset.sources[name] = [src for src, _, _ in rows]
    return faceset


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
) -> TrainResult:
    """Finetune the text tower of ``model`` (in place) on cached image features.

    Runs on ``settings.device`` (see :func:`torch_device`); the model is back on the CPU
    when this returns.
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
    prompts = [settings.prompt.format(name=name) for name in [*people, ""]]
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

    before = embed_all()
    log_scale = torch.nn.Parameter(model.logit_scale.detach().clone().reshape(()).to(device))
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
            logits = log_scale.clamp(max=np.log(100.0)).exp() * xt[batch.to(device)] @ text.T
            target = remap[yt[batch]].to(device)
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
    encoder.eval()
    after = embed_all()
    encoder.to("cpu")
    trainable = {
        name: np.asarray(p.detach().numpy(), dtype=np.float32)
        for name, p in encoder.named_parameters()
        if p.requires_grad
    }
    metrics = {
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


def drop_small(faceset: FaceSet, min_images: int) -> None:
    """Skip people with fewer than ``min_images`` usable photos (counted in ``skipped``)."""
    for name in list(faceset.features):
        count = len(faceset.features[name])
        if count < min_images:
            faceset.skipped.append(
                Skipped(name, f"too few usable photos: {count} (at least {min_images} needed)")
            )
            del faceset.features[name]
            del faceset.sources[name]


def make_bundle(
    result: TrainResult,
    identity: ClipIdentity,
    settings: TrainSettings,
    detector: FaceDetector,
    threshold: float,
    align_margin: float,
    extra_metrics: dict[str, Any],
) -> RecognizerBundle:
    models = {
        detector.name: {
            "file": registry.spec(detector.name).file,
            "sha256": registry.spec(detector.name).sha256,
        }
    }
    if identity.pretrained == "openai":
        spec = registry.spec("clip_rn50_openai")
        models[spec.name] = {"file": spec.file, "sha256": spec.sha256}
    models[f"clip_{identity.model}_image_tower"] = {
        "file": f"(built: {identity.model}, pretrained={identity.pretrained}, "
        f"seed={identity.init_seed})",
        "sha256": identity.image_tower_sha256,
    }
    return RecognizerBundle(
        people=result.people,
        text_embeddings=result.text_embeddings,
        feature_mean=result.feature_mean,
        logit_scale=result.logit_scale,
        identity=identity,
        settings=BundleSettings(
            prompt=settings.prompt,
            context_length=result.context_length,
            trainable_layers=settings.trainable_layers,
            threshold=threshold,
            align_margin=align_margin,
            detector=detector.name,
            detector_input_size=detector.input_size,
            epochs=settings.epochs,
            learning_rate=settings.learning_rate,
            weight_decay=settings.weight_decay,
            batch_size=settings.batch_size,
            max_classes_per_step=settings.max_classes_per_step,
            seed=settings.seed,
            test_fraction=settings.test_fraction,
            train_logit_scale=settings.train_logit_scale,
            subtract_null_prompt=settings.subtract_null_prompt,
        ),
        metrics={**result.metrics, **extra_metrics},
        models=models,
        text_state=result.text_state,
    )


def train_recognizer(
    people: dict[str, list[Path]],
    detector: FaceDetector,
    model_name: str,
    pretrained: str,
    model_dir: Path | None,
    settings: TrainSettings,
    threshold: float = 0.8,
    align_margin: float = 0.0,
    cache_root: Path | None = None,
    skipped: Sequence[Skipped] = (),
    log: Log | None = None,
) -> tuple[RecognizerBundle, dict[str, Any]]:
    """Photos per person -> a trained bundle and a report (metrics, skipped, timings).

    Raises ``ValueError`` when fewer than two people have enough usable photos.
    """
    from models.clip_classifier import OnnxImageTower, build_clip, export_image_tower

    started = time.perf_counter()
    model, identity = build_clip(model_name, pretrained, model_dir, init_seed=settings.seed)  # type: ignore[arg-type]
    cache = (
        FeatureCache(cache_root, identity, f"{detector.name}-{detector.input_size}-m{align_margin}")
        if cache_root
        else None
    )
    # Features come from the ONNX export of the tower (34 ms a face against 55 ms in torch
    # eager here; the two agree to 1e-7 relative), kept in the cache or exported per run.
    with tempfile.TemporaryDirectory(prefix="kiosk-tower-") as scratch:
        folder = cache_root / identity.key if cache_root else Path(scratch)
        onnx_path = folder / "image_tower.onnx"
        if not onnx_path.is_file():
            export_image_tower(model.visual, onnx_path)
        tower = OnnxImageTower(onnx_path, device="cpu")
        faceset = extract_features(people, detector, tower, cache, align_margin, log)
        del tower
    faceset.skipped[:0] = list(skipped)
    drop_small(faceset, settings.min_images)
    feature_seconds = time.perf_counter() - started
    usable = sum(len(v) for v in faceset.features.values())
    if len(faceset.features) < 2:
        raise ValueError(
            f"only {len(faceset.features)} people have at least {settings.min_images} usable "
            f"photos; at least 2 are needed (skipped: {len(faceset.skipped)})"
        )
    result = finetune_text_encoder(model, model_name, faceset, settings, log)
    seconds = time.perf_counter() - started
    report = {
        "train_accuracy": result.metrics["train_accuracy"],
        "test_accuracy": result.metrics["test_accuracy"],
        "test_accuracy_before": result.metrics["test_accuracy_before"],
        "chance": result.metrics["chance"],
        "people": len(result.people),
        "images": faceset.images,
        "usable_images": usable,
        "skipped": len(faceset.skipped),
        "skipped_items": [item.as_dict() for item in faceset.skipped],
        "seconds": round(seconds, 2),
        "feature_seconds": round(feature_seconds, 2),
        "finetune_seconds": result.metrics["finetune_seconds"],
        "device": result.metrics["device"],
        "pretrained": pretrained,
    }
    extra = {k: report[k] for k in ("images", "usable_images", "skipped", "seconds")}
    bundle = make_bundle(result, identity, settings, detector, threshold, align_margin, extra)
    return bundle, report
