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
