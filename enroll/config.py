"""The [enroll] settings: the people store, privacy, and the guided capture's gates."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class EnrollConfig(BaseModel):
    """The people store, privacy, and the guided capture of a volunteer's photos."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    store_dir: Path | None = Field(
        default=None, description="people store; else <user data dir>/people"
    )
    keep_originals: bool = Field(default=False, description="also store the full camera frames")
    retention_days: int = Field(default=365, ge=1, description="biometric data purged after")
    encrypt: bool = Field(
        default=False, description="encrypt photos and embeddings ($KIOSK_STORE_KEY or keyring)"
    )
    consent_version: str = Field(
        default="2026-3",
        min_length=1,
        description="the consent text's version, stored with each consent",
    )
    photos: int = Field(default=30, ge=5, description="photos captured per volunteer")
    min_photos: int = Field(default=10, ge=1, description="accepted photos needed to save")
    poses: tuple[Literal["front", "left", "right", "up", "down"], ...] = (
        "front",
        "left",
        "right",
        "up",
        "down",
    )
    yaw_target_deg: float = Field(
        default=12.0,
        gt=0.0,
        lt=60.0,
        description="head yaw (degrees, from the 5 keypoints) at which a photo counts as the "
        "left or right pose",
    )
    pitch_target_deg: float = Field(
        default=8.0,
        gt=0.0,
        lt=45.0,
        description="head pitch (degrees, relative to the volunteer's frontal photos) at which "
        "a photo counts as the up or down pose",
    )
    # 8°: the keypoint yaw is approximate (a nose depth of half the eye distance), and
    # near-frontal volunteers on ../shared's clips read 4-7° in their first second.
    front_yaw_deg: float = Field(
        default=8.0,
        gt=0.0,
        lt=60.0,
        description="the front pose: yaw under this (degrees); at most yaw_target_deg",
    )
    front_pitch_deg: float = Field(
        default=4.0,
        gt=0.0,
        lt=45.0,
        description="the front pose: pitch under this (degrees); at most pitch_target_deg",
    )
    min_face_size: float = Field(default=80.0, ge=16.0, description="shorter box side, pixels")
    min_score: float = Field(default=0.6, gt=0.0, lt=1.0, description="detection score")
    min_sharpness: float = Field(
        default=40.0, ge=0.0, description="variance of the Laplacian of the 112 px aligned crop"
    )
    min_brightness: float = Field(
        default=40.0, ge=0.0, le=255.0, description="mean grey level of the aligned face, at least"
    )
    max_brightness: float = Field(
        default=220.0, ge=0.0, le=255.0, description="mean grey level of the aligned face, at most"
    )
    duplicate_similarity: float = Field(
        default=0.985, gt=0.0, le=1.0, description="small-image correlation that is a duplicate"
    )

    @model_validator(mode="after")
    def _consistent(self) -> EnrollConfig:
        if self.min_photos > self.photos:
            raise ValueError(f"min_photos ({self.min_photos}) exceeds photos ({self.photos})")
        if self.min_brightness >= self.max_brightness:
            raise ValueError("min_brightness must be below max_brightness")
        if not self.poses or len(set(self.poses)) != len(self.poses):
            raise ValueError("poses must list each pose once")
        if self.front_yaw_deg > self.yaw_target_deg:
            raise ValueError("front_yaw_deg must not exceed yaw_target_deg")
        if self.front_pitch_deg > self.pitch_target_deg:
            raise ValueError("front_pitch_deg must not exceed pitch_target_deg")
        return self
