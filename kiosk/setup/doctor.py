"""`kiosk doctor`: what this machine offers the kiosk, and the exact fix for each problem.

:func:`run_doctor` fills a :class:`DoctorReport`: per section (python, qt, cameras,
models, onnxruntime, paths) the rows of the table :func:`format_report` prints, the
problems (each an error, the kiosk cannot run, or a warning, it runs worse, with its
fix), and the raw facts as ``checks`` for ``kiosk doctor --json``.
"""

from __future__ import annotations

import glob
import importlib.metadata
import os
import platform
import shutil
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from kiosk.config import KioskConfig, config_path
from models import registry
from models.errors import ModelError
from models.paths import HOME_ENV, kiosk_home, user_cache_dir, user_config_dir, user_data_dir

Severity = Literal["error", "warning"]
State = Literal["ok", "warning", "error", "info"]
MIN_FREE_BYTES = 2 * 1024**3
SECTIONS = ("python", "qt", "cameras", "models", "onnxruntime", "paths", "people", "site")


@dataclass(frozen=True)
class Problem:
    severity: Severity  # "error": the kiosk cannot run; "warning": it runs, worse
    what: str
    fix: str
    section: str = ""


@dataclass(frozen=True)
class Row:
    """One line of the doctor's table: ``label`` in ``section`` is in ``state``."""

    section: str
    state: State
    label: str
    detail: str
    fix: str = ""


@dataclass
class DoctorReport:
    checks: dict[str, Any] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    rows: list[Row] = field(default_factory=list)
    _shown: list[Problem] = field(default_factory=list, repr=False)

    @property
    def can_run(self) -> bool:
        return not any(p.severity == "error" for p in self.problems)

    def add(self, section: str, state: State, label: str, detail: str, fix: str = "") -> None:
        """A table row; a warning or an error is also one of the report's problems."""
        self.rows.append(Row(section, state, label, detail, fix))
        if state in ("warning", "error"):
            what = f"{label}: {detail}" if label else detail
            problem = Problem(state, what, fix, section)
            self.problems.append(problem)
            self._shown.append(problem)

    def unlisted(self) -> list[Problem]:
        """Problems a check appended without a table row (:meth:`add` makes both)."""
        return [p for p in self.problems if not any(p is shown for shown in self._shown)]

    def as_dict(self) -> dict[str, Any]:
        return {
            "can_run": self.can_run,
            "checks": self.checks,
            "problems": [asdict(p) for p in self.problems],
        }


def format_report(report: DoctorReport) -> str:
    """The human-readable table: one block per section, each problem with its fix."""
    lines: list[str] = []
    rows_of = [*report.rows]
    for problem in report.unlisted():  # shown all the same, under its section or "other"
        section = problem.section if problem.section in SECTIONS else "other"
        rows_of.append(Row(section, problem.severity, "", problem.what, problem.fix))
    label_width = max((len(row.label) for row in rows_of), default=0)
    for section in (*SECTIONS, "other"):
        rows = [row for row in rows_of if row.section == section]
        if not rows:
            continue
        lines.append(section)
        for row in rows:
            state = "-" if row.state == "info" else row.state
            lines.append(f"  {state:<8} {row.label:<{label_width}}  {row.detail}".rstrip())
            if row.fix:
                lines.append(f"  {'':<8} {'':<{label_width}}  fix: {row.fix}")
        lines.append("")
    errors = sum(p.severity == "error" for p in report.problems)
    warnings = len(report.problems) - errors
    counts = f"{errors} error(s), {warnings} warning(s)"
    if report.can_run:
        lines.append(f"ready ({counts})")
    else:
        lines.append(f"the kiosk cannot run ({counts}): fix the errors above")
    return "\n".join(lines)


def _check_python(report: DoctorReport) -> None:
    report.checks["python"] = {
        "version": platform.python_version(),
        "executable": sys.executable,
        "platform": platform.platform(),
    }
    report.add("python", "ok", "python", f"{platform.python_version()} ({sys.executable})")


def pyside_problem(pyside_version: str | None, python: tuple[int, int]) -> Problem | None:
    """PySide6 6.12.0 on Python < 3.12 leaks references to None: a kiosk dies within minutes."""
    if pyside_version is None or python >= (3, 12):
        return None
    release = tuple(int(part) for part in pyside_version.split(".")[:3] if part.isdigit())
    if release != (6, 12, 0):
        return None
    return Problem(
        "warning",
        f"PySide6 6.12.0 on Python {python[0]}.{python[1]} leaks references to None and "
        'crashes a long-running kiosk ("none_dealloc") within minutes',
        'pip install "PySide6!=6.12.0" (or run on Python 3.12 or newer)',
        "qt",
    )


