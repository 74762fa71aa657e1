"""Image folders to embeddings for evaluation: embedders by spec, batched, resumable cache.

A data set is a folder per identity (``DIR/<identity>/<image>``). An embedder spec names
what embeds the faces:

- ``path/to/model.onnx`` or a manifest name (``mobilefacenet_128d``): an ArcFace-style
  ONNX embedder (112x112, ArcFace template);
- ``clip:MODEL:TAG``: an open_clip image tower, e.g. ``clip:RN50:openai``, built by
  models/clip_classifier.py; weights come from the model directory only (TAG ``none`` =
  untrained weights, seeded);
- ``bundle:PATH``: a trained recognizer bundle (`kiosk train`): its image tower's
  features centred with the bundle's mean and normalised;
- ``face_recognition``: the face_recognition library's pipeline (dlib HOG detector,
  5-point landmarks, ResNet descriptor), from the optional extra.

Other kinds plug in with :func:`register_embedder_kind`.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
import zipfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TextIO

import numpy as np
from numpy.typing import NDArray

from models import registry
from models.align import CLIP_SIZE, align_arcface, align_for_clip
from models.detector import FaceDetector
from models.errors import ModelError
from models.io import (
    IMAGE_SUFFIXES,
    ImageRefused,
    Skipped,
    atomic_writer,
    read_image,
    remove_stale_temps,
    scan_people,
    split_images,
    write_bytes_atomic,
)

FACE_RECOGNITION_INSTALL = (
    "the face_recognition embedder needs dlib and face_recognition_models: "
    "pip install 'clip-face-kiosk[face-recognition]' (a prebuilt dlib-bin wheel; "
    "dlib itself is never compiled)"
)

Image = NDArray[np.uint8]
Transform = Callable[[Image, str], Image]


class DatasetError(ValueError):
    """A data folder that cannot be evaluated; the message says why."""


@dataclass(frozen=True)
class LabelledImage:
    path: Path
    relpath: str  # relative to the data folder, "/"-separated: the mapping and seed key

    @property
    def cache_key(self) -> str:
        """The file's absolute path, size and modification time: a replaced or moved
        image is embedded again, and two data sets never share rows."""
        try:
            st = self.path.stat()
        except OSError:
            return str(self.path.absolute())
        return f"{self.path.absolute()}|{st.st_size}|{st.st_mtime_ns}"

    identity: str


def list_images(root: Path, skipped: list[Skipped] | None = None) -> list[LabelledImage]:
    """Every image of ``root/<identity>/``, sorted, by the one folder-per-person rule
    (:func:`models.io.scan_people`): folders starting with "_" or "." (faces94's
    ``_unknown``) are not identities. What is left out (unsafe or duplicate names, nested
    folders, files that are not images) is added to ``skipped`` when one is given."""
    try:
        people, left_out = scan_people(root)
    except FileNotFoundError:
        raise DatasetError(f"data folder {root} does not exist or is not a folder") from None
    images: list[LabelledImage] = []
    for identity, files in people.items():
        photos, others = split_images(files)
        left_out.extend(others)
        images.extend(
            LabelledImage(path, path.relative_to(root).as_posix(), identity) for path in photos
        )
    if skipped is not None:
        skipped.extend(left_out)
    if not images:
        raise DatasetError(
            f"no images found in {root}: expected one folder per person, "
            f"each holding images ({', '.join(sorted(IMAGE_SUFFIXES))})"
        )
    return images


class EvalEmbedder(Protocol):
    """Turns an image into a face crop (None = no face) and crops into embeddings."""

    @property
    def key(self) -> str: ...  # names the embedder and its settings in the cache

    def prepare(self, image: Image) -> Image | None: ...

    def embed(self, crops: Sequence[Image]) -> NDArray[np.float32]: ...


def _resize_square(image: Image, size: int) -> Image:
    """Shorter side to ``size`` then a centre crop: how a whole image enters a tower."""
    import cv2

    h, w = image.shape[:2]
    scale = size / min(h, w)
    resized = cv2.resize(
        image,
        (max(size, round(w * scale)), max(size, round(h * scale))),
        interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC,
    )
    top = (resized.shape[0] - size) // 2
    left = (resized.shape[1] - size) // 2
    return np.asarray(resized[top : top + size, left : left + size], np.uint8)


class _DetectingEmbedder:
    """Shared prepare(): the largest SCRFD face aligned, or the whole image resized."""

    def __init__(
        self,
        detector: FaceDetector | None,
        align: Callable[[Image, NDArray[np.float32]], Image],
        crop_size: int,
    ) -> None:
        self._detector = detector
        self._align = align
        self.crop_size = crop_size

    def prepare(self, image: Image) -> Image | None:
        if self._detector is None:
            return _resize_square(image, self.crop_size)
        faces = self._detector.detect(image, mode="largest")
        return self._align(image, faces[0].kps) if faces else None

    @property
    def detector_key(self) -> str:
        if self._detector is None:
            return "no-align"
        return f"{self._detector.name}@{self._detector.input_size}"


class OnnxFaceEmbedder(_DetectingEmbedder):
    """An ArcFace-style ONNX embedder (models/embedder.py) behind SCRFD alignment."""

    def __init__(self, path: Path, detector: FaceDetector | None) -> None:
        from models.embedder import ArcFaceEmbedder

        super().__init__(detector, align_arcface, ArcFaceEmbedder.crop_size)
        self._embedder = ArcFaceEmbedder(path)
        self._digest = registry.sha256_file(path)[:16]

    @property
    def key(self) -> str:
        return f"onnx:{self._digest}:{self.detector_key}"

    def embed(self, crops: Sequence[Image]) -> NDArray[np.float32]:
        return self._embedder.embed(crops)


class ClipImageEmbedder(_DetectingEmbedder):
    """An open_clip image tower (models/clip_classifier.py's ``build_clip``, its blob and
    torch tower); faces aligned to 224 with the ArcFace template; features normalised."""

    def __init__(
        self, model_name: str, tag: str, model_dir: Path, detector: FaceDetector | None
    ) -> None:
        from models.clip.embedder import ClipFaceEmbedder
        from models.clip.identity import OPENAI_WEIGHTS
        from models.clip.towers import TorchImageTower, build_clip

        if tag != "none" and (model_name, tag) != ("RN50", "openai"):
            raise ModelError(
                f"no CLIP weights {model_name}:{tag}: the model directory holds "
                "clip:RN50:openai (RN50.pt); clip:MODEL:none builds an untrained tower"
            )
        if tag == "openai":  # a missing weights file is reported before the slow torch import
            registry.model_path(OPENAI_WEIGHTS, model_dir)
        super().__init__(detector, align_for_clip, CLIP_SIZE)
        model, self._identity = build_clip(model_name, tag, model_dir)  # type: ignore[arg-type]
        self._embedder = ClipFaceEmbedder(TorchImageTower(model.visual), self._identity.key)

    @property
    def key(self) -> str:
        i = self._identity
        return f"clip:{i.model}:{i.pretrained}:{i.key}:{self.detector_key}"

    def embed(self, crops: Sequence[Image]) -> NDArray[np.float32]:
        return self._embedder.embed(crops)


class BundleEmbedder(_DetectingEmbedder):
    """A trained recognizer bundle's image tower (ONNX, cached beside the bundle): features
    centred with the bundle's training mean and normalised, as the recognizer sees them;
    faces aligned as the bundle was trained."""

    def __init__(self, path: Path, model_dir: Path, detector: FaceDetector | None) -> None:
        from models.clip.classifier import ClipRecognizer

        self.recognizer = ClipRecognizer.load(path, model_dir, backend="onnx")
        margin = self.recognizer.bundle.settings.align_margin
        super().__init__(detector, lambda image, kps: align_for_clip(image, kps, margin), CLIP_SIZE)
        self._digest = registry.sha256_file(path)[:16]

    @property
    def key(self) -> str:
        return f"bundle:{self._digest}:{self.detector_key}"

    def embed(self, crops: Sequence[Image]) -> NDArray[np.float32]:
        from models.clip.towers import encode_crops, normalise_rows

        features = encode_crops(self.recognizer.tower, crops, batch_size=32)
        return normalise_rows(features - self.recognizer.bundle.feature_mean)


class FaceRecognitionEmbedder:
    """The face_recognition library's pipeline, with the same dlib models and calls as its
    ``face_locations`` (HOG, one upsample) and ``face_encodings`` (5-point landmarks, one
    jitter). dlib is called directly: face_recognition_models imports pkg_resources,
    which current setuptools no longer ships."""

    def __init__(self, align: bool) -> None:
        import importlib.util

        try:
            import dlib
        except ImportError:
            raise ModelError(FACE_RECOGNITION_INSTALL) from None
        found = importlib.util.find_spec("face_recognition_models")
        if found is None or not found.submodule_search_locations:
            raise ModelError(FACE_RECOGNITION_INSTALL)
        models = Path(next(iter(found.submodule_search_locations))) / "models"
        self._dlib = dlib
        self._align_on = align
        self._detector = dlib.get_frontal_face_detector()
        self._pose = dlib.shape_predictor(str(models / "shape_predictor_5_face_landmarks.dat"))
        self._encoder = dlib.face_recognition_model_v1(
            str(models / "dlib_face_recognition_resnet_model_v1.dat")
        )

    @property
    def key(self) -> str:
        return (
            f"face_recognition:dlib-{self._dlib.__version__}:{'hog' if self._align_on else 'whole'}"
        )

    def prepare(self, image: Image) -> Image | None:
        rgb = np.ascontiguousarray(image[..., ::-1])
        if self._align_on:
            rects = list(self._detector(rgb, 1))
            if not rects:
                return None
            rect = max(rects, key=lambda r: r.width() * r.height())
        else:
            rect = self._dlib.rectangle(0, 0, rgb.shape[1] - 1, rgb.shape[0] - 1)
        shape = self._pose(rgb, rect)
        # the chip compute_face_descriptor(image, shape) cuts internally
        chip = self._dlib.get_face_chip(rgb, shape, size=150, padding=0.25)
        return np.asarray(chip, np.uint8)

    def embed(self, crops: Sequence[Image]) -> NDArray[np.float32]:
        if not crops:
            return np.zeros((0, 128), np.float32)
        return np.array(
            [np.asarray(self._encoder.compute_face_descriptor(crop, 1)) for crop in crops],
            np.float32,
        )


@dataclass(frozen=True)
class EmbedderOptions:
    model_dir: Path
    align: bool = True
    detector: str = "scrfd_2.5g"
    detector_size: int = 320
    detector_threshold: float = 0.5

    def make_detector(self) -> FaceDetector | None:
        if not self.align:
            return None
        return FaceDetector.from_name(
            self.detector,
            self.model_dir,
            input_size=self.detector_size,
            threshold=self.detector_threshold,
        )


EmbedderFactory = Callable[[str, EmbedderOptions], EvalEmbedder]
_KINDS: dict[str, EmbedderFactory] = {}


def register_embedder_kind(prefix: str, factory: EmbedderFactory) -> None:
    """Make ``PREFIX:...`` specs build with ``factory(rest_of_spec, options)``."""
    _KINDS[prefix] = factory


def _clip_factory(rest: str, options: EmbedderOptions) -> EvalEmbedder:
    model_name, _, tag = rest.partition(":")
    if not model_name or not tag:
        raise ModelError(
            f"CLIP embedder spec must be clip:MODEL:TAG (e.g. clip:RN50:openai), got clip:{rest}"
        )
    return ClipImageEmbedder(model_name, tag, options.model_dir, options.make_detector())


def _bundle_factory(rest: str, options: EmbedderOptions) -> EvalEmbedder:
    path = Path(rest).expanduser()
    if not rest or not path.is_file():
        raise ModelError(
            f"recognizer bundle {rest!r} does not exist: give bundle:PATH to a file made "
            "by `kiosk train`"
        )
    return BundleEmbedder(path, options.model_dir, options.make_detector())


def _face_recognition_factory(rest: str, options: EmbedderOptions) -> EvalEmbedder:
    return FaceRecognitionEmbedder(options.align)


register_embedder_kind("clip", _clip_factory)
register_embedder_kind("bundle", _bundle_factory)
register_embedder_kind("face_recognition", _face_recognition_factory)


def load_embedder(spec: str, options: EmbedderOptions) -> EvalEmbedder:
    prefix, _, rest = spec.partition(":")
    if prefix in _KINDS:
        return _KINDS[prefix](rest, options)
    manifest = registry.load_manifest()
    if spec in manifest and manifest[spec].kind == "embedder":
        path = registry.model_path(spec, options.model_dir)
    elif spec.endswith(".onnx"):
        path = Path(spec).expanduser()
        if not path.is_file():
            raise ModelError(f"embedder file {path} does not exist")
    else:
        names = sorted(n for n, m in manifest.items() if m.kind == "embedder")
        raise ModelError(
            f"unknown embedder {spec!r}: give an .onnx file, a manifest embedder "
            f"({', '.join(names)}), clip:MODEL:TAG or one of: {', '.join(sorted(_KINDS))}"
        )
    return OnnxFaceEmbedder(path, options.make_detector())


# ---------------------------------------------------------------------------------------
# Extraction with a resumable cache

FOUND, NO_FACE, UNREADABLE = 0, 1, 2


@dataclass
class Features:
    images: list[LabelledImage]
    embeddings: NDArray[np.float32]  # one row per image; zeros where no face
    status: NDArray[np.int8]  # FOUND, NO_FACE or UNREADABLE per image
    seconds: float  # extraction time of this run (cached rows cost nothing)
    from_cache: int = 0

    @property
    def found(self) -> NDArray[np.bool_]:
        return self.status == FOUND

    @property
    def labels(self) -> list[str]:
        return [image.identity for image in self.images]

    def missed(self, status: int) -> list[str]:
        return [im.relpath for im, s in zip(self.images, self.status, strict=True) if s == status]


class FeatureCache:
    """Chunks of (image cache key, status, embedding) in a folder named by a hash of what produced
        them. Each chunk is written atomically, so an interrupted run loses at most one (and
    loading removes the temporary file a killed run left)."""

    FORMAT = 2  # bump when the chunk layout changes: old chunks are then ignored

    def __init__(self, root: Path, key: str) -> None:
        self.key = key
        digest = hashlib.sha256(f"v{self.FORMAT}|{key}".encode()).hexdigest()[:20]
        self.dir = root / digest

    def load(self) -> dict[str, tuple[int, NDArray[np.float32]]]:
        remove_stale_temps(self.dir)  # what a killed run was writing
        done: dict[str, tuple[int, NDArray[np.float32]]] = {}
        for chunk in sorted(self.dir.glob("chunk_*.npz")):
            try:
                with np.load(chunk, allow_pickle=False) as data:
                    rows = list(zip(data["keys"], data["status"], data["embeddings"], strict=True))
            except (OSError, ValueError, KeyError, zipfile.BadZipFile):
                continue  # a damaged chunk: its images are simply embedded again
            for key, status, vector in rows:
                done[str(key)] = (int(status), vector.astype(np.float32))
        return done

    def write(
        self, keys: Sequence[str], status: Sequence[int], embeddings: NDArray[np.float32]
    ) -> None:
        meta = self.dir / "key.json"
        if not meta.exists():
            write_bytes_atomic(meta, json.dumps({"key": self.key}).encode())
        numbers = [int(p.stem.split("_")[1]) for p in self.dir.glob("chunk_*.npz")]
        number = max(numbers, default=-1) + 1  # never reuses a name, even after deletions
        with atomic_writer(self.dir / f"chunk_{number:06d}.npz") as handle:
            np.savez(
                handle,
                keys=np.array(keys, dtype=str),
                status=np.array(status, np.int8),
                embeddings=embeddings.astype(np.float32),
            )


class Progress:
    """One self-overwriting line on stderr: done/total, rate, time left."""

    def __init__(self, total: int, label: str, stream: TextIO | None = None) -> None:
        self.total, self.label = total, label
        self.stream = sys.stderr if stream is None else stream
        self.start = time.perf_counter()
        self._last = 0.0

    def update(self, done: int, force: bool = False) -> None:
        now = time.perf_counter()
        if self._last < 0 or (not force and done < self.total and now - self._last < 0.5):
            return
        self._last = now
        rate = done / max(now - self.start, 1e-9)
        left = (self.total - done) / rate if rate > 0 else 0.0
        print(
            f"\r{self.label}: {done}/{self.total} images, {rate:.1f}/s, {left:.0f} s left ",
            end="" if done < self.total else "\n",
            file=self.stream,
            flush=True,
        )
        if done >= self.total:
            self._last = -1.0  # the closing line is printed once


def extract(
    images: Sequence[LabelledImage],
    embedder: EvalEmbedder,
    *,
    cache_dir: Path | None = None,
    cache_tag: str = "",
    transform: Transform | None = None,
    batch_size: int = 64,
    chunk_size: int = 1024,
    progress: Progress | None = None,
) -> Features:
    """Embeddings of ``images`` (largest face each), batched, resuming from the cache.

    ``transform(image, relpath)`` alters each image first (perturbations); ``cache_tag``
    must then name it, as it becomes part of the cache key.
    """
    dim = 0
    cache = None
    done: dict[str, tuple[int, NDArray[np.float32]]] = {}
    if cache_dir is not None:
        cache = FeatureCache(cache_dir, f"{embedder.key}|{cache_tag}")
        done = cache.load()
    keys = [image.cache_key for image in images]
    todo = [image for image, key in zip(images, keys, strict=True) if key not in done]
    start = time.perf_counter()
    pending_rel: list[str] = []
    pending_status: list[int] = []
    pending_vec: list[NDArray[np.float32]] = []

    def flush() -> None:
        if cache is not None and pending_rel:
            cache.write(pending_rel, pending_status, np.stack(pending_vec))
        pending_rel.clear()
        pending_status.clear()
        pending_vec.clear()

    finished = len(images) - len(todo)
    for batch in _batches(todo, batch_size):
        crops, statuses = [], []
        for item in batch:
            try:
                image: Image | None = read_image(item.path)
            except ImageRefused:  # unreadable, corrupt or over the limits: counted as such
                image = None
            if image is not None and transform is not None:
                image = transform(image, item.relpath)
            crop = None if image is None else embedder.prepare(image)
            statuses.append(UNREADABLE if image is None else FOUND if crop is not None else NO_FACE)
            if crop is not None:
                crops.append(crop)
        vectors = iter(embedder.embed(crops)) if crops else iter(())
        for item, status in zip(batch, statuses, strict=True):
            vector = next(vectors) if status == FOUND else None
            if vector is not None:
                dim = len(vector)
            key = item.cache_key
            done[key] = (
                status,
                np.asarray(vector, np.float32) if vector is not None else np.zeros(0, np.float32),
            )
            pending_rel.append(key)
            pending_status.append(status)
            pending_vec.append(done[key][1])
        if len(pending_rel) >= chunk_size:
            _pad_pending(pending_vec)
            flush()
        finished += len(batch)
        if progress is not None:
            progress.update(finished)
    _pad_pending(pending_vec)
    flush()
    if progress is not None:
        progress.update(len(images), force=True)
    for status, vector in done.values():
        if status == FOUND:
            dim = len(vector)
            break
    embeddings = np.zeros((len(images), dim), np.float32)
    status_arr = np.empty(len(images), np.int8)
    for row, key in enumerate(keys):
        status, vector = done[key]
        status_arr[row] = status
        if status == FOUND:
            embeddings[row] = vector
    return Features(
        list(images),
        embeddings,
        status_arr,
        seconds=time.perf_counter() - start,
        from_cache=len(images) - len(todo),
    )


def _pad_pending(vectors: list[NDArray[np.float32]]) -> None:
    """Rows without a face get a zero vector of the batch's width, so the chunk stacks."""
    width = max((len(v) for v in vectors), default=0)
    for i, vector in enumerate(vectors):
        if len(vector) != width:
            vectors[i] = np.zeros(width, np.float32)


def _batches(items: Sequence[LabelledImage], size: int) -> Iterable[list[LabelledImage]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])
