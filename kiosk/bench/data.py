"""What the `kiosk bench` verbs share: where the benchmark data is, and the machine's load."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from models.errors import UserError

if TYPE_CHECKING:
    from kiosk.config import KioskConfig

SHARED_ENV = "KIOSK_SHARED"


def shared_folder(name: str, root: Path | None = None) -> Path:
    """``ROOT/NAME`` of the shared data; ROOT is ``root``, else $KIOSK_SHARED, else ../shared."""
    folder = (root or Path(os.environ.get(SHARED_ENV, "../shared"))) / name
    if not folder.is_dir():
        raise UserError(
            f"{folder} does not exist; pass the files explicitly, --shared DIR or set ${SHARED_ENV}"
        )
    return folder


def load_average() -> list[float] | None:
    """1, 5 and 15 minute load averages (other work on the machine skews timings)."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:  # not on every system
        return None


def clip_weights(config: KioskConfig) -> tuple[Literal["openai", "none"], str]:
    """``openai`` when the config asks for CLIP's weights and RN50.pt is in the model
    directory; else ``none`` (an untrained tower: real cost, meaningless answers) and why."""
    from kiosk.build import model_dir
    from models import registry
    from models.clip.identity import OPENAI_WEIGHTS
    from models.errors import ModelError

    if config.clip.pretrained == "none":
        return "none", '[clip] pretrained = "none"'
    try:
        registry.model_path(OPENAI_WEIGHTS, model_dir(config))
    except ModelError as error:
        return "none", str(error)
    return "openai", ""
