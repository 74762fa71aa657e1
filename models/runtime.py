"""onnxruntime sessions: provider choice, thread settings, and what is really in use.

``onnxruntime.get_available_providers()`` lists CUDA whenever the GPU build is
installed, even on a machine without a GPU or without CUDA libraries; a session
then silently runs on the CPU. We therefore ask for CUDA only where a driver is
present and report ``session.get_providers()`` — the providers actually bound.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import onnxruntime

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"


def nvidia_driver_present() -> bool:
    if sys.platform.startswith("linux"):
        return Path("/proc/driver/nvidia/version").exists()
    if sys.platform == "win32":
        import ctypes.util

        return ctypes.util.find_library("nvcuda") is not None
    return False


def requested_providers(device: str = "auto") -> list[str]:
    """Providers to ask for. ``device`` is ``auto``, ``cpu`` or ``cuda``."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    want_cuda = device == "cuda" or (device == "auto" and nvidia_driver_present())
    if want_cuda and CUDA in available:
        # onnxruntime-gpu finds the CUDA/cuDNN libraries of the nvidia-* wheels (which
        # torch installs) only once they are preloaded.
        preload = getattr(ort, "preload_dlls", None)
        if preload is not None:
            # A failed preload only means the session ends up on the CPU, which we report.
            with contextlib.suppress(Exception):
                preload()
        return [CUDA, CPU]
    return [CPU]


def create_session(
    model_path: Path, device: str = "auto", threads: int = 0
) -> onnxruntime.InferenceSession:
    """An inference session with thread spinning off.

    Spinning threads make two sessions (detector and classifier) on a 2-core machine
    steal each other's cores; turning it off measured 1.3-1.9x faster pipelines.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    return ort.InferenceSession(
        str(model_path), sess_options=options, providers=requested_providers(device)
    )


@dataclass(frozen=True)
class RuntimeReport:
    onnxruntime_version: str
    packages: dict[str, str]
    available_providers: list[str]
    nvidia_driver: bool
    problems: list[str]


def onnxruntime_packages() -> dict[str, str]:
    found = {}
    for dist in ("onnxruntime", "onnxruntime-gpu"):
        try:
            found[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return found


def runtime_report() -> RuntimeReport:
    import onnxruntime as ort

    packages = onnxruntime_packages()
    problems = []
    if len(packages) > 1:
        problems.append(
            "both onnxruntime and onnxruntime-gpu are installed and share one folder; "
            "fix: pip uninstall -y onnxruntime onnxruntime-gpu && "
            f"pip install --no-deps onnxruntime-gpu=={packages['onnxruntime-gpu']}"
        )
    driver = nvidia_driver_present()
    if driver and CUDA not in ort.get_available_providers():
        problems.append(
            "an NVIDIA driver is present but this onnxruntime has no CUDA provider; "
            "fix: bash packaging/install.sh (installs onnxruntime-gpu)"
        )
    return RuntimeReport(
        onnxruntime_version=ort.__version__,
        packages=packages,
        available_providers=list(ort.get_available_providers()),
        nvidia_driver=driver,
        problems=problems,
    )


def main() -> int:
    report = runtime_report()
    print(json.dumps(asdict(report), indent=2))
    return 1 if report.problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
