"""Typed, validated settings loaded from TOML. Unknown keys and bad values are errors.

Every section has working defaults, so an empty file (or none) is a valid config.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from enroll.config import EnrollConfig
from models.errors import UserError
from models.paths import user_config_dir

CONFIG_ENV = "KIOSK_CONFIG"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelsConfig(_Section):
    dir: Path | None = Field(
        default=None,
        description="model directory; else $KIOSK_MODEL_DIR, else models/ in the data "
        "directory ($KIOSK_HOME, else the user's)",
    )
    mirror: str | None = Field(
        default=None,
        description="a site mirror for sites without internet: an internal web server's base "
        "URL (http://...) or a folder, holding the model files as a model directory does; "
        "tried before each file's public address, with the same sha256 check",
    )
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: int = Field(default=0, ge=0, description="onnxruntime intra-op threads, 0 = all")


class DetectorConfig(_Section):
    name: Literal["scrfd_10g", "scrfd_2.5g", "scrfd_0.5g", "yunet", "yunet_2026may"] = "scrfd_2.5g"
    input_size: int = Field(default=640, ge=128, le=1920, multiple_of=32)
    threshold: float = Field(default=0.5, gt=0.0, lt=1.0)


class ClipConfig(_Section):
    """The CLIP recognizer: RN50 with a frozen image tower and a finetuned text encoder."""

    model: str = Field(default="RN50", description="open_clip model config")
    pretrained: Literal["openai", "none"] = Field(
        default="openai",
        description="openai: RN50.pt from the model directory (`kiosk models fetch "
        "clip_rn50_openai`); none: an untrained tower, for tests and timings only",
    )
    prompt: str = Field(
        default="This is the image of a person named {name}",
        description="the text each person's name is put in; must contain {name}",
    )
    threshold: float = Field(default=0.8, ge=0.0, le=1.0, description="softmax reject threshold")
    rejection: Literal["max_softmax", "calibrated"] = Field(
        default="max_softmax",
        description="max_softmax: the research's softmax at the learnt logit scale; "
        "calibrated: at the temperature fitted on the held-out enrollment photos",
    )
    precision: Literal["fp32", "int8"] = Field(
        default="fp32",
        description="the image tower's arithmetic: int8 is onnxruntime static quantization "
        "calibrated on the enrolled crops (faster on a CPU: `kiosk bench quantize` measures it)",
    )
    align_margin: float = Field(
        default=0.0,
        ge=0.0,
        lt=1.0,
        description="zoom out of the aligned face (folder training only: the people store "
        "keeps crops at margin 0)",
    )


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
    angular_margin: float = Field(
        default=0.0,
        ge=0.0,
        lt=1.0,
        description="additive angular margin (radians) on the image-text logits, ArcFace "
        "style; 0 is the research's plain cross-entropy",
    )
    detector_input_size: int = Field(
        default=320,
        ge=128,
        le=1920,
        multiple_of=32,
        description="detector input for training photos: close-ups (ORL: 0 of 80 found at 640)",
    )


class TrialsConfig(_Section):
    duration: float = Field(default=5.0, gt=0.0, le=60.0, description="trial window, seconds")
    min_share: float = Field(
        default=0.5, gt=0.0, le=1.0, description="share of face frames a name needs to win"
    )
    target_fpr: float = Field(default=0.02, ge=0.0, le=1.0, description="for threshold analysis")
    database: Path | None = Field(
        default=None, description="trials SQLite file; else the user's data directory"
    )


class UiConfig(_Section):
    operator_pin: str | None = Field(
        default=None,
        description="hash of the operator PIN made by `kiosk pin` (never the PIN itself); "
        "full-screen kiosk mode needs one",
    )
    poll_ms: int = Field(default=15, ge=5, le=200, description="how often the window polls")
    door_open_s: float = Field(
        default=5.0,
        gt=0.0,
        le=120.0,
        description="how long the door screen shows 'Door open' after a recognized person's "
        "door event",
    )
    door_sound: bool = Field(
        default=False,
        description="a chime with each door event (silent where the machine has no audio device)",
    )

    @field_validator("operator_pin")
    @classmethod
    def _is_pin_hash(cls, value: str | None) -> str | None:
        from kiosk.setup.pin import parse_pin_hash

        if value is not None:
            parse_pin_hash(value)  # its ValueError says what is wrong
        return value


class LivenessConfig(_Section):
    """Anti-spoofing: MiniFASNet scores averaged over a track's frames, plus a head-turn cue."""

    enabled: bool = True
    live_threshold: float = Field(
        default=0.6, gt=0.0, lt=1.0, description="mean live score at or above which a track is live"
    )
    spoof_threshold: float = Field(
        default=0.3, gt=0.0, lt=1.0, description="mean live score at or below which it is not live"
    )
    min_frames: int = Field(default=5, ge=1, description="passive checks before any decision")
    window: int = Field(default=15, ge=1, description="the most recent checks that are averaged")
    recheck_every: int = Field(
        default=3, ge=1, description="once decided, check a track's face every Nth frame"
    )
    alternate_models: bool = Field(
        default=True,
        description="each check runs one MiniFASNet in turn (half the cost); the window "
        "average still fuses both",
    )
    active_cue: bool = Field(
        default=True, description="ask for a small head turn when the passive score is uncertain"
    )
    turn_threshold: float = Field(
        default=0.12, gt=0.0, lt=1.0, description="nose shift, in eye distances, that is a turn"
    )
    prompt: str = "Please turn your head slightly to one side"
    min_face_px: int = Field(
        default=40, ge=1, description="smaller faces are not judged (MiniFASNet misjudges them)"
    )
    closer_prompt: str = "Please come closer"

    @model_validator(mode="after")
    def _ordered(self) -> LivenessConfig:
        if self.spoof_threshold >= self.live_threshold:
            raise ValueError("spoof_threshold must be below live_threshold")
        if self.min_frames > self.window:
            raise ValueError("min_frames must not exceed window")
        return self


