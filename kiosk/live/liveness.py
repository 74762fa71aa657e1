"""Is a tracked face a live person? Decided over several frames, never one.

For the live pipeline (one :class:`LivenessMonitor` per pipeline)::

    monitor = LivenessMonitor(config.liveness, checker)  # kiosk.build.liveness_monitor
    verdict = monitor.update(track_id, frame, face)   # every frame the track is seen
    monitor.retain(active_track_ids)                   # forget tracks that ended

``verdict.state`` is ``"uncertain"`` until there is enough evidence, then ``"live"`` or
``"not_live"``. Only a ``"live"`` track may open the door; a ``"not_live"`` track is
drawn as not live (``TrackView.state = "not_live"``); ``verdict.prompt``, when set, is
the text to show the person (turn the head slightly, or come closer); trials record
``verdict.live`` (True, False, or None while undecided) and ``verdict.score``.

How the evidence is weighed (settings in ``[liveness]``):

- Passive: the fused MiniFASNet live probability (:mod:`models.antispoof`) of the last
  ``window`` checks is averaged. After ``min_frames`` checks a mean at or above
  ``live_threshold`` is live, at or below ``spoof_threshold`` is not live. Between the
  two the previous decision stands (hysteresis), so one odd frame flips nothing.
- Active cue, only while the passive mean is between the thresholds and nothing has
  been decided: the person is asked to turn their head slightly, and a turn is seen
  when :func:`nose_offset` has varied by ``turn_threshold`` since the request (however
  slowly). That measure is the nose's
  horizontal coordinate in the affine frame of the eyes and mouth: any flat picture,
  however it is moved, tilted or bent slightly, keeps it (an affine map preserves
  affine coordinates), while a real head's nose stands out of that plane and moves
  when it turns. It cannot overrule a clearly spoof passive score, because a replayed
  video can turn its head too. SCRFD's 5 keypoints have no eyelids, so there is no
  blink cue.
- Size: a face whose box is narrower than ``min_face_px`` is not checked. MiniFASNet
  misjudges small faces: on ``crowd.mp4`` (live people all) faces of 30-40 px had a
  fused live score below 0.5 in 26 % of frames, faces of 40-60 px in 2 %. An
  undecided track then asks the person to come closer; a decided one keeps its state.
- Cost: while a track is decided its face is re-checked only every ``recheck_every``
  frames (a swap from a live face to a photo still shows within ``window`` checks);
  while uncertain it is checked every frame. With ``alternate_models`` each check
  runs one of the two MiniFASNets in turn, starting with MiniFASNetV2, so a check
  costs half as much and the window's average is still the authors' fusion of both
  (exactly so over any even number of checks).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Literal

import numpy as np
from numpy.typing import NDArray

from kiosk.config import LivenessConfig

if TYPE_CHECKING:
    from models.antispoof import LivenessChecker, LivenessScore
    from models.detector import Face

LivenessState = Literal["uncertain", "live", "not_live"]
# Beyond this nose offset (about a 50 degree turn) the keypoints are a near-profile
# guess; such frames would fake a turn, so the cue ignores them.
_MAX_NOSE_OFFSET = 0.5


@dataclass(frozen=True)
class LivenessVerdict:
    """What is known about one track's liveness after its latest frame."""

    state: LivenessState
    score: float  # mean fused live probability over the window; nan before any check
    checks: int  # passive checks in the window
    prompt: str | None = None  # text to show the person, only while the cue is requested
    frame_score: LivenessScore | None = None  # this frame's passive check, if it had one

    @property
    def is_live(self) -> bool:
        """Whether the track may open the door."""
        return self.state == "live"

    @property
    def live(self) -> bool | None:
        """True, False, or None while undecided: what a trial frame records as ``live``."""
        return None if self.state == "uncertain" else self.state == "live"


