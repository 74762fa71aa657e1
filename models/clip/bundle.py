"""The recognizer bundle: one file that holds everything a trained recognizer is.

Format: a NumPy ``.npz`` archive (a zip; read with ``allow_pickle=False``, so loading a
file never runs code) with

- ``meta.json``: schema version, people (display names) and their keys (the people
  store's opaque ids, or a folder's names), where they were trained from (the store's
  state digest, or the folder), the bundle's version and training time, settings,
  training metrics, the identity and sha256 of every model used;
- ``text_embeddings`` (people, dim) and ``feature_mean`` (dim,): all recognition needs
  besides the image tower;
- ``text/<parameter>``: the tuned text-encoder weights, to train further.

Written atomically (:func:`models.io.atomic_writer`); saving or loading a bundle removes
the temporary files a killed save left in its folder.
"""

from __future__ import annotations

import dataclasses
import io
import json
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any, BinaryIO

import numpy as np
from numpy.typing import NDArray

from models.clip.identity import ClipIdentity
from models.errors import ModelError
from models.io import atomic_writer, remove_stale_temps

SCHEMA_VERSION = 2  # 2 added person_ids, source, version, trained_at
READABLE_VERSIONS = (1, 2)
FORMAT = "clip-face-kiosk recognizer bundle"


class BundleError(ModelError):
    """A bundle file is missing, corrupt, or of another version. The message says so."""


@dataclass(frozen=True)
class BundleSettings:
    prompt: str
    context_length: int  # prompt tokens kept (the truncated text context)
    trainable_layers: int
    threshold: float
    align_margin: float
    detector: str
    detector_input_size: int
    epochs: int
    learning_rate: float
    weight_decay: float
    batch_size: int
    max_classes_per_step: int
    seed: int
    test_fraction: float
    train_logit_scale: bool
    subtract_null_prompt: bool
    angular_margin: float = 0.0  # bundles of schema 1 predate the option


@dataclass(frozen=True)
class RecognizerBundle:
    people: list[str]
    text_embeddings: NDArray[np.float32]
    feature_mean: NDArray[np.float32]
    logit_scale: float
    identity: ClipIdentity
    settings: BundleSettings
    metrics: dict[str, Any]
    models: dict[str, dict[str, str]]  # name -> {"file", "sha256"} of every model used
    text_state: dict[str, NDArray[np.float32]] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION
    person_ids: list[str] = field(default_factory=list)  # one per person; default: people
    # {"kind": "store", "digest": <StoreState digest>} or {"kind": "folder", "path": ...}
    source: dict[str, str] = field(default_factory=dict)
    version: int = 1  # each bundle trained over another one counts up
    trained_at: str = ""  # ISO 8601, UTC

    def __post_init__(self) -> None:
        if not self.person_ids:
            object.__setattr__(self, "person_ids", list(self.people))
        if len(self.person_ids) != len(self.people):
            raise ValueError("one person id per person is needed")

    def without(self, person_ids: set[str]) -> RecognizerBundle:
        """This bundle with those people's rows dropped (an erasure, before any retrain).

        The tuned text-encoder weights go too when anyone is dropped: they were learnt
        from the erased people's photos, so the next training starts from CLIP's own
        weights (cold), never from weights that still carry them. Recognition needs only
        the rows kept here."""
        keep = [i for i, key in enumerate(self.person_ids) if key not in person_ids]
        if len(keep) == len(self.person_ids):
            return self
        return dataclasses.replace(
            self,
            people=[self.people[i] for i in keep],
            person_ids=[self.person_ids[i] for i in keep],
            text_embeddings=self.text_embeddings[keep],
            text_state={},
        )

    def renamed(self, names: dict[str, str]) -> RecognizerBundle:
        """This bundle showing ``names[person id]`` (a rename, until the retrain)."""
        shown = [
            names.get(key, name) for key, name in zip(self.person_ids, self.people, strict=True)
        ]
        return dataclasses.replace(self, people=shown)


def save_bundle(bundle: RecognizerBundle, path: Path) -> Path:
    remove_stale_temps(path.parent)
    with atomic_writer(path) as stream:
        _write(bundle, stream)
    return path