def _check_qt(report: DoctorReport, kiosk: str) -> None:
    display = os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    platform_name = os.environ.get("QT_QPA_PLATFORM") or ("default" if display else None)
    try:  # the installed distribution's version: Qt itself is not loaded here
        pyside_version: str | None = importlib.metadata.version("PySide6")
    except importlib.metadata.PackageNotFoundError:
        pyside_version = None
    report.checks["qt"] = {
        "pyside6": pyside_version,
        "qpa_platform": platform_name,
        "display": display,
    }
    if pyside_version is None:
        report.add("qt", "error", "PySide6", "not installed", "bash packaging/install.sh")
    else:
        leak = pyside_problem(pyside_version, (sys.version_info.major, sys.version_info.minor))
        if leak is not None:
            report.add("qt", "warning", "PySide6", leak.what, leak.fix)
        else:
            report.add("qt", "ok", "PySide6", pyside_version)
    if not display and sys.platform.startswith("linux") and platform_name is None:
        report.add(
            "qt",
            "warning",
            "screen",
            "none: DISPLAY and WAYLAND_DISPLAY are unset, so `kiosk run` cannot open",
            f"run on the kiosk's desktop session, or test with `xvfb-run {kiosk} run --windowed`",
        )
    else:
        report.add("qt", "ok", "screen", f"{display or '-'} (Qt platform {platform_name})")


def _check_cameras(report: DoctorReport, kiosk: str) -> None:
    if sys.platform.startswith("linux"):
        devices = sorted(glob.glob("/dev/video*"))
        report.checks["cameras"] = devices
        if devices:
            report.add("cameras", "ok", "cameras", ", ".join(devices))
        else:
            report.add(
                "cameras",
                "warning",
                "cameras",
                "no camera device (/dev/video*) found",
                f"plug in a webcam, or use `{kiosk} run --source VIDEO_FILE|RTSP_URL|FOLDER`",
            )
    else:
        report.checks["cameras"] = "not listed on this platform; `kiosk run` reports a missing one"
        report.add("cameras", "info", "cameras", report.checks["cameras"])


def _check_runtime(report: DoctorReport, config: KioskConfig, model_dir: Path) -> None:
    from models.runtime import CUDA, runtime_report

    runtime = runtime_report()
    info: dict[str, Any] = asdict(runtime)
    packages = ", ".join(f"{name} {version}" for name, version in runtime.packages.items())
    report.add("onnxruntime", "ok", "installed", packages or runtime.onnxruntime_version)
    for text in runtime.problems:
        what, _, fix = text.partition("; fix: ")
        report.add("onnxruntime", "warning", "runtime", what, fix)
    state = next(r.status for r in registry.verify_all(model_dir, [config.detector.name]))
    if state != "ok":  # the models section says what is wrong with it and how to fix it
        info["providers_in_use"] = None
        report.add("onnxruntime", "info", "providers", "not tried: the detector file is " + state)
        report.checks["onnxruntime"] = info
        return
    try:
        from models.detector import FaceDetector

        detector = FaceDetector.from_name(
            config.detector.name, model_dir, device=config.models.device, input_size=320
        )
    except ModelError as error:
        info["providers_in_use"] = None
        report.add("onnxruntime", "error", "providers", f"the detector does not load: {error}")
    else:
        info["providers_in_use"] = detector.providers
        report.add("onnxruntime", "ok", "providers", ", ".join(detector.providers))
        if runtime.nvidia_driver and CUDA not in detector.providers:
            report.add(
                "onnxruntime",
                "warning",
                "gpu",
                "an NVIDIA GPU is present but the detector runs on the CPU "
                "(CUDA or cuDNN libraries of the version onnxruntime-gpu needs are missing)",
                "bash packaging/install.sh (torch's nvidia-* wheels provide them), "
                "or install CUDA and cuDNN matching onnxruntime-gpu",
            )
    report.checks["onnxruntime"] = info


