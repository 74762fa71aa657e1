"""Where the product keeps its data, cache and configuration.

By default these are the user's platform directories for ``clip-face-kiosk``
(``~/.local/share``, ``~/.cache`` and ``~/.config`` on Linux). ``$KIOSK_HOME`` (which
``kiosk --home DIR`` sets) moves all three into one folder, for a kiosk that keeps
everything under, say, ``/var/lib/kiosk``:

=============  ==========================  ====================================
what           default (Linux)             with ``KIOSK_HOME=/var/lib/kiosk``
=============  ==========================  ====================================
data           ~/.local/share/clip-face..  /var/lib/kiosk (models/, people/, ...)
cache          ~/.cache/clip-face-kiosk    /var/lib/kiosk/cache
config         ~/.config/clip-face-kiosk   /var/lib/kiosk (config.toml)
=============  ==========================  ====================================

The individual settings (``[models] dir``, ``$KIOSK_MODEL_DIR``, ``[enroll] store_dir``,
``$KIOSK_CONFIG``, ...) still win over these defaults.
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

APP_NAME = "clip-face-kiosk"
HOME_ENV = "KIOSK_HOME"


def kiosk_home() -> Path | None:
    """``$KIOSK_HOME`` as an absolute path, or None when it is unset or empty."""
    value = os.environ.get(HOME_ENV)
    if not value:
        return None
    return Path(value).expanduser().absolute()


def user_data_dir() -> Path:
    home = kiosk_home()
    return home if home is not None else Path(platformdirs.user_data_dir(APP_NAME))


def user_cache_dir() -> Path:
    home = kiosk_home()
    return home / "cache" if home is not None else Path(platformdirs.user_cache_dir(APP_NAME))


def user_config_dir() -> Path:
    home = kiosk_home()
    return home if home is not None else Path(platformdirs.user_config_dir(APP_NAME))


def make_user_dirs_private() -> None:
    """Create the data and cache folders owner-only (0700), or fix their mode: everything
    the kiosk keeps about people (the store, door events, trials, bundles, caches of face
    embeddings) lives under them. A folder that cannot be changed is logged and left."""
    from models.io import private_dir

    for folder in (user_data_dir(), user_cache_dir()):
        try:
            private_dir(folder)
        except OSError as error:
            import logging

            logging.getLogger(__name__).warning("cannot create %s: %s", folder, error)