def nose_offset(kps: NDArray[np.floating]) -> float:
    """The nose's horizontal position in the affine frame of the eyes and the mouth.

    With ``e`` the eyes' midpoint and ``m`` the mouth's, solves
    ``nose - e = a * (right_eye - left_eye) + b * (m - e)`` and returns ``a``: about 0
    for a frontal face, growing as the head turns, and unchanged by any affine motion
    of a flat picture. ``kps`` is SCRFD's (5, 2): left eye, right eye, nose, left and
    right mouth corner.
    """
    points = np.asarray(kps, dtype=np.float64)
    left_eye, right_eye, nose, mouth_left, mouth_right = points
    eyes = (left_eye + right_eye) / 2
    mouth = (mouth_left + mouth_right) / 2
    basis = np.stack([right_eye - left_eye, mouth - eyes], axis=1)
    if abs(np.linalg.det(basis)) < 1e-9:
        return 0.0
    return float(np.linalg.solve(basis, nose - eyes)[0])


class TrackLiveness:
    """The evidence gathered for one track. Pure logic: scores in, verdicts out."""

    def __init__(self, config: LivenessConfig) -> None:
        self._config = config
        self._scores: deque[float] = deque(maxlen=config.window)
        self._offset_range: tuple[float, float] | None = None  # since the cue was requested
        self._decided: LivenessState = "uncertain"
        self._cue_requested = False
        self._turn_seen = False
        self._frames_since_check = 0
        self.checks = 0  # passive checks so far

    @property
    def needs_check(self) -> bool:
        """Whether this frame's face should get a passive check."""
        if self._decided == "uncertain" or not self._scores:
            return True
        return self._frames_since_check + 1 >= self._config.recheck_every

    def update(self, live_score: float | None, kps: NDArray[np.floating] | None) -> LivenessVerdict:
        """Add one frame: its passive live probability (None if not checked) and keypoints."""
        config = self._config
        if live_score is None:
            self._frames_since_check += 1
        else:
            self._scores.append(float(live_score))
            self._frames_since_check = 0
            self.checks += 1
        offset = nose_offset(kps) if self._cue_requested and kps is not None else None
        if offset is not None and abs(offset) <= _MAX_NOSE_OFFSET:
            low, high = self._offset_range or (offset, offset)
            self._offset_range = low, high = min(low, offset), max(high, offset)
            self._turn_seen = high - low >= config.turn_threshold
        score = float(np.mean(self._scores)) if self._scores else float("nan")
        if len(self._scores) >= config.min_frames:
            if score >= config.live_threshold:
                self._decided = "live"
            elif score <= config.spoof_threshold:
                self._decided = "not_live"
            elif self._decided == "uncertain" and self._turn_seen:
                self._decided = "live"
            elif self._decided == "uncertain" and config.active_cue and not self._cue_requested:
                self._cue_requested = True
        if self._decided != "uncertain":
            self._cue_requested = False
            self._offset_range = None
        prompt = config.prompt if self._cue_requested else None
        return LivenessVerdict(self._decided, score, len(self._scores), prompt)


class LivenessMonitor:
    """Per-track liveness for the live pipeline: runs the checker when evidence is needed."""

    def __init__(self, config: LivenessConfig, checker: LivenessChecker) -> None:
        self._config = config
        self._checker = checker
        self._tracks: dict[int, TrackLiveness] = {}
        self.checks = 0  # passive checks run so far

    def update(self, track_id: int, frame: NDArray[np.uint8], face: Face) -> LivenessVerdict:
        """Add this frame's face of track ``track_id`` and return the track's verdict."""
        track = self._tracks.get(track_id)
        if track is None:
            track = self._tracks[track_id] = TrackLiveness(self._config)
        if face.size < self._config.min_face_px:
            verdict = track.update(None, face.kps)
            if verdict.state == "uncertain":
                return replace(verdict, prompt=self._config.closer_prompt)
            return verdict
        if not track.needs_check:
            return track.update(None, face.kps)
        model = None
        if self._config.alternate_models:
            model = track.checks % self._checker.model_count
        score = self._checker.check(frame, face, model)
        self.checks += 1
        return replace(track.update(score.live, face.kps), frame_score=score)

    def retain(self, track_ids: Iterable[int]) -> None:
        """Forget every track not in ``track_ids`` (tracks that have ended)."""
        keep = set(track_ids)
        for track_id in [t for t in self._tracks if t not in keep]:
            del self._tracks[track_id]
