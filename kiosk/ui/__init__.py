"""The kiosk's windows. The only package of kiosk/ that imports PySide6 (inside functions
and submodules, so importing ``kiosk.ui`` stays cheap).

`application()` is the one way the product makes its QApplication: it first undoes what
``import cv2`` does to Qt's environment (below) and checks there is a screen, and it
moves Python's garbage collection onto the GUI thread (gc_thread.py).

PySide6 6.12.0 is excluded in pyproject.toml: on Python 3.11 its wrappers of void C++
methods return None without a reference, and a kiosk polling at 66 Hz aborted within a
minute ("none_dealloc"). 6.11.3 does not; tests/test_ui_window.py polls 20 000 times.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import MutableMapping
from pathlib import Path
from typing import TYPE_CHECKING

from models.errors import UserError

if TYPE_CHECKING:
    from PySide6.QtWidgets import QApplication

# opencv-python's wheels set these, at `import cv2`, to the Qt5 plugins and fonts they
# bundle for cv2.imshow. PySide6 is Qt6: its xcb platform must come from its own plugins.
CV2_QT_VARIABLES = ("QT_QPA_PLATFORM_PLUGIN_PATH", "QT_QPA_FONTDIR")


def _cv2_package_dir() -> Path | None:
    spec = importlib.util.find_spec("cv2")  # finds it without importing it
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))).resolve()


def drop_cv2_qt_paths(environ: MutableMapping[str, str] | None = None) -> list[str]:
    """Remove the Qt variables that point into cv2's package; return their names.

    Must run after the last ``import cv2`` and before the QApplication is made:
    `application()` does both.
    """
    env = os.environ if environ is None else environ
    cv2_dir = _cv2_package_dir()
    if cv2_dir is None:
        return []
    dropped = []
    for name in CV2_QT_VARIABLES:
        value = env.get(name)
        if value and Path(value).resolve().is_relative_to(cv2_dir):
            del env[name]
            dropped.append(name)
    return dropped


def has_display(environ: MutableMapping[str, str] | None = None) -> bool:
    """Whether Qt can open a window (without it, QApplication aborts the process)."""
    env = os.environ if environ is None else environ
    if sys.platform in ("win32", "darwin") or env.get("QT_QPA_PLATFORM"):
        return True
    return bool(env.get("DISPLAY") or env.get("WAYLAND_DISPLAY"))


def application() -> QApplication:
    """The process's QApplication, made once, with Qt's environment cleaned first."""
    # cv2 sets its variables at import; importing it here, before they are dropped,
    # means a later `import cv2` elsewhere (the pipeline's) can no longer set them again.
    import cv2  # noqa: F401
    from PySide6.QtWidgets import QApplication

    existing = QApplication.instance()
    if isinstance(existing, QApplication):
        return existing
    drop_cv2_qt_paths()
    if not has_display():
        raise UserError(
            "no screen to open the kiosk window on: set DISPLAY (X11) or WAYLAND_DISPLAY, "
            "or QT_QPA_PLATFORM=offscreen to run without one"
        )
    from kiosk.ui.gc_thread import GuiThreadCollector

    app = QApplication([sys.argv[0] if sys.argv else "kiosk"])
    app.setApplicationName("clip-face-kiosk")
    app.setApplicationDisplayName("Face kiosk")
    GuiThreadCollector(app)  # before any worker thread starts; see gc_thread.py
    return app


def show_error_dialog(message: str) -> None:
    """One modal dialog with ``message``; returns when it is dismissed."""
    from PySide6.QtWidgets import QMessageBox

    try:
        application()
    except UserError:
        return
    box = QMessageBox(QMessageBox.Icon.Critical, "Face kiosk", "The kiosk cannot start.")
    box.setInformativeText(message)
    box.setStandardButtons(QMessageBox.StandardButton.Ok)
    box.exec()
