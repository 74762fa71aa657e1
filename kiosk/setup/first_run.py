"""First run: the model files a kiosk needs, what downloading them means, and the download.

``kiosk run`` and ``kiosk models fetch`` (no names) call :func:`ensure_models` before
anything else. When files are missing it lists each one with its size, licence and source,
asks once (``--yes`` skips the question; with no terminal nothing is downloaded and the
exact command is printed), then fetches them with a progress bar. Files that cannot be
downloaded (no address, or no internet) end in one :class:`UserError` that names the folder
to put them in and each file's sha256.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TextIO

from kiosk.config import KioskConfig
from models import registry
from models.errors import ModelError, UserError

BAR_WIDTH = 30


def needed_models(config: KioskConfig) -> list[str]:
    """The manifest names the door-side kiosk loads with this configuration."""
    from kiosk.build import MOBILEFACENET
    from models.antispoof import LIVENESS_MODELS

    names: list[str] = [config.detector.name]
    if config.recognizer.kind in ("embedding_gallery", "fusion"):
        if config.recognizer.embedder == "mobilefacenet":
            names.append(MOBILEFACENET)
        else:
            names.extend(_clip_gallery_weights_needed(config))
    if config.recognizer.kind in ("clip", "fusion"):
        names.extend(n for n in _clip_weights_needed(config) if n not in names)
    if config.liveness.enabled:
        names.extend(name for name, _ in LIVENESS_MODELS)
    return names


def _clip_gallery_weights_needed(config: KioskConfig) -> list[str]:
    """The CLIP weights, unless the gallery's ONNX image tower is already in the cache."""
    from models.clip.embedder import ClipFaceEmbedder
    from models.clip.identity import OPENAI_WEIGHTS
    from models.paths import user_cache_dir

    if config.clip.pretrained != "openai":
        return []
    cached = ClipFaceEmbedder.tower_path(config.clip.model, "openai", user_cache_dir() / "clip")
    return [] if cached.is_file() else [OPENAI_WEIGHTS]


def _clip_weights_needed(config: KioskConfig) -> list[str]:
    """The CLIP weights, when a bundle's ONNX image tower must be rebuilt from them.

    A bundle trained on this machine has its tower cached beside it and needs nothing; no
    bundle yet means the first one will be trained from the people store, which needs
    the weights (unless the configuration trains an untrained tower); an unreadable
    bundle is reported when it loads.
    """
    from kiosk.build import bundle_path
    from models.clip.bundle import BundleError, load_bundle
    from models.clip.classifier import onnx_tower_path
    from models.clip.identity import OPENAI_WEIGHTS

    path = bundle_path(config)
    if not path.is_file():
        return [OPENAI_WEIGHTS] if config.clip.pretrained == "openai" else []
    try:
        identity = load_bundle(path).identity
    except BundleError:
        return []
    if identity.pretrained != "openai" or onnx_tower_path(path, identity).is_file():
        return []
    return [OPENAI_WEIGHTS]


def missing_models(names: Sequence[str], model_dir: Path) -> list[str]:
    """Those of ``names`` whose file is absent or fails its sha256."""
    return [r.name for r in registry.verify_all(model_dir, list(names)) if r.status != "ok"]


def _size_text(model: registry.ModelSpec) -> str:
    if model.size is None:
        return "size not recorded"
    text = f"{model.size / 1e6:.1f} MB"
    if model.archive_member and model.url:
        archive = model.url.rsplit("/", 1)[-1]
        text += f", taken from the larger archive {archive}"
    return text


def describe(names: Sequence[str], model_dir: Path) -> str:
    """What fetching ``names`` into ``model_dir`` means: one paragraph per file."""
    lines = [f"The kiosk needs these model files in {model_dir}:"]
    for name in names:
        model = registry.spec(name)
        where = model.url or "no download address: put the file there yourself"
        lines.append(f"  {model.file} ({name}, {_size_text(model)})")
        lines.append(f"      licence: {model.licence}")
        lines.append(f"      from: {where}")
    if any("non-commercial" in registry.spec(n).licence for n in names):
        lines.append(
            "insightface's models are for non-commercial research only; for other use choose "
            'the MIT-licensed YuNet detector: [detector] name = "yunet" in the config.'
        )
    return "\n".join(lines)


