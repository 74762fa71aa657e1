"""The model manifest: what every model file is, where it lives, how it is checked.

The model directory is resolved in a fixed order: the configured directory, then
``$KIOSK_MODEL_DIR``, then the user's data directory. Nothing here downloads except
:func:`fetch`, which the ``kiosk models fetch`` command calls explicitly.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tomllib
import urllib.request
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Literal

import platformdirs

from models.errors import ModelError
from models.io import atomic_path, remove_stale_temps, scratch_path

ModelKind = Literal["detector", "clip", "embedder", "antispoof"]
MODEL_DIR_ENV = "KIOSK_MODEL_DIR"
_CHUNK = 1 << 20


@dataclass(frozen=True)
class ModelSpec:
    name: str
    kind: ModelKind
    file: str
    sha256: str
    source: str
    licence: str
    preprocessing: str
    url: str | None = None
    archive_member: str | None = None
    size: int | None = None


def load_manifest() -> dict[str, ModelSpec]:
    text = resources.files("models").joinpath("manifest.toml").read_text(encoding="utf-8")
    raw = tomllib.loads(text)["models"]
    return {name: ModelSpec(name=name, **fields) for name, fields in raw.items()}


def spec(name: str) -> ModelSpec:
    manifest = load_manifest()
    try:
        return manifest[name]
    except KeyError:
        known = ", ".join(sorted(manifest))
        raise ModelError(f"unknown model {name!r}; known models: {known}") from None


def resolve_model_dir(configured: str | os.PathLike[str] | None = None) -> Path:
    """The configured directory, else ``$KIOSK_MODEL_DIR``, else the user's data directory."""
    if configured:
        return Path(configured).expanduser()
    env = os.environ.get(MODEL_DIR_ENV)
    if env:
        return Path(env).expanduser()
    return Path(platformdirs.user_data_dir("clip-face-kiosk")) / "models"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for chunk in iter(lambda: stream.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _fix_hint(model: ModelSpec, model_dir: Path) -> str:
    if model.url:
        return f"run `kiosk models fetch {model.name}`, or put the file in {model_dir}"
    return f"put the file in {model_dir} (source: {model.source})"


def model_path(name: str, model_dir: Path, *, verify: bool = True) -> Path:
    """Path of model ``name`` in ``model_dir``; raises :class:`ModelError` if missing or corrupt."""
    model = spec(name)
    path = model_dir / model.file
    if not path.is_file():
        raise ModelError(
            f"model file {model.file} ({model.name}) is missing from {model_dir}; "
            f"expected sha256 {model.sha256}. Fix: {_fix_hint(model, model_dir)}."
        )
    if verify:
        actual = _cached_sha256(path)
        if actual != model.sha256:
            raise ModelError(
                f"model file {path} ({model.name}) is corrupt or a different version: "
                f"sha256 {actual}, expected {model.sha256}. Fix: delete it and "
                f"{_fix_hint(model, model_dir)}."
            )
    return path


_sha_cache: dict[tuple[str, int, int], str] = {}


def _cached_sha256(path: Path) -> str:
    """sha256 of a file, remembered for as long as its size and mtime do not change."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _sha_cache:
        _sha_cache[key] = sha256_file(path)
    return _sha_cache[key]


@dataclass(frozen=True)
class VerifyResult:
    name: str
    path: Path
    status: Literal["ok", "missing", "corrupt"]
    detail: str = ""


def verify_all(model_dir: Path, names: list[str] | None = None) -> Iterator[VerifyResult]:
    """Each model's status in ``model_dir``; temporary files of killed downloads are removed."""
    remove_stale_temps(model_dir)
    manifest = load_manifest()
    for name in names or sorted(manifest):
        model = spec(name)
        path = model_dir / model.file
        try:
            model_path(name, model_dir)
        except ModelError as error:
            status: Literal["missing", "corrupt"] = "missing" if not path.exists() else "corrupt"
            yield VerifyResult(name, path, status, str(error))
        else:
            yield VerifyResult(name, path, "ok")


ProgressCallback = Callable[[int, int | None], None]
CONNECT_TIMEOUT_S = 30.0


def open_url(url: str) -> object:
    """``urlopen`` with a timeout: a network that drops packets fails in 30 s, not never."""
    return urllib.request.urlopen(url, timeout=CONNECT_TIMEOUT_S)


def fetch(
    name: str,
    model_dir: Path,
    *,
    progress: ProgressCallback | None = None,
    opener: Callable[[str], object] = open_url,
) -> Path:
    """Download model ``name`` into ``model_dir``, check its sha256, write it atomically.

    An existing file with the right checksum is kept. Nothing is left behind on failure,
    and what a killed download left (temporary files) is removed first.
    """
    model = spec(name)
    target = model_dir / model.file
    if target.is_file() and _cached_sha256(target) == model.sha256:
        return target
    if not model.url:
        raise ModelError(
            f"model {model.name} has no download address; {_fix_hint(model, model_dir)}."
        )
    model_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(model_dir)
    # Model files are shared by everyone on the machine: 0644, not mkstemp's 0600.
    with atomic_path(target, permissions=0o644) as payload, contextlib.ExitStack() as stack:
        download = payload
        if model.archive_member:  # the archive is a scratch file, removed in any case
            download = stack.enter_context(scratch_path(model_dir, ".zip"))
        try:
            _download(model.url, download, progress, opener)
        except OSError as error:
            raise ModelError(
                f"could not download {model.name} from {model.url}: {error}. "
                f"Without internet, put {model.file} (sha256 {model.sha256}) in {model_dir}."
            ) from error
        if model.archive_member:
            _extract_member(download, model.archive_member, payload)
        actual = sha256_file(payload)
        if actual != model.sha256:
            raise ModelError(
                f"downloaded {model.name} has sha256 {actual}, expected {model.sha256}; "
                f"nothing was written. The source may have changed: {model.url}"
            )
    return target


def _download(
    url: str, dest: Path, progress: ProgressCallback | None, opener: Callable[[str], object]
) -> None:
    with opener(url) as response, dest.open("wb") as out:  # type: ignore[attr-defined]
        total_header = response.headers.get("Content-Length")
        total = int(total_header) if total_header else None
        done = 0
        for chunk in iter(lambda: response.read(_CHUNK), b""):
            out.write(chunk)
            done += len(chunk)
            if progress:
                progress(done, total)


def _extract_member(archive: Path, member: str, dest: Path) -> None:
    try:
        with zipfile.ZipFile(archive) as zf:
            matches = [n for n in zf.namelist() if n == member or n.endswith("/" + member)]
            if not matches:
                raise ModelError(f"{member} is not in the downloaded archive")
            with zf.open(matches[0]) as src, dest.open("wb") as out:
                shutil.copyfileobj(src, out, _CHUNK)
    except zipfile.BadZipFile as error:
        raise ModelError(f"the downloaded archive is not a zip file: {error}") from error