class LiveConfig(_Section):
    """The door-side live pipeline: where frames come from, and when a track gets a name."""

    source: str = Field(default="0", description="camera index, video file, image folder or URL")
    loop: bool = Field(default=False, description="restart a video file or folder at its end")
    realtime: bool = Field(default=True, description="pace files at their fps (camera speed)")
    detector_input_size: int = Field(default=320, ge=128, le=1920, multiple_of=32)
    max_faces: int = Field(default=5, ge=1, description="largest faces classified per frame")
    min_frames: int = Field(default=3, ge=2, description="votes a name needs before it is shown")
    window: int = Field(default=8, ge=2, description="frames a track's vote looks back over")
    iou_threshold: float = Field(default=0.3, gt=0.0, lt=1.0)
    max_missed: int = Field(default=10, ge=0, description="frames a track survives unseen")
    reclassify_every: int = Field(
        default=3, ge=1, description="a decided track's face is classified every n-th frame"
    )
    pending_every: int = Field(
        default=1,
        ge=1,
        description="an undecided track's face is classified every n-th frame (and on its first)",
    )
    max_classify: int = Field(
        default=0, ge=0, description="faces classified in one frame at most (0: every face due)"
    )
    retry_initial_s: float = Field(default=1.0, gt=0.0, description="first camera reconnect")
    retry_max_s: float = Field(default=30.0, gt=0.0, description="longest reconnect delay")

    @model_validator(mode="after")
    def _check(self) -> LiveConfig:
        if self.min_frames > self.window:
            raise ValueError(
                f"min_frames ({self.min_frames}) must not exceed window ({self.window})"
            )
        if self.retry_initial_s > self.retry_max_s:
            raise ValueError("retry_initial_s must not exceed retry_max_s")
        return self


class EventsConfig(_Section):
    """The door event log and its optional hooks."""

    enabled: bool = True
    dir: Path | None = Field(default=None, description="default: the user's data dir / events")
    command: list[str] = Field(default=[], description="run per event, JSON on stdin")
    url: str | None = Field(default=None, description="HTTP(S) endpoint that gets a JSON POST")
    cooldown_s: float = Field(default=10.0, ge=0.0, description="per person, between hooks")
    hook_timeout_s: float = Field(default=5.0, gt=0.0)
    retention_days: int = Field(
        default=30,
        ge=1,
        description="events and their thumbnails are removed after (on start and daily)",
    )

    @field_validator("url")
    @classmethod
    def _http_only(cls, url: str | None) -> str | None:
        if url is not None and not url.lower().startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return url


