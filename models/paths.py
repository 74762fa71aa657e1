"""Where the product keeps its data, cache and configuration (the user's platform dirs)."""

from __future__ import annotations

from pathlib import Path

import platformdirs

APP_NAME = "clip-face-kiosk"


def user_data_dir() -> Path:
    return Path(platformdirs.user_data_dir(APP_NAME))


def user_cache_dir() -> Path:
    return Path(platformdirs.user_cache_dir(APP_NAME))


def user_config_dir() -> Path:
    return Path(platformdirs.user_config_dir(APP_NAME))


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
