"""`kiosk doctor`: what this machine offers the kiosk, and the exact fix for each problem."""

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

from kiosk.config import KioskConfig
from models import registry
from models.errors import ModelError
from models.paths import user_data_dir

Severity = Literal["error", "warning"]
MIN_FREE_BYTES = 2 * 1024**3


@dataclass(frozen=True)
class Problem:
    severity: Severity  # "error": the kiosk cannot run; "warning": it runs, worse
    what: str
    fix: str


@dataclass
class DoctorReport:
    checks: dict[str, Any] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)

    @property
    def can_run(self) -> bool:
        return not any(p.severity == "error" for p in self.problems)

    def as_dict(self) -> dict[str, Any]:
        return {
            "can_run": self.can_run,
            "checks": self.checks,
            "problems": [asdict(p) for p in self.problems],
        }


def _check_python(report: DoctorReport) -> None:
    report.checks["python"] = {
        "version": platform.python_version(),
        "executable": sys.executable,
        "platform": platform.platform(),
    }


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
    )


def _check_qt(report: DoctorReport) -> None:
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
    if report.checks["qt"]["pyside6"] is None:
        report.problems.append(
            Problem("error", "PySide6 is not installed", "bash packaging/install.sh")
        )
    leak = pyside_problem(pyside_version, (sys.version_info.major, sys.version_info.minor))
    if leak is not None:
        report.problems.append(leak)
    if not display and sys.platform.startswith("linux") and platform_name is None:
        report.problems.append(
            Problem(
                "warning",
                "no screen: DISPLAY and WAYLAND_DISPLAY are unset, so `kiosk run` cannot open",
                "run on the kiosk's desktop session, or test with `xvfb-run kiosk run`",
            )
        )


def _check_cameras(report: DoctorReport) -> None:
    if sys.platform.startswith("linux"):
        devices = sorted(glob.glob("/dev/video*"))
        report.checks["cameras"] = devices
        if not devices:
            report.problems.append(
                Problem(
                    "warning",
                    "no camera device (/dev/video*) found",
                    "plug in a webcam, or use `kiosk run --source VIDEO_FILE|RTSP_URL|FOLDER`",
                )
            )
    else:
        report.checks["cameras"] = "not listed on this platform; `kiosk run` reports a missing one"


def _check_runtime(report: DoctorReport, config: KioskConfig, model_dir: Path) -> None:
    from models.runtime import CUDA, runtime_report

    runtime = runtime_report()
    info: dict[str, Any] = asdict(runtime)
    for text in runtime.problems:
        what, _, fix = text.partition("; fix: ")
        report.problems.append(Problem("warning", what, fix))
    try:
        from models.detector import FaceDetector

        detector = FaceDetector.from_name(
            config.detector.name, model_dir, device=config.models.device, input_size=320
        )
    except ModelError as error:
        info["providers_in_use"] = None
        report.problems.append(
            Problem("error", str(error), f"kiosk models fetch {config.detector.name}")
        )
    else:
        info["providers_in_use"] = detector.providers
        if runtime.nvidia_driver and CUDA not in detector.providers:
            report.problems.append(
                Problem(
                    "warning",
                    "an NVIDIA GPU is present but the detector runs on the CPU "
                    "(CUDA or cuDNN libraries of the version onnxruntime-gpu needs are missing)",
                    "bash packaging/install.sh (torch's nvidia-* wheels provide them), "
                    "or install CUDA and cuDNN matching onnxruntime-gpu",
                )
            )
    report.checks["onnxruntime"] = info


def _check_models(report: DoctorReport, config: KioskConfig, model_dir: Path) -> None:
    from kiosk.setup.first_run import needed_models

    # The detector is loaded (and a missing one reported) by the runtime check.
    needed = set(needed_models(config)) - {config.detector.name}
    rows = []
    for result in registry.verify_all(model_dir):
        rows.append({"name": result.name, "state": result.status, "path": str(result.path)})
        if result.status == "corrupt" or (result.status == "missing" and result.name in needed):
            report.problems.append(
                Problem("error", result.detail, f"kiosk models fetch {result.name}")
            )
    report.checks["models"] = {"dir": str(model_dir), "files": rows}


def _check_disk(report: DoctorReport) -> None:
    data_dir = user_data_dir()
    probe = data_dir
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    usage = shutil.disk_usage(probe)
    report.checks["data"] = {"dir": str(data_dir), "free_bytes": usage.free}
    if usage.free < MIN_FREE_BYTES:
        report.problems.append(
            Problem(
                "warning",
                f"only {usage.free / 1024**3:.1f} GiB free where the kiosk keeps its data",
                f"free space on the disk holding {data_dir}",
            )
        )


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
        return
    try:
        # No retention: the doctor looks, it never purges anyone.
        with PeopleStore(root, key=operator_key(), retention_days=None) as store:
            info["people"] = len(store.people())
            damaged = store.damaged_photos()
    except UserError as error:
        report.problems.append(
            Problem("error", f"the people store cannot be read: {error}", str(error))
        )
        return
    info["damaged_photos"] = damaged
    for uid, reasons in damaged.items():
        report.problems.append(
            Problem(
                "warning",
                f"person {uid}: {len(reasons)} stored photo(s) cannot be read and are left "
                f"out of recognition ({reasons[0]})",
                "enroll the person again (`kiosk people list --json` shows who has this id), "
                "or restore the store's folder from a backup",
            )
        )


def run_doctor(config: KioskConfig) -> DoctorReport:
    report = DoctorReport()
    model_dir = registry.resolve_model_dir(config.models.dir)
    _check_python(report)
    _check_qt(report)
    _check_cameras(report)
    _check_models(report, config, model_dir)
    _check_runtime(report, config, model_dir)
    _check_disk(report)
    _check_people(report, config)
    from kiosk.setup.site import check_site

    check_site(report, config)
    return report