def manual_fix(names: Sequence[str], model_dir: Path) -> str:
    """The message for files the kiosk cannot download itself: folder and sha256 of each."""
    lines = [f"put these files in {model_dir} (the sha256 of each is checked):"]
    for name in names:
        model = registry.spec(name)
        lines.append(f"  {model.file}  sha256 {model.sha256}  ({model.source})")
    lines.append("then check them with `kiosk models verify`.")
    return "\n".join(lines)


class ProgressBar:
    """A one-line text progress bar for one download, redrawn at most every 0.1 s."""

    def __init__(self, label: str, stream: TextIO) -> None:
        self._label = label
        self._stream = stream
        self._last = 0.0

    def __call__(self, done: int, total: int | None) -> None:
        now = time.monotonic()
        if now - self._last < 0.1 and (total is None or done < total):
            return
        self._last = now
        if total:
            filled = min(BAR_WIDTH, BAR_WIDTH * done // total)
            bar = "#" * filled + "-" * (BAR_WIDTH - filled)
            text = f"{self._label} [{bar}] {100 * done // total:3d}% "
            text += f"{done / 1e6:.1f}/{total / 1e6:.1f} MB"
        else:
            text = f"{self._label} {done / 1e6:.1f} MB"
        self._stream.write("\r" + text)
        self._stream.flush()

    def finish(self, result: str) -> None:
        self._stream.write(f"\r{self._label}: {result}\n")
        self._stream.flush()


def _confirm(question: str, stdin: TextIO, out: TextIO) -> bool:
    out.write(f"{question} [y/N] ")
    out.flush()
    return stdin.readline().strip().lower() in ("y", "yes")


def ensure_models(
    names: Sequence[str],
    model_dir: Path,
    *,
    assume_yes: bool = False,
    command: str = "kiosk models fetch",
    stdin: TextIO | None = None,
    out: TextIO | None = None,
    opener: Callable[[str], object] = registry.open_url,
) -> list[str]:
    """Make sure every model in ``names`` is in ``model_dir``; returns the names fetched.

    Raises :class:`UserError` when the user declines, when there is no terminal to ask on
    (the message gives the command to run), or when some file could not be had.
    """
    stdin = stdin if stdin is not None else sys.stdin
    out = out if out is not None else sys.stderr
    missing = missing_models(names, model_dir)
    if not missing:
        return []
    downloadable = [n for n in missing if registry.spec(n).url]
    manual = [n for n in missing if not registry.spec(n).url]
    out.write(describe(missing, model_dir) + "\n")
    if downloadable and not assume_yes:
        fetch_command = f"kiosk models fetch {' '.join(downloadable)}"
        if not stdin.isatty():
            raise UserError(
                "model files are missing and there is no terminal to ask before downloading; "
                f"run `{fetch_command}` (or `{command} --yes`)"
            )
        if not _confirm(f"Download {len(downloadable)} file(s) now?", stdin, out):
            raise UserError(f"nothing was downloaded; run `{fetch_command}` when ready")
    fetched: list[str] = []
    failed: list[str] = []
    for name in downloadable:
        bar = ProgressBar(name, out)
        try:
            registry.fetch(name, model_dir, progress=bar, opener=opener)
        except ModelError as error:
            bar.finish(f"FAILED ({error})")
            failed.append(name)
        else:
            bar.finish("ok")
            fetched.append(name)
    if failed or manual:
        reason = "could not be downloaded (no internet?)" if failed else "cannot be downloaded"
        fix = manual_fix(failed + manual, model_dir)
        raise UserError(f"{len(failed) + len(manual)} model file(s) {reason}; {fix}")
    return fetched
