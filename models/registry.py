"""The model manifest: what every model file is, where it lives, how it is checked.

The model directory is resolved in a fixed order: the configured directory, then
``$KIOSK_MODEL_DIR``, then ``models/`` in the data directory (:mod:`models.paths`, which
``$KIOSK_HOME`` moves). Nothing here downloads except :func:`fetch`, which ``kiosk models
fetch`` and the first run call explicitly. A site mirror (``[models] mirror``: a web
server's base URL or a folder, laid out like a model directory) is tried before each
file's public address; whatever the source, the file's sha256 is checked.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import re
import shutil
import tomllib
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Literal

from models.errors import ModelError
from models.io import atomic_path, remove_stale_temps, scratch_path
from models.paths import user_data_dir

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
    """The configured directory, else ``$KIOSK_MODEL_DIR``, else ``models/`` in the data dir."""
    if configured:
        return Path(configured).expanduser()
    env = os.environ.get(MODEL_DIR_ENV)
    if env:
        return Path(env).expanduser()
    return user_data_dir() / "models"


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


def _replace_hint(model: ModelSpec, model_dir: Path) -> str:
    if model.url:
        return f"run `kiosk models fetch {model.name}`, which downloads it again and replaces it"
    return (
        f"replace it with the file of that sha256 in {model_dir} (source: {model.source}), "
        f"then check it with `kiosk models verify {model.name}`"
    )


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
                f"sha256 {actual}, expected {model.sha256}. Fix: {_replace_hint(model, model_dir)}."
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
_URL_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def open_url(url: str) -> object:
    """``urlopen`` with a timeout: a network that drops packets fails in 30 s, not never."""
    return urllib.request.urlopen(url, timeout=CONNECT_TIMEOUT_S)


@dataclass(frozen=True)
class Source:
    """One place a model file can be downloaded from."""

    url: str
    where: str  # "site mirror" or "public address", for messages
    archive_member: str | None = None  # the file is this member of a zip archive


def mirror_url(mirror: str | os.PathLike[str], file: str) -> str:
    """The URL of ``file`` on a site mirror: a base URL (``http://...``), or a folder."""
    text = os.fspath(mirror)
    if _URL_SCHEME.match(text):
        return text.rstrip("/") + "/" + urllib.parse.quote(file)
    return (Path(text).expanduser().absolute() / file).as_uri()


def sources(model: ModelSpec, mirror: str | os.PathLike[str] | None = None) -> list[Source]:
    """Where ``model`` can be downloaded from, in the order tried: the site mirror, which
    holds the files as a model directory does (never an archive), then the public address."""
    found = []
    if mirror:
        found.append(Source(mirror_url(mirror, model.file), "site mirror"))
    if model.url:
        found.append(Source(model.url, "public address", model.archive_member))
    return found


def fix_command(name: str, model_dir: Path, mirror: str | os.PathLike[str] | None = None) -> str:
    """What repairs a missing or corrupt ``name``: the fetch command, else where to put it."""
    model = spec(name)
    if sources(model, mirror):
        return f"kiosk models fetch {name}"
    return (
        f"put {model.file} (sha256 {model.sha256}) in {model_dir}, then "
        f"`kiosk models verify {name}` (source: {model.source})"
    )


class _WrongFile(Exception):
    """A download completed, but it is not the manifest's file."""


def fetch(
    name: str,
    model_dir: Path,
    *,
    mirror: str | os.PathLike[str] | None = None,
    progress: ProgressCallback | None = None,
    opener: Callable[[str], object] = open_url,
) -> Path:
    """Download model ``name`` into ``model_dir``, check its sha256, write it atomically.

    The site ``mirror`` is tried first, then the public address. An existing file with
    the right checksum is kept; a corrupt one is replaced only by a download that passes.
    Nothing is left behind on failure, and what a killed download left (temporary files)
    is removed first.
    """
    model = spec(name)
    target = model_dir / model.file
    if target.is_file() and _cached_sha256(target) == model.sha256:
        return target
    tried = sources(model, mirror)
    if not tried:
        raise ModelError(
            f"model {model.name} has no download address and no site mirror is set "
            f"([models] mirror); {_fix_hint(model, model_dir)}."
        )
    model_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(model_dir)
    failures: list[tuple[Source, str, bool]] = []  # (source, reason, downloaded a wrong file)
    for source in tried:
        try:
            _fetch_from(source, model, target, progress, opener)
        except (OSError, http.client.HTTPException) as error:
            failures.append((source, f"{error}", False))
        except _WrongFile as error:
            failures.append((source, f"{error}", True))
        else:
            return target
    raise ModelError(_failure_message(model, model_dir, failures))


def _fetch_from(
    source: Source,
    model: ModelSpec,
    target: Path,
    progress: ProgressCallback | None,
    opener: Callable[[str], object],
) -> None:
    # Model files are shared by everyone on the machine: 0644, not mkstemp's 0600.
    with atomic_path(target, permissions=0o644) as payload, contextlib.ExitStack() as stack:
        download = payload
        if source.archive_member:  # the archive is a scratch file, removed in any case
            download = stack.enter_context(scratch_path(target.parent, ".zip"))
        _download(source.url, download, progress, opener)
        if source.archive_member:
            _extract_member(download, source.archive_member, payload)
        actual = sha256_file(payload)
        if actual != model.sha256:
            raise _WrongFile(f"its sha256 is {actual}, expected {model.sha256}")


def _failure_message(
    model: ModelSpec, model_dir: Path, failures: list[tuple[Source, str, bool]]
) -> str:
    reasons = "; ".join(f"{source.where} {source.url}: {reason}" for source, reason, _ in failures)
    put = f"put {model.file} (sha256 {model.sha256}) in {model_dir}"
    if any(wrong for _, _, wrong in failures):
        return (
            f"could not fetch {model.name}, nothing was written: {reasons}. A file with another "
            "sha256 is not the one this kiosk was checked with (the source may have replaced "
            f"it, or the download was altered on the way). Fix: {put} from a copy you trust "
            f"(another kiosk's `kiosk models verify` passes on it), or on the site mirror, "
            f"then check it with `kiosk models verify {model.name}`; do not change the "
            "manifest's sha256 to match a file nobody has checked."
        )
    return (
        f"could not download {model.name} ({reasons}). Without internet, {put}, "
        f"or set [models] mirror to a site web server or folder that holds it."
    )


def _download(
    url: str, dest: Path, progress: ProgressCallback | None, opener: Callable[[str], object]
) -> None:
    """Stream ``url`` into ``dest``; an answer shorter than its Content-Length is an error."""
    with opener(url) as response, dest.open("wb") as out:  # type: ignore[attr-defined]
        total_header = response.headers.get("Content-Length")
        total = int(total_header) if total_header else None
        done = 0
        for chunk in iter(lambda: response.read(_CHUNK), b""):
            out.write(chunk)
            done += len(chunk)
            if progress:
                progress(done, total)
        if total is not None and done != total:
            raise OSError(f"the download broke off after {done} of {total} bytes")


def _extract_member(archive: Path, member: str, dest: Path) -> None:
    try:
        with zipfile.ZipFile(archive) as zf:
            matches = [n for n in zf.namelist() if n == member or n.endswith("/" + member)]
            if not matches:
                raise _WrongFile(f"{member} is not in the downloaded archive")
            with zf.open(matches[0]) as src, dest.open("wb") as out:
                shutil.copyfileobj(src, out, _CHUNK)
    except zipfile.BadZipFile as error:
        raise _WrongFile(f"the downloaded archive is not a zip file: {error}") from error