RENAMED_KINDS = {
    "store": 'the people store\'s MobileFaceNet gallery is now kind = "embedding_gallery"',
    "gallery": 'a folder gallery is now kind = "embedding_gallery" with folder = "PATH"',
}


class RecognizerConfig(_Section):
    """What names the faces; rebuilt, or retrained in the background, when the people change.

    ``clip`` (the default): CLIP RN50 with its text encoder finetuned on the enrolled
    people (the bundle at ``bundle``, retrained from the people store whenever someone is
    enrolled, renamed or deleted); ``embedding_gallery``: each person's nearest enrolled
    photo by MobileFaceNet (or zero-shot CLIP) embedding, no training; ``fusion``: CLIP's
    answer, accepted only when the embedding gallery agrees.
    """

    kind: Literal["clip", "embedding_gallery", "fusion"] = "clip"
    bundle: Path | None = Field(
        default=None,
        description="the CLIP bundle file (clip, fusion); default <data dir>/recognizer.bundle. "
        "A bundle made by `kiosk train --people DIR` is used as it is, never retrained",
    )
    folder: Path | None = Field(
        default=None,
        description="embedding_gallery only: a folder with a folder of photos per person "
        "instead of the people store",
    )
    retrain: bool = Field(
        default=True,
        description="retrain the CLIP bundle in the background when the people store changes",
    )
    embedder: Literal["mobilefacenet", "clip"] = Field(
        default="mobilefacenet",
        description="the embedding gallery's embedder: MobileFaceNet, or CLIP's image tower "
        "zero-shot ([clip] model and pretrained)",
    )
    gallery_threshold: float = Field(
        default=0.5,
        ge=-1.0,
        le=1.0,
        description="cosine; 0.5 is MobileFaceNet's, the CLIP gallery needs its own",
    )
    reload: bool = Field(
        default=True, description="rebuild when the people, the folder or the bundle change"
    )
    reload_poll_s: float = Field(
        default=2.0, gt=0.0, description="how often a change is looked for (seconds)"
    )

    @model_validator(mode="before")
    @classmethod
    def _renamed(cls, data: object) -> object:
        if isinstance(data, dict):
            if data.get("kind") in RENAMED_KINDS:
                raise ValueError(
                    f"kind = {data['kind']!r} was renamed: {RENAMED_KINDS[data['kind']]}"
                )
            if "path" in data:
                raise ValueError(
                    'path was split in two: bundle = "FILE" (clip, fusion) or folder = "DIR" '
                    "(embedding_gallery)"
                )
        return data

    @model_validator(mode="after")
    def _clip_threshold_given(self) -> RecognizerConfig:
        if self.folder is not None and self.kind != "embedding_gallery":
            raise ValueError(
                'folder is for kind = "embedding_gallery"; a CLIP bundle from a folder is '
                "made with `kiosk train --people DIR --out FILE`, then bundle = FILE"
            )
        if self.embedder == "clip" and "gallery_threshold" not in self.model_fields_set:
            raise ValueError(
                'embedder = "clip" needs its own gallery_threshold (0.5 is MobileFaceNet\'s): '
                "measure one with `kiosk eval openset --embedder clip:RN50:openai`"
            )
        return self


