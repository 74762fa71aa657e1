"""The door chime (``[ui] door_sound``, off by default): a short two-note sound per door
event. It must never stop the kiosk: without QtMultimedia or an audio device it falls
back to the system beep, and failing that it stays silent and logs once."""

from __future__ import annotations

import logging
import shutil
import tempfile
import wave
from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import QObject, QUrl
from PySide6.QtWidgets import QApplication

log = logging.getLogger(__name__)

RATE = 22_050
NOTES_HZ = (659.25, 523.25)  # E5 then C5, a doorbell's falling third
NOTE_S = 0.22


def chime_samples() -> np.ndarray:
    """The chime as 16-bit mono samples at `RATE`: each note a sine with a soft decay."""
    t = np.arange(round(NOTE_S * RATE)) / RATE
    envelope = np.exp(-t * 9.0) * np.minimum(1.0, t / 0.005)  # 5 ms attack: no click
    notes = [np.sin(2 * np.pi * hz * t) * envelope for hz in NOTES_HZ]
    return np.asarray(np.concatenate(notes) * 0.5 * 32767, dtype=np.int16)


def write_chime(path: Path) -> None:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(RATE)
        out.writeframes(chime_samples().tobytes())


class DoorChime:
    """``play()`` sounds the chime; returns how: "effect", "beep" or "" (silent)."""

    def __init__(self, parent: QObject | None = None) -> None:
        self._folder: Path | None = None
        self._effect: Any = None  # a QSoundEffect, once made
        self._error_status: Any = None
        self._warned = False
        try:
            from PySide6.QtMultimedia import QSoundEffect

            self._folder = Path(tempfile.mkdtemp(prefix="kiosk-chime-"))
            wav = self._folder / "chime.wav"
            write_chime(wav)
            effect = QSoundEffect(parent)
            effect.setSource(QUrl.fromLocalFile(str(wav)))
            effect.setVolume(0.6)
            self._effect, self._error_status = effect, QSoundEffect.Status.Error
        except Exception as error:  # no QtMultimedia, no temp folder: the beep remains
            log.info("the door chime falls back to the system beep: %s", error)

    def play(self) -> str:
        try:
            effect = self._effect
            if effect is not None and effect.status() != self._error_status:
                effect.play()
                return "effect"
            QApplication.beep()
            return "beep"
        except Exception as error:
            if not self._warned:
                self._warned = True
                log.warning("the door chime cannot sound: %s", error)
            return ""

    def close(self) -> None:
        effect, self._effect = self._effect, None
        if effect is not None:
            effect.stop()
            effect.deleteLater()
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = None
