"""Enrollment from the running kiosk: the wizard on the kiosk's own camera.

The operator opens it from the door-side window (`ENROLL_SHORTCUT`; behind the PIN in
kiosk mode). The pipeline's capture pauses and releases the camera while the wizard
holds it, and resumes when the wizard closes. The wizard saves to the people store;
the kiosk's recognizer follows the store: the wizard's last page waits for the update
(the embedding gallery's refresh, or CLIP's background retrain in the kiosk's own
retrainer) and its ``enrolled`` signal asks the pipeline to check the store at once; a
change made elsewhere (`kiosk people`) is seen within ``reload_poll_s``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import numpy as np
from numpy.typing import NDArray
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QWidget

from kiosk.config import KioskConfig
from kiosk.live.sources import FrameSource, SourceEnded, open_source
from kiosk.ui.wizard import Disclosure, EnrollWizard
from models.errors import UserError

if TYPE_CHECKING:
    from kiosk.live.retrain import Retrainer
    from models.detector import FaceDetector


class Pausable(Protocol):
    def pause(self) -> object: ...

    def resume(self) -> None: ...

    def check_recognizer(self) -> None: ...

    @property
    def retrainer(self) -> Retrainer | None: ...


def enrollment_detector(config: KioskConfig) -> FaceDetector:
    """The wizard's detector: at 320, since an enrolling volunteer is close to the camera,
    and 320 is 3x faster than 640."""
    from kiosk.build import detector

    return detector(config, input_size=320)


def frame_reader(source: FrameSource) -> NDArray[np.uint8] | None:
    """One read of a frame source as the wizard wants it: the image, or None (no frame
    right now); raises `SourceEnded` once a video or folder has no more."""
    frame = source.read()
    if frame is None and source.finished:
        raise SourceEnded(source.status)
    return None if frame is None else frame.image


class KioskEnrollment:
    """Opens the wizard over ``parent`` on ``source_spec`` (the kiosk's camera), once at a time."""

    def __init__(
        self, parent: QWidget, config: KioskConfig, source_spec: str, pipeline: Pausable
    ) -> None:
        self.parent = parent
        self.config = config
        self.source_spec = source_spec
        self.pipeline = pipeline
        self.wizard: EnrollWizard | None = None
        self.source: FrameSource | None = None  # the wizard's, while it is open

    def open(self) -> None:
        """Open the wizard; a missing model, store or camera is said in a message box."""
        from PySide6.QtWidgets import QMessageBox

        from models.errors import ModelError

        try:
            self._open()
        except (UserError, ModelError) as error:
            QMessageBox.warning(self.parent, "Enrollment", f"Enrollment cannot start: {error}")

    def _open(self) -> None:
        if self.wizard is not None:
            self.wizard.raise_()
            return
        from kiosk.site.replica import open_people
        from kiosk.training import recognizer_update

        config = self.config
        detector = enrollment_detector(config)
        store = open_people(config)  # on a site, the replica: the kiosk's worker pushes
        update = recognizer_update(config, store, self.pipeline.retrainer)
        self.pipeline.pause()  # the camera is released before the wizard opens it
        try:
            source = open_source(self.source_spec, realtime=True)
        except Exception:
            store.close()
            self.pipeline.resume()
            raise
        self.source = source
        wizard = EnrollWizard(
            store,
            config.enroll,
            lambda: frame_reader(source),
            detector,
            update,
            disclosure=Disclosure.of(config),
        )
        # A child dialog of the (full-screen, on-top) kiosk window, so it shows above it.
        wizard.setParent(self.parent, Qt.WindowType.Dialog)
        wizard.setWindowModality(Qt.WindowModality.WindowModal)

        def finished() -> None:
            source.close()
            store.close()
            self.pipeline.resume()
            wizard.deleteLater()
            self.wizard = None
            self.source = None

        # Saved and trained: the kiosk reloads from the store now, not at its next poll.
        wizard.enrolled.connect(lambda *_: self.pipeline.check_recognizer())
        wizard.finished.connect(finished)
        self.wizard = wizard
        wizard.open()
