"""Typed, validated settings loaded from TOML. Unknown keys and bad values are errors.

Every section has working defaults, so an empty file (or none) is a valid config.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Literal

import platformdirs
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from kiosk.errors import UserError

CONFIG_ENV = "KIOSK_CONFIG"
APP_NAME = "clip-face-kiosk"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelsConfig(_Section):
    dir: Path | None = Field(
        default=None,
        description="model directory; else $KIOSK_MODEL_DIR, else the user's data directory",
    )
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: int = Field(default=0, ge=0, description="onnxruntime intra-op threads, 0 = all")


class DetectorConfig(_Section):
    name: Literal["scrfd_10g", "scrfd_2.5g", "scrfd_0.5g"] = "scrfd_2.5g"
    input_size: int = Field(default=640, ge=128, le=1920, multiple_of=32)
    threshold: float = Field(default=0.5, gt=0.0, lt=1.0)


class ClipConfig(_Section):
    model: str = "RN50"
    pretrained: Literal["openai", "none"] = "openai"
    prompt: str = "This is the image of a person named {name}"
    threshold: float = Field(default=0.8, ge=0.0, le=1.0, description="softmax reject threshold")
    align_margin: float = Field(default=0.0, ge=0.0, lt=1.0)


class TrainConfig(_Section):
    # Measured on ORL with the untrained RN50 (README, CLIP section): 1 tuned block at
    # lr 1e-3 for 10 epochs reached 23.8% held-out; 12 blocks at 1e-4 or 3 at 1e-3: 7.5%.
    epochs: int = Field(default=10, ge=1)
    learning_rate: float = Field(default=1e-3, gt=0.0)
    weight_decay: float = Field(default=0.01, ge=0.0)
    batch_size: int = Field(default=16, ge=1)
    seed: int = 0
    test_fraction: float = Field(default=0.2, ge=0.0, lt=1.0)
    min_images: int = Field(default=2, ge=1, description="fewer usable photos skip the person")
    max_classes_per_step: int = Field(
        default=64, ge=2, description="prompts encoded per step; bounds memory for many people"
    )
    trainable_layers: int = Field(
        default=1, ge=0, description="top text-transformer blocks finetuned (12 = all of RN50's)"
    )
    train_logit_scale: bool = Field(default=True, description="also learn CLIP's logit scale")
    subtract_null_prompt: bool = Field(
        default=True, description="compare only the name's part: subtract the nameless prompt"
    )
    detector_input_size: int = Field(
        default=320,
        ge=128,
        le=1920,
        multiple_of=32,
        description="detector input for training photos: close-ups (ORL: 0 of 80 found at 640)",
    )


class KioskConfig(_Section):
    models: ModelsConfig = ModelsConfig()
    detector: DetectorConfig = DetectorConfig()
    clip: ClipConfig = ClipConfig()
    train: TrainConfig = TrainConfig()


def default_config_path() -> Path:
    return Path(platformdirs.user_config_dir(APP_NAME)) / "config.toml"


def load_config(path: Path | None = None) -> KioskConfig:
    """Load ``path``, else ``$KIOSK_CONFIG``, else the user's config file if it exists."""
    if path is None:
        env = os.environ.get(CONFIG_ENV)
        path = Path(env) if env else default_config_path()
        if not env and not path.exists():
            return KioskConfig()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"config file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as error:
        raise UserError(f"cannot read config file {path}: {error}") from error
    except tomllib.TOMLDecodeError as error:
        raise UserError(f"config file {path} is not valid TOML: {error}") from error
    try:
        return KioskConfig.model_validate(data)
    except ValidationError as error:
        raise UserError(f"config file {path}: {format_validation_error(error)}") from error


def format_validation_error(error: ValidationError) -> str:
    parts = []
    for item in error.errors():
        where = ".".join(str(p) for p in item["loc"]) or "(top level)"
        if item["type"] == "extra_forbidden":
            parts.append(f"unknown key '{where}'")
        else:
            parts.append(f"'{where}': {item['msg']} (got {item.get('input')!r})")
    return "; ".join(parts)