def _check_models(report: DoctorReport, config: KioskConfig, model_dir: Path, kiosk: str) -> None:
    from kiosk.setup.first_run import needed_models, repair_command

    needed = set(needed_models(config))
    mirror = config.models.mirror
    report.add("models", "info", "folder", str(model_dir))
    report.add("models", "info", "mirror", mirror or "none ([models] mirror)")
    rows = []
    for result in registry.verify_all(model_dir):
        model = registry.spec(result.name)
        rows.append({"name": result.name, "state": result.status, "path": str(result.path)})
        use = "needed" if result.name in needed else "not used by this config"
        if result.status == "ok":
            report.add("models", "ok", result.name, f"{model.file} ({use})")
        elif result.status == "missing" and result.name not in needed:
            report.add("models", "info", result.name, f"missing ({use})")
        else:
            # A corrupt file the config does not use cannot stop the kiosk, only mislead.
            state: State = "error" if result.name in needed else "warning"
            detail = (
                f"missing from {model_dir}"
                if result.status == "missing"
                else f"{result.path} is corrupt: its sha256 is not the manifest's"
            )
            fix = repair_command(result.name, model_dir, mirror, kiosk)
            report.add("models", state, result.name, f"{detail} ({use})", fix)
    report.checks["models"] = {"dir": str(model_dir), "mirror": mirror, "files": rows}


def _existing_parent(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _check_paths(report: DoctorReport, config_file: Path, model_dir: Path) -> None:
    home = kiosk_home()
    data_dir, cache_dir, config_dir = user_data_dir(), user_cache_dir(), user_config_dir()
    usage = shutil.disk_usage(_existing_parent(data_dir))
    report.checks["data"] = {"dir": str(data_dir), "free_bytes": usage.free}
    report.checks["paths"] = {
        "home": str(home) if home else None,
        "data": str(data_dir),
        "cache": str(cache_dir),
        "config_dir": str(config_dir),
        "config_file": str(config_file),
        "config_file_exists": config_file.is_file(),
        "models": str(model_dir),
    }
    origin = f"${HOME_ENV}" if home else "the user's directories"
    report.add("paths", "info", "home", f"{home} (${HOME_ENV})" if home else "not set")
    free = f"{usage.free / 1024**3:.1f} GiB free"
    if usage.free < MIN_FREE_BYTES:
        report.add(
            "paths",
            "warning",
            "data",
            f"{data_dir}: only {free}",
            f"free space on the disk holding {data_dir}",
        )
    else:
        report.add("paths", "ok", "data", f"{data_dir} ({free}; from {origin})")
    report.add("paths", "ok", "cache", str(cache_dir))
    state = "" if config_file.is_file() else " (not present: the defaults are used)"
    report.add("paths", "ok", "config", f"{config_file}{state}")


def _check_people(report: DoctorReport, config: KioskConfig) -> None:
    """Stored photos that cannot be read back, by person id (never by name): such a
    photo is left out of the gallery and the bundle while the others serve."""
    from enroll.keys import operator_key
    from enroll.store import DB_NAME, PeopleStore, default_store_dir
    from models.errors import UserError

    root = config.enroll.store_dir or default_store_dir()
    info: dict[str, Any] = {"dir": str(root), "exists": (root / DB_NAME).exists()}
    report.checks["people"] = info
    if not info["exists"]:
        report.add("people", "info", "store", f"{root} (none yet)")
        return
    try:
        # No retention: the doctor looks, it never purges anyone.
        with PeopleStore(root, key=operator_key(), retention_days=None) as store:
            info["people"] = len(store.people())
            damaged = store.damaged_photos()
    except UserError as error:
        report.add("people", "error", "store", f"{root} cannot be read: {error}")
        return
    info["damaged_photos"] = damaged
    if not damaged:
        report.add("people", "ok", "store", f"{root} ({info['people']} people)")
    for uid, reasons in damaged.items():
        report.add(
            "people",
            "warning",
            uid,
            f"{len(reasons)} stored photo(s) cannot be read and are left out of recognition "
            f"({reasons[0]})",
            "enroll the person again (`kiosk people list --json` shows who has this id), "
            "or restore the store's folder from a backup",
        )


def run_doctor(
    config: KioskConfig, *, config_file: Path | None = None, kiosk: str = "kiosk"
) -> DoctorReport:
    """``config_file`` is the file ``config`` came from (shown; default: where
    :func:`config_path` looks); ``kiosk`` the command prefix for the fixes it prints (with
    the user's ``--home`` and ``--config``, so the fix acts on the same files)."""
    report = DoctorReport()
    model_dir = registry.resolve_model_dir(config.models.dir)
    _check_python(report)
    _check_qt(report, kiosk)
    _check_cameras(report, kiosk)
    _check_models(report, config, model_dir, kiosk)
    _check_runtime(report, config, model_dir)
    _check_paths(report, config_file or config_path(), model_dir)
    _check_people(report, config)
    from kiosk.setup.site import check_site

    check_site(report, config)
    return report