def bundle_bytes(bundle: RecognizerBundle) -> bytes:
    """The bundle as :func:`save_bundle` writes it, in memory (the site registry's copy)."""
    stream = io.BytesIO()
    _write(bundle, stream)
    return stream.getvalue()


def _write(bundle: RecognizerBundle, stream: IO[bytes]) -> None:
    meta = {
        "format": FORMAT,
        "schema_version": bundle.schema_version,
        "people": bundle.people,
        "person_ids": bundle.person_ids,
        "source": bundle.source,
        "version": bundle.version,
        "trained_at": bundle.trained_at,
        "logit_scale": bundle.logit_scale,
        "identity": asdict(bundle.identity),
        "settings": asdict(bundle.settings),
        "metrics": bundle.metrics,
        "models": bundle.models,
    }
    arrays: dict[str, NDArray[Any]] = {
        "meta.json": np.frombuffer(json.dumps(meta, ensure_ascii=False).encode(), np.uint8),
        "text_embeddings": np.asarray(bundle.text_embeddings, dtype=np.float32),
        "feature_mean": np.asarray(bundle.feature_mean, dtype=np.float32),
    }
    for name, value in bundle.text_state.items():
        arrays[f"text/{name}"] = np.asarray(value, dtype=np.float32)
    np.savez(stream, **arrays)  # type: ignore[arg-type]


def load_bundle(path: Path) -> RecognizerBundle:
    remove_stale_temps(path.parent)
    if not path.is_file():
        raise BundleError(f"recognizer bundle {path} does not exist; create it with `kiosk train`")
    return _read(path, path)


def bundle_from_bytes(data: bytes, where: str) -> RecognizerBundle:
    """A bundle held in memory (``where`` names it in messages), checked as a file is."""
    return _read(io.BytesIO(data), where)


def _read(source: Path | BinaryIO, path: Path | str) -> RecognizerBundle:
    try:
        with np.load(source, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as error:
        raise BundleError(
            f"{path} is not a recognizer bundle (unreadable: {error}); "
            "create one with `kiosk train`"
        ) from error
    try:
        meta = json.loads(bytes(arrays["meta.json"]).decode())
    except (KeyError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise BundleError(f"{path} is not a recognizer bundle (no valid meta.json)") from error
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise BundleError(f"{path} is not a recognizer bundle")
    version = meta.get("schema_version")
    if version not in READABLE_VERSIONS:
        raise BundleError(
            f"{path} has bundle schema version {version}; this program reads versions "
            f"{', '.join(map(str, READABLE_VERSIONS))}. Fix: train the bundle again with "
            "`kiosk train`."
        )
    try:
        bundle = RecognizerBundle(
            people=[str(name) for name in meta["people"]],
            text_embeddings=np.asarray(arrays["text_embeddings"], dtype=np.float32),
            feature_mean=np.asarray(arrays["feature_mean"], dtype=np.float32),
            logit_scale=float(meta["logit_scale"]),
            identity=ClipIdentity(**meta["identity"]),
            settings=BundleSettings(**meta["settings"]),
            metrics=dict(meta["metrics"]),
            models={str(k): dict(v) for k, v in meta["models"].items()},
            text_state={
                name.removeprefix("text/"): value
                for name, value in arrays.items()
                if name.startswith("text/")
            },
            schema_version=SCHEMA_VERSION,
            person_ids=[str(key) for key in meta.get("person_ids", [])],
            source={str(k): str(v) for k, v in meta.get("source", {}).items()},
            version=int(meta.get("version", 1)),
            trained_at=str(meta.get("trained_at", "")),
        )
    except (KeyError, TypeError, ValueError) as error:
        raise BundleError(f"{path} is a damaged recognizer bundle: {error!r}") from error
    people, dim = len(bundle.people), bundle.feature_mean.shape
    if bundle.text_embeddings.ndim != 2 or bundle.text_embeddings.shape[0] != people:
        raise BundleError(
            f"{path}: {people} people but text embeddings of shape {bundle.text_embeddings.shape}"
        )
    if dim != bundle.text_embeddings.shape[1:]:
        raise BundleError(f"{path}: feature mean and text embeddings disagree in size")
    return bundle
