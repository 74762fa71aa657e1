"""Enrollment from the running kiosk: the wizard on the kiosk's own camera.

The operator opens it from the door-side window (`ENROLL_SHORTCUT`; behind the PIN in
kiosk mode). The pipeline's capture pauses and releases the camera while the wizard
holds it, and resumes when the wizard closes. The wizard saves to the people store;
the kiosk's ``[recognizer] kind = "store"`` notices the change and names the new person
without a restart: at once (the wizard's ``enrolled`` signal asks the pipeline to check
the store), or within ``reload_poll_s`` for a change made elsewhere (`kiosk people`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import numpy as np
from numpy.typing import NDArray
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QWidget

from kiosk.config import KioskConfig
from kiosk.live.sources import FrameSource, open_source
from kiosk.ui.wizard import EnrollWizard
from models.errors import UserError

if TYPE_CHECKING:
    from models.detector import FaceDetector
    from models.embedder import FaceEmbedder


class Pausable(Protocol):
    def pause(self) -> object: ...

    def resume(self) -> None: ...

    def check_recognizer(self) -> None: ...


def enrollment_models(config: KioskConfig) -> tuple[FaceDetector, FaceEmbedder]:
    """The wizard's detector (at 320: an enrolling volunteer is close to the camera, and
    320 is 3x faster than 640) and the kiosk's gallery embedder."""
    from kiosk.build import gallery_embedder
    from models import registry
    from models.detector import FaceDetector

    model_dir = registry.resolve_model_dir(config.models.dir)
    detector = FaceDetector.from_name(
        config.detector.name, model_dir, input_size=320, threshold=config.detector.threshold
    )
    return detector, gallery_embedder(config)


def frame_reader(source: FrameSource) -> NDArray[np.uint8] | None:
    """One read of a frame source as the wizard wants it: the image, or None."""
    frame = source.read()
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

        config = self.config
        detector, embedder = enrollment_models(config)
        store = open_people(config)  # on a site, the replica: the kiosk's worker pushes
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
            embedder,
            threshold=config.recognizer.gallery_threshold,
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
