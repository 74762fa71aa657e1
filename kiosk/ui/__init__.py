"""The kiosk's windows. The only package of kiosk/ that imports PySide6 (inside functions
and submodules, so importing ``kiosk.ui`` stays cheap).

`application()` is the one way the product makes its QApplication: it first undoes what
``import cv2`` does to Qt's environment (below), checks there is a screen, and guards
against a PySide6 reference-count bug that would otherwise crash a long-running kiosk.
"""

from __future__ import annotations

import importlib.util
import os
import platform
import sys
from collections.abc import MutableMapping
from pathlib import Path
from typing import TYPE_CHECKING

from kiosk.errors import UserError

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


def void_calls_leak_none(calls: int = 200) -> bool:
    """Whether PySide6's wrappers of void C++ methods return None without a reference.

    PySide6 6.12.0 does (its wheels assume None is immortal, which is true only from
    Python 3.12): on Python 3.11 every such call takes one reference from None, and
    after a few thousand calls CPython aborts with "none_dealloc: deallocating None".
    """
    if sys.version_info >= (3, 12):
        return False
    from PySide6.QtCore import QObject

    probe = QObject()
    before = sys.getrefcount(None)
    for _ in range(calls):
        probe.setObjectName("probe")  # a void method
    return before - sys.getrefcount(None) >= calls * 9 // 10


_NONE_RESERVE = 1 << 40


def guard_none_refcount() -> bool:
    """If `void_calls_leak_none()`, give None enough references to never reach zero
    (2**40: centuries of calls); return whether it was needed. Harmless when called
    again, and a no-op where None is immortal or the bug is fixed."""
    if not void_calls_leak_none():
        return False
    if platform.python_implementation() != "CPython" or hasattr(sys, "gettotalrefcount"):
        # ob_refcnt is the first field of every object only in release CPython builds.
        raise RuntimeError("PySide6 leaks references to None; use Python 3.12 or newer")
    import ctypes

    # Safe against other threads: they change None's count only while holding the GIL,
    # as this does.
    refcount = ctypes.c_ssize_t.from_address(id(None))
    if refcount.value < _NONE_RESERVE:
        refcount.value += _NONE_RESERVE
    return True


def application() -> QApplication:
    """The process's QApplication, made once, with Qt's environment cleaned first."""
    # cv2 sets its variables at import; importing it here, before they are dropped,
    # means a later `import cv2` elsewhere (the pipeline's) can no longer set them again.
    import cv2  # noqa: F401
    from PySide6.QtWidgets import QApplication

    guard_none_refcount()
    existing = QApplication.instance()
    if isinstance(existing, QApplication):
        return existing
    drop_cv2_qt_paths()
    if not has_display():
        raise UserError(
            "no screen to open the kiosk window on: set DISPLAY (X11) or WAYLAND_DISPLAY, "
            "or QT_QPA_PLATFORM=offscreen to run without one"
        )
    app = QApplication([sys.argv[0] if sys.argv else "kiosk"])
    app.setApplicationName("clip-face-kiosk")
    app.setApplicationDisplayName("Face kiosk")
    return app
