"""First run: the model files a kiosk needs, what downloading them means, and the download.

``kiosk run`` and ``kiosk models fetch`` (no names) call :func:`ensure_models` before
anything else. When files are missing or corrupt it lists each one with its state, size,
licence and source, asks once (``--yes`` skips the question; with no terminal nothing is
downloaded and the message lists every file and gives the exact command), then fetches
them with a progress bar, from the site mirror (``[models] mirror``) first. Files that
cannot be had (no address, no internet, a checksum that does not match) end in one
:class:`UserError` that says why for each and names the folder to put them in and each
file's sha256.
"""

from __future__ import annotations

import shlex
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
    """The CLIP weights, unless the bundle's ONNX image tower is already cached beside it.

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
    return [r.name for r in _not_ok(names, model_dir)]


def _not_ok(names: Sequence[str], model_dir: Path) -> list[registry.VerifyResult]:
    return [r for r in registry.verify_all(model_dir, list(names)) if r.status != "ok"]


def kiosk_command(home: Path | None = None, config: Path | None = None) -> str:
    """``kiosk`` with the ``--home`` and ``--config`` the user gave: the prefix of every
    command a message suggests, so that command acts on the same files."""
    words = ["kiosk"]
    if home is not None:
        words += ["--home", str(home)]
    if config is not None:
        words += ["--config", str(config)]
    return shlex.join(words)


def rerun_command(kiosk: str, *, windowed: bool = False, source: str | None = None) -> str:
    """``kiosk run`` as the user ran it (window mode, source): what to rerun with ``--yes``."""
    words = ["run", *(["--windowed"] if windowed else [])]
    if source is not None:
        words += ["--source", source]
    return f"{kiosk} {shlex.join(words)}"


def repair_command(
    name: str, model_dir: Path, mirror: str | None = None, kiosk: str = "kiosk"
) -> str:
    """The fix for a missing or corrupt ``name``: a fetch command when it can be downloaded
    (which replaces a corrupt file), else where to put the file."""
    fix = registry.fix_command(name, model_dir, mirror)
    return kiosk + fix[len("kiosk") :] if fix.startswith("kiosk ") else fix


def _size_text(model: registry.ModelSpec, mirror: str | None = None) -> str:
    if model.size is None:
        return "size not recorded"
    text = f"{model.size / 1e6:.1f} MB"
    first = next(iter(registry.sources(model, mirror)), None)
    if first is not None and first.archive_member:
        archive = first.url.rsplit("/", 1)[-1]
        text += f", taken from the larger archive {archive}"
    return text


def _file_line(result: registry.VerifyResult, mirror: str | None) -> str:
    model = registry.spec(result.name)
    state: str = result.status
    if state == "corrupt":
        how = "a download replaces it" if registry.sources(model, mirror) else "replace it"
        state = f"corrupt: its sha256 is not the manifest's, {how}"
    return f"  {model.file} ({result.name}, {_size_text(model, mirror)}): {state}"


def describe(names: Sequence[str], model_dir: Path, mirror: str | None = None) -> str:
    """What fetching ``names`` into ``model_dir`` means: one paragraph per file, with its
    state (missing or corrupt), size, licence and where it would come from."""
    results = {r.name: r for r in registry.verify_all(model_dir, list(names))}
    lines = [f"The kiosk needs these model files in {model_dir}:"]
    for name in names:
        model = registry.spec(name)
        places = [f"{s.url} ({s.where})" for s in registry.sources(model, mirror)]
        where = ", else ".join(places) or "no download address: put the file there yourself"
        lines.append(_file_line(results[name], mirror))
        lines.append(f"      licence: {model.licence}")
        lines.append(f"      from: {where}")
    licences = [registry.spec(n).licence for n in names]
    if any("non-commercial" in licence for licence in licences):
        lines.append(
            "insightface's models are for non-commercial research only; for other use choose "
            'the MIT-licensed YuNet detector: [detector] name = "yunet" in the config.'
        )
    for name in names:
        model = registry.spec(name)
        if model.licence.startswith("GPL"):
            lines.append(
                f"{model.file} is {model.licence.split(' ', 1)[0]} licensed (from "
                f"{model.url or model.source}): it is downloaded to this machine and never "
                "shipped with the kiosk; check the GPL's terms before you pass it on."
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
    mirror: str | None = None,
    assume_yes: bool = False,
    command: str = "kiosk models fetch",
    kiosk: str = "kiosk",
    stdin: TextIO | None = None,
    out: TextIO | None = None,
    opener: Callable[[str], object] = registry.open_url,
) -> list[str]:
    """Make sure every model in ``names`` is in ``model_dir``; returns the names fetched.

    A missing or corrupt file is fetched, from the site ``mirror`` first. ``command`` is
    the command that was run (its ``--yes`` form is suggested) and ``kiosk`` the prefix
    of the fetch command suggested (:func:`kiosk_command`). Raises :class:`UserError` when
    the user declines, when there is no terminal to ask on (the message lists every file
    and gives the command to run), or when some file could not be had.
    """
    stdin = stdin if stdin is not None else sys.stdin
    out = out if out is not None else sys.stderr
    bad = _not_ok(names, model_dir)
    if not bad:
        return []
    missing = [r.name for r in bad]
    downloadable = [n for n in missing if registry.sources(registry.spec(n), mirror)]
    manual = [n for n in missing if n not in downloadable]
    out.write(describe(missing, model_dir, mirror) + "\n")
    if downloadable and not assume_yes:
        fetch_command = f"{kiosk} models fetch {' '.join(downloadable)}"
        listing = "\n".join(_file_line(r, mirror) for r in bad)
        if manual:
            listing += "\n" + manual_fix(manual, model_dir)
        if not stdin.isatty():
            states = " or ".join(sorted({r.status for r in bad}, reverse=True))
            raise UserError(
                f"{len(bad)} model file(s) the kiosk needs are {states} in "
                f"{model_dir}:\n{listing}\nThere is no terminal to ask before downloading: "
                f"run `{fetch_command}` (or `{command} --yes`)."
            )
        if not _confirm(f"Download {len(downloadable)} file(s) now?", stdin, out):
            raise UserError(f"nothing was downloaded; run `{fetch_command}` when ready:\n{listing}")
    fetched: list[str] = []
    failed: list[str] = []
    for name in downloadable:
        bar = ProgressBar(name, out)
        try:
            registry.fetch(name, model_dir, mirror=mirror, progress=bar, opener=opener)
        except ModelError as error:
            bar.finish("FAILED")
            failed.append(f"  {name}: {error}")
        else:
            bar.finish("ok")
            fetched.append(name)
    if failed or manual:
        parts = []
        if failed:
            parts.append(f"{len(failed)} model file(s) could not be downloaded:")
            parts.extend(failed)
        if manual:
            parts.append(
                f"{len(manual)} model file(s) cannot be downloaded; "
                + manual_fix(manual, model_dir)
            )
        raise UserError("\n".join(parts))
    return fetched