class SiteConfig(_Section):
    """The site registry (PostgreSQL) this kiosk replicates; absent: a single kiosk.

    The password is never in this file: it comes from $KIOSK_SITE_PASSWORD, else the OS
    keyring (service ``clip-face-kiosk``, user ``site:<user>@<host>``), else libpq's own
    means (a ~/.pgpass file, a client certificate, peer authentication on a socket).
    """

    host: str | None = Field(
        default=None, description="server name or address, or a Unix socket folder (libpq's)"
    )
    port: int = Field(default=5432, ge=1, le=65535)
    dbname: str = Field(default="kiosk", min_length=1)
    user: str = Field(
        min_length=1, description="this kiosk's own database role; it is also its kiosk id"
    )
    sslmode: Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"] = "prefer"
    sslrootcert: Path | None = Field(default=None, description="CA file for verify-ca/-full")
    connect_timeout_s: int = Field(default=5, ge=1, le=120)
    max_replica_age_h: float = Field(
        default=24.0, gt=0.0, description="name nobody from a replica not synced for longer"
    )
    poll_s: float = Field(
        default=30.0, gt=0.0, description="pull even without a notification this often"
    )
    encrypt: bool = Field(
        default=False,
        description="seal crops and embeddings in the registry with the operator key "
        "($KIOSK_STORE_KEY or keyring); every kiosk of the site needs the same key",
    )

    @model_validator(mode="before")
    @classmethod
    def _no_password(cls, data: object) -> object:
        if isinstance(data, dict) and "password" in data:
            raise ValueError(
                "a password never goes in the config file: set $KIOSK_SITE_PASSWORD or the "
                "OS keyring (see docs/site.md)"
            )
        return data

    @property
    def kiosk_id(self) -> str:
        return self.user


class KioskConfig(_Section):
    models: ModelsConfig = ModelsConfig()
    detector: DetectorConfig = DetectorConfig()
    clip: ClipConfig = ClipConfig()
    train: TrainConfig = TrainConfig()
    trials: TrialsConfig = TrialsConfig()
    ui: UiConfig = UiConfig()
    liveness: LivenessConfig = LivenessConfig()
    enroll: EnrollConfig = EnrollConfig()
    kiosk: LiveConfig = LiveConfig()
    events: EventsConfig = EventsConfig()
    recognizer: RecognizerConfig = RecognizerConfig()
    site: SiteConfig | None = None  # a kiosk of a site: see docs/site.md


def default_config_path() -> Path:
    """``config.toml`` in the config directory (``$KIOSK_HOME``, else the user's)."""
    return user_config_dir() / "config.toml"


def config_path(path: Path | None = None) -> Path:
    """The file :func:`load_config` reads: ``path``, else ``$KIOSK_CONFIG``, else the default."""
    if path is not None:
        return path
    env = os.environ.get(CONFIG_ENV)
    return Path(env) if env else default_config_path()


def load_config(path: Path | None = None) -> KioskConfig:
    """Load ``path``, else ``$KIOSK_CONFIG``, else the default config file if it exists."""
    if path is None:
        path = config_path()
        if not os.environ.get(CONFIG_ENV) and not path.exists():
            return KioskConfig()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"config file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as error:
        raise UserError(f"cannot read config file {path}: {error}") from error
    except tomllib.TOMLDecodeError as error:
        raise UserError(f"config file {path} is not valid TOML: {error}") from error
    nul = _nul_key(data)
    if nul is not None:
        raise UserError(
            f"config file {path}: '{nul}' contains a NUL character (\\u0000), which no path, "
            "name or command may hold: remove it"
        )
    try:
        return KioskConfig.model_validate(data)
    except ValidationError as error:
        raise UserError(f"config file {path}: {format_validation_error(error)}") from error


def _nul_key(value: object, where: str = "") -> str | None:
    """The dotted key of the first string in ``value`` holding a NUL, if any (a NUL in
    a path ends in Python's "embedded null byte" deep inside whatever opens it)."""
    if isinstance(value, str):
        return where if "\x00" in value else None
    items: Iterable[tuple[object, object]]
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return None
    for key, item in items:
        found = _nul_key(item, f"{where}.{key}" if where else str(key))
        if found is not None:
            return found
    return None


SECRET_KEYS = {("operator_pin",), ("site",)}  # ("site",): its errors may hold a password


def format_validation_error(error: ValidationError) -> str:
    parts = []
    for item in error.errors():
        where = ".".join(str(p) for p in item["loc"]) or "(top level)"
        if item["type"] == "extra_forbidden":
            parts.append(f"unknown key '{where}'")
        elif item["loc"][-1:] in SECRET_KEYS:
            parts.append(f"'{where}': {item['msg']}")  # never echo a secret to the screen
        else:
            parts.append(f"'{where}': {item['msg']} (got {item.get('input')!r})")
    return "; ".join(parts)
