"""The enrollment wizard: consent, name, guided capture, review, save and train.

A thin Qt layer: the capture logic is :class:`enroll.session.CaptureSession`, the data is
:class:`enroll.store.PeopleStore`, the recognizer's update after a save is a
:class:`kiosk.training.RecognizerUpdate`. Frames come from any ``read() -> frame | None``
callable (a camera, a video file); ``None`` means no frame right now (camera lost).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from html import escape
from urllib.parse import urlsplit

import cv2
import numpy as np
from numpy.typing import NDArray
from PySide6.QtCore import QObject, QSize, Qt, QThread, QTimer, Signal
from PySide6.QtGui import QFont, QFontMetrics, QIcon, QImage, QPixmap
from PySide6.QtWidgets import (
    QCheckBox,
    QFormLayout,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListView,
    QListWidget,
    QListWidgetItem,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QTextBrowser,
    QVBoxLayout,
    QWizard,
    QWizardPage,
)

from enroll.config import EnrollConfig
from enroll.session import GATE_NAMES, CapturedPhoto, CaptureEvent, CaptureSession
from enroll.store import Consent, PeopleStore, utc_now
from kiosk.config import KioskConfig
from kiosk.live.sources import FrameSource, SourceEnded
from kiosk.training import RecognizerUpdate
from kiosk.ui.screen_fit import fit_to_screen
from models.detector import FaceDetector
from models.errors import UserError
from models.names import name_key, validate_name
from models.words import counted

log = logging.getLogger(__name__)

FrameReader = Callable[[], NDArray[np.uint8] | None]

CONSENT_TEXT = """<h3>Before we take your photos</h3>
<p><b>Purpose.</b> This kiosk recognizes enrolled people at the door. To recognize you,
it needs about {photos} photos of your face from a few angles.</p>
<p><b>What is stored.</b> Your name, an optional id, the aligned face crops{originals},
numbers computed from them, and this consent record (text version {version}, date and
time).{events}{sent} Nothing is sent anywhere else.{encrypted}</p>
<p><b>How long.</b> Your photos and records are deleted automatically after
{days} days.</p>
<p><b>How to withdraw.</b> Ask the operator at any time (<code>kiosk people delete
"your name"</code>). Your photos, records and door pictures are deleted at once, and so is
every copy the kiosk made of them: its exports, its caches and the recognizer's training
(an export on a drive that is not plugged in, the next time the kiosk finds it there).{site_erased}
In the test results on this kiosk{site_results}, and in the report files it wrote of
them, your name is replaced by an anonymous label and your face pictures are removed;
the figures stay (a report that cannot be made again without your name is deleted). The
kiosk keeps only a record that an anonymous id was deleted, when and why. Copies someone
made by hand, outside the kiosk, are beyond its reach{hook_reach}.{shredded}</p>
"""
EVENTS_TEXT = (
    " Each time the door recognizes you, the time and a small picture of your face,"
    " kept {days} days."
)
SITE_TEXT = (
    " The kiosks of this site share them through the site's registry ({host}), which also"
    " keeps every kiosk's door records and test results."
)
SITE_ERASED_TEXT = (
    " Every kiosk of the site deletes them too: at once if it is online, else as soon as"
    " it reconnects."
)
HOOK_TEXT = " Each time the door recognizes you, your name and the time are also sent to {to}."
HOOK_REACH_TEXT = ", and so is what was sent to {to}"
SHREDDED_TEXT = (
    " Your stored photos, the numbers computed from them and your door pictures are locked"
    " with a key of your own, destroyed with them: a copy of those files left anywhere (a"
    " backup) can no longer be opened."
)


def to_pixmap(image: NDArray[np.uint8], size: int | None = None) -> QPixmap:
    rgb = np.ascontiguousarray(image[..., ::-1])
    height, width = rgb.shape[:2]
    qimage = QImage(rgb.data, width, height, 3 * width, QImage.Format.Format_RGB888).copy()
    pixmap = QPixmap.fromImage(qimage)
    if size is not None:
        pixmap = pixmap.scaled(
            size,
            size,
            Qt.AspectRatioMode.KeepAspectRatio,
            Qt.TransformationMode.SmoothTransformation,
        )
    return pixmap


@dataclass(frozen=True)
class Disclosure:
    """What the consent text tells of the kiosk's set-up: how long door events keep a
    face picture (None: no event log), the site registry's host (None: a single kiosk)
    and where each door event is sent (None: nowhere)."""

    event_days: int | None = None
    site: str | None = None
    hook: str | None = None

    @classmethod
    def of(cls, config: KioskConfig) -> Disclosure:
        events = config.events
        hook = None
        if events.enabled and events.url:
            hook = urlsplit(events.url).hostname or events.url
        elif events.enabled and events.command:
            hook = "a program the operator set up"
        return cls(
            event_days=events.retention_days if events.enabled else None,
            site=None if config.site is None else _registry_host(config.site.host),
            hook=hook,
        )

    def text(self, config: EnrollConfig, encrypted: bool) -> str:
        """The consent text, for this set-up."""
        days = self.event_days
        return CONSENT_TEXT.format(
            photos=config.photos,
            originals=" and the full camera pictures" if config.keep_originals else "",
            version=config.consent_version,
            encrypted=" Photos are stored encrypted." if encrypted else "",
            days=config.retention_days,
            events=EVENTS_TEXT.format(days=days) if days is not None else "",
            sent=(SITE_TEXT.format(host=escape(self.site)) if self.site is not None else "")
            + (HOOK_TEXT.format(to=escape(self.hook)) if self.hook is not None else ""),
            site_erased=SITE_ERASED_TEXT if self.site is not None else "",
            site_results=" and on the site" if self.site is not None else "",
            hook_reach=HOOK_REACH_TEXT.format(to=escape(self.hook)) if self.hook else "",
            shredded=SHREDDED_TEXT if encrypted else "",
        )


def _registry_host(host: str | None) -> str:
    """The registry's host as a volunteer can read it: none, or a socket folder, is this
    computer (libpq's own default)."""
    return host if host and not host.startswith("/") else "on this computer"


class ConsentPage(QWizardPage):
    def __init__(self, config: EnrollConfig, encrypted: bool, disclosure: Disclosure) -> None:
        super().__init__()
        self.config = config
        self.consent: Consent | None = None
        self.setTitle("Consent")
        text = QTextBrowser()
        text.setHtml(disclosure.text(config, encrypted))
        self.agree = QCheckBox(
            "The volunteer has read this and agrees to have their photos taken and stored"
        )
        self.agree.toggled.connect(self.completeChanged)
        layout = QVBoxLayout(self)
        layout.addWidget(text)
        layout.addWidget(self.agree)

    def isComplete(self) -> bool:
        return self.agree.isChecked()

    def validatePage(self) -> bool:
        self.consent = Consent(self.config.consent_version, utc_now())
        return True


class NamePage(QWizardPage):
    def __init__(self, store: PeopleStore) -> None:
        super().__init__()
        self.store = store
        self.setTitle("Your name")
        self.name_edit = QLineEdit()
        self.name_edit.setPlaceholderText("as it should appear at the door")
        self.id_edit = QLineEdit()
        self.id_edit.setPlaceholderText("optional: badge or staff number")
        self.error = QLabel()
        self.error.setStyleSheet("color: #b00020")
        self.error.setWordWrap(True)
        form = QFormLayout(self)
        form.addRow("Name", self.name_edit)
        form.addRow("Id", self.id_edit)
        form.addRow(self.error)
        self.name_edit.textChanged.connect(lambda _: self.error.clear())

    @property
    def name(self) -> str:
        return validate_name(self.name_edit.text())

    def validatePage(self) -> bool:
        try:
            name = self.name
        except UserError as error:
            self.error.setText(str(error))
            return False
        if any(name_key(p.name) == name_key(name) for p in self.store.people()):
            self.error.setText(f"{name!r} is already enrolled: add a second name or an initial")
            return False
        return True


def gate_text(event: CaptureEvent) -> str:
    """ "Held by the head pose gate: yaw -12°; the front pose needs |yaw| < 8° ..." """
    if event.gate is None:
        return ""
    return f"Held by the {GATE_NAMES.get(event.gate, event.gate)} gate: {event.detail}"


class CaptureLoop:
    """Reads, detects and offers frames on its own thread, so the window never waits on
    the camera or the detector; it keeps only the newest event for the window to draw."""

    def __init__(self, session: CaptureSession, reader: FrameReader, detector: FaceDetector):
        self.session = session
        self.reader = reader
        self.detector = detector
        self.lock = threading.Lock()  # guards the session and ``latest``
        self.latest: tuple[CaptureEvent, NDArray[np.uint8] | None] | None = None
        self.error: Exception | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="enroll-capture", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                frame = self.reader()
                faces = [] if frame is None else self.detector.detect(frame)
            except SourceEnded as ended:  # a video: said so, not "camera lost"
                with self.lock:
                    self.latest = (self.session.ended(str(ended)), None)
                return
            except Exception as error:  # shown to the operator; the photos taken stay
                self.error = error
                return
            with self.lock:
                event = self.session.offer(frame, faces)
                self.latest = (event, frame)
                if self.session.done:
                    return
            if frame is None:
                self._stop.wait(0.05)  # no camera right now: do not spin


class CapturePage(QWizardPage):
    """Live preview, guidance and per-pose progress; photos are taken automatically."""

    def __init__(
        self, config: EnrollConfig, reader: FrameReader, detector: FaceDetector, refresh_ms: int
    ) -> None:
        super().__init__()
        self.config = config
        self.session = CaptureSession(config, keep_originals=config.keep_originals)
        self.loop = CaptureLoop(self.session, reader, detector)
        self.setTitle("Photos")
        self.setSubTitle("Follow the instructions; photos are taken automatically.")
        # The preview takes the room the page has (Ignored: a pixmap's size must never
        # grow the page, which pushed the wizard's buttons off a 600 px screen).
        self.preview = QLabel()
        self.preview.setMinimumSize(QSize(320, 240))
        self.preview.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Ignored)
        self.preview.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.guidance = QLabel("step in front of the camera")
        guidance_font = QFont(self.guidance.font())
        guidance_font.setPointSize(18)
        guidance_font.setBold(True)
        self.guidance.setFont(guidance_font)
        self.guidance.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop)
        self.guidance.setWordWrap(True)
        # Room for three lines, whatever the message: the bars below never move.
        self.guidance.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)
        self.guidance.setFixedHeight(QFontMetrics(guidance_font).lineSpacing() * 3 + 8)
        # For the operator: the gate holding the photo back, what it measured, its key.
        self.gate = QLabel("")
        self.gate.setObjectName("gate")
        self.gate.setWordWrap(True)
        self.gate.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop)
        self.gate.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)
        self.gate.setFixedHeight(QFontMetrics(self.gate.font()).lineSpacing() * 3 + 4)
        self.bars: dict[str, QProgressBar] = {}
        grid = QGridLayout()
        for row, (pose, wanted) in enumerate(self.session.wanted.items()):
            bar = QProgressBar()
            bar.setRange(0, wanted)
            bar.setFormat(f"{pose}: %v / %m")
            grid.addWidget(bar, row, 0)
            self.bars[pose] = bar
        self.skip = QPushButton("Skip this pose")
        self.skip.setToolTip("when the volunteer cannot turn this way")
        self.skip.clicked.connect(self._skip_pose)
        side = QVBoxLayout()
        side.addWidget(self.guidance)
        side.addWidget(self.gate)
        side.addLayout(grid)
        side.addWidget(self.skip)
        side.addStretch(1)
        layout = QHBoxLayout(self)
        layout.addWidget(self.preview, 3)
        layout.addLayout(side, 2)
        self.shown_photos = 0
        self.timer = QTimer(self)
        self.timer.setInterval(refresh_ms)
        self.timer.timeout.connect(self.refresh)

    def initializePage(self) -> None:
        self.loop.start()
        self.timer.start()

    def stop(self) -> None:
        self.timer.stop()
        self.loop.stop()

    def cleanupPage(self) -> None:
        self.stop()

    def validatePage(self) -> bool:
        self.stop()
        return True

    def isComplete(self) -> bool:
        with self.loop.lock:
            return len(self.session.photos) >= self.config.min_photos

    def _skip_pose(self) -> None:
        with self.loop.lock:
            if self.session.target is not None:
                self.session.skip_pose(self.session.target)
        self.refresh()

    def refresh(self) -> None:
        """Draw the newest event and the progress; runs on the GUI thread's timer."""
        with self.loop.lock:
            latest, self.loop.latest = self.loop.latest, None
            progress = self.session.progress()
            skipped = set(self.session.skipped)
            done = self.session.done
            photos = len(self.session.photos)
        if latest is not None:
            self._show(*latest)
        for pose, (taken, _) in progress.items():
            self.bars[pose].setValue(taken)
            self.bars[pose].setEnabled(pose not in skipped)
        self.skip.setEnabled(not done)
        if photos != self.shown_photos:
            self.shown_photos = photos
            self.completeChanged.emit()
        if self.loop.error is not None:
            self.guidance.setText(f"the camera stopped: {self.loop.error}")
            self.timer.stop()
        elif done:
            self.guidance.setText("all photos taken: press Next to review them")
            self.timer.stop()

    def _show(self, event: CaptureEvent, frame: NDArray[np.uint8] | None) -> None:
        self.guidance.setText(event.message)
        self.gate.setText(gate_text(event))
        if frame is None:
            return
        view: NDArray[np.uint8] = frame.copy()
        if event.face is not None:
            x1, y1, x2, y2 = (int(v) for v in event.face.box)
            colour = (0, 200, 0) if event.status == "captured" else (0, 200, 255)
            cv2.rectangle(view, (x1, y1), (x2, y2), colour, 3)
        mirrored = cv2.flip(view, 1)  # a mirror: turning left moves the face left on screen
        room = self.preview.contentsRect()
        size = max(120, min(room.width(), room.height()))
        self.preview.setPixmap(to_pixmap(np.asarray(mirrored, dtype=np.uint8), size))


class ReviewPage(QWizardPage):
    """Every crop, checked; the operator unchecks the bad ones."""

    def __init__(self, capture: CapturePage, min_photos: int) -> None:
        super().__init__()
        self.capture = capture
        self.min_photos = min_photos
        self.setTitle("Review")
        self.grid = QListWidget()
        self.grid.setViewMode(QListView.ViewMode.IconMode)
        self.grid.setIconSize(QSize(112, 112))
        self.grid.setResizeMode(QListView.ResizeMode.Adjust)
        self.grid.itemChanged.connect(lambda _: self._update())
        self.count = QLabel()
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel("Uncheck any photo that is blurred, cut off or not this person."))
        layout.addWidget(self.grid, 1)
        layout.addWidget(self.count)

    def initializePage(self) -> None:
        self.grid.clear()
        for index, photo in enumerate(self.capture.session.photos):
            item = QListWidgetItem(QIcon(to_pixmap(photo.crop, 112)), photo.pose)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(Qt.CheckState.Checked)
            item.setData(Qt.ItemDataRole.UserRole, index)
            self.grid.addItem(item)
        self._update()

    def accepted_indices(self) -> list[int]:
        return [
            int(self.grid.item(i).data(Qt.ItemDataRole.UserRole))
            for i in range(self.grid.count())
            if self.grid.item(i).checkState() == Qt.CheckState.Checked
        ]

    def _update(self) -> None:
        accepted = len(self.accepted_indices())
        self.count.setText(
            f"{counted(accepted, 'photo')} accepted; at least {self.min_photos} are needed"
        )
        self.completeChanged.emit()

    def isComplete(self) -> bool:
        return len(self.accepted_indices()) >= self.min_photos


class SaveWorker(QObject):
    """Saves the person atomically, then updates the recognizer, off the GUI thread.

    Every exception ends in ``failed`` with a message (never a silent, hanging thread):
    before the save, nothing was stored and the page offers to try again; after it, the
    person is enrolled and only the update failed."""

    progress = Signal(float, str)  # fraction done, what is being done
    saved = Signal()
    finished = Signal(str)  # what to tell the operator
    failed = Signal(str)

    def __init__(
        self,
        store: PeopleStore,
        update: RecognizerUpdate,
        person: tuple[str, str | None, Consent, list[CapturedPhoto]],
    ) -> None:
        super().__init__()
        self.store = store
        self.recognizer_update = update
        self.person = person
        self.cancel = threading.Event()

    def run(self) -> None:
        name, external_id, consent, photos = self.person
        try:
            self.store.add_person(name, photos, consent, external_id=external_id)
        except Exception as error:  # a full disk, a bad name: said, nothing stored
            log.warning("the wizard could not save %r: %s", name, error)
            self.failed.emit(str(error) if isinstance(error, UserError) else f"{error!r}")
            return
        self.saved.emit()
        try:
            message = self.recognizer_update.run(self.progress.emit, self.cancel)
        except Exception as error:
            log.exception("the recognizer update after enrolling %r failed", name)
            self.failed.emit(f"saved, but the recognizer was not updated: {error}")
            return
        self.finished.emit(message)


class SavePage(QWizardPage):
    def __init__(self, wizard: EnrollWizard) -> None:
        super().__init__()
        self.owner = wizard
        self.setTitle("Save and train")
        self.status = QLabel()
        self.status.setWordWrap(True)
        self.bar = QProgressBar()
        self.cancel = QPushButton("Stop waiting")
        self.cancel.setToolTip("the person stays enrolled; the recognizer keeps updating")
        self.retry = QPushButton("Try again")
        self.retry.hide()
        self.cancel.clicked.connect(self._cancel)
        self.retry.clicked.connect(self.initializePage)
        layout = QVBoxLayout(self)
        layout.addWidget(self.status)
        layout.addWidget(self.bar)
        layout.addWidget(self.cancel)
        layout.addWidget(self.retry)
        self.saved = False
        self.done = False
        self.error: str | None = None  # why the last save failed (the retry button shows)
        self.worker_thread: QThread | None = None
        self.worker: SaveWorker | None = None

    def initializePage(self) -> None:
        self.retry.hide()
        self.cancel.setEnabled(True)
        self.done = False
        self.error = None
        self.bar.setRange(0, 0)
        self.status.setText("saving…")
        thread = QThread(self)
        worker = SaveWorker(
            self.owner.store, self.owner.recognizer_update, self.owner.person_to_save()
        )
        worker.moveToThread(thread)
        thread.started.connect(worker.run)
        worker.saved.connect(self._saved)
        worker.progress.connect(self._progress)
        worker.finished.connect(self._finished)
        worker.failed.connect(self._failed)
        for signal in (worker.finished, worker.failed):
            # Direct: the thread ends even while the GUI thread is blocked in wait().
            signal.connect(thread.quit, Qt.ConnectionType.DirectConnection)
        self.worker_thread, self.worker = thread, worker
        thread.start()

    def _saved(self) -> None:
        self.saved = True
        self.status.setText("saved; updating the recognizer…")

    def _progress(self, fraction: float, what: str) -> None:
        self.bar.setRange(0, 100)
        self.bar.setValue(round(100 * fraction))
        self.status.setText(f"{self.owner.person_name} is saved; {what}")

    def _finished(self, message: str) -> None:
        self.owner.saved_person = self.owner.person_name
        self.owner.enrolled.emit(self.owner.person_name)
        self._end(f"{self.owner.person_name} is enrolled; {message}.")

    def _failed(self, message: str) -> None:
        self.error = message
        self.status.setText(f"{message}\nThe photos are kept here: try again.")
        self.bar.setRange(0, 1)
        self.cancel.setEnabled(False)
        if not self.saved:
            self.retry.show()
        else:
            self._end(message)

    def _cancel(self) -> None:
        if self.worker is not None:
            self.worker.cancel.set()

    def _end(self, message: str) -> None:
        self.status.setText(message)
        self.bar.setRange(0, 1)
        self.bar.setValue(1)
        self.cancel.setEnabled(False)
        self.done = True
        self.completeChanged.emit()

    def isComplete(self) -> bool:
        return self.done

    def wait(self) -> None:
        """Stop training (the person stays saved) and wait for the worker to end."""
        if self.worker is not None:
            self.worker.cancel.set()
        if self.worker_thread is not None:
            self.worker_thread.wait()


class EnrollWizard(QWizard):
    """Consent, name, capture, review, save and update the recognizer (``update``: the
    gallery's refresh, or CLIP's retrain, followed until the new person can be named).
    ``enrolled(name)`` fires then, for a running kiosk to pick up at once."""

    enrolled = Signal(str)

    def __init__(
        self,
        store: PeopleStore,
        config: EnrollConfig,
        reader: FrameReader,
        detector: FaceDetector,
        update: RecognizerUpdate,
        *,
        refresh_ms: int = 33,
        disclosure: Disclosure | None = None,
    ) -> None:
        """``disclosure``: what the consent text tells of the set-up (default: a single
        kiosk without an event log)."""
        super().__init__()
        self.setWindowTitle("Enroll a volunteer")
        self.store = store
        self.config = config
        self.recognizer_update = update
        self.saved_person: str | None = None  # once saved and the recognizer updated
        self.consent_page = ConsentPage(config, store.encrypted, disclosure or Disclosure())
        self.name_page = NamePage(store)
        self.capture_page = CapturePage(config, reader, detector, refresh_ms)
        self.review_page = ReviewPage(self.capture_page, config.min_photos)
        self.save_page = SavePage(self)
        for page in (
            self.consent_page,
            self.name_page,
            self.capture_page,
            self.review_page,
            self.save_page,
        ):
            self.addPage(page)
        self.setOption(QWizard.WizardOption.NoBackButtonOnLastPage)
        self.setOption(QWizard.WizardOption.NoCancelButtonOnLastPage)
        fit_to_screen(self, 1000, 720)  # all of it, buttons too, on a 1024x600 panel

    @property
    def person_name(self) -> str:
        return self.name_page.name

    def person_to_save(self) -> tuple[str, str | None, Consent, list[CapturedPhoto]]:
        consent = self.consent_page.consent
        if consent is None:
            raise UserError("no consent recorded: nothing may be saved")
        photos = self.capture_page.session.photos
        accepted = [photos[i] for i in self.review_page.accepted_indices()]
        external = self.name_page.id_edit.text().strip() or None
        return self.person_name, external, consent, accepted

    def done(self, result: int) -> None:
        self.capture_page.stop()
        self.save_page.wait()
        super().done(result)


class AutoRun:
    """How a run of :func:`drive_automatically` ended: ``error`` says why it stopped
    before the person was enrolled (None while it runs, or once it succeeded)."""

    def __init__(self) -> None:
        self.error: str | None = None


def drive_automatically(
    wizard: EnrollWizard, name: str, source: FrameSource, timings: dict[str, float]
) -> AutoRun:
    """Answer every page as a cooperative volunteer and operator would, timing each step
    (`kiosk enroll --auto NAME`, the enrollment benchmark). Whatever stops it (a name
    the wizard refuses, a video that ends too early, a save that fails, such as on a full
    disk) closes the wizard and is said in the returned :class:`AutoRun`: it never waits
    for a person who is not there."""
    steps = ["consent", "name", "capture", "review", "save_and_train"]
    entered = {"page": -1, "at": time.monotonic()}
    run = AutoRun()

    def stop(error: str | None = None) -> None:
        timer.stop()
        run.error = error
        wizard.close()

    def step() -> None:
        try:
            advance()
        except UserError as error:
            stop(str(error))
        except Exception as error:  # a bug: said, logged with its traceback, and stopped
            log.exception("the automatic enrollment failed")
            stop(f"the automatic enrollment failed: {error!r}")

    def advance() -> None:
        page = wizard.currentId()
        now = time.monotonic()
        if page != entered["page"]:
            if entered["page"] >= 0:
                timings[f"{steps[int(entered['page'])]}_s"] = now - entered["at"]
            entered.update(page=page, at=now)
        current = wizard.currentPage()
        if current is wizard.consent_page:
            wizard.consent_page.agree.setChecked(True)
            wizard.next()
        elif current is wizard.name_page:
            wizard.name_page.name_edit.setText(name)
            wizard.next()
            if wizard.currentPage() is wizard.name_page:
                stop(wizard.name_page.error.text() or f"the name {name!r} was refused")
        elif current is wizard.capture_page:
            session = wizard.capture_page.session
            if session.done or (source.finished and wizard.capture_page.isComplete()):
                wizard.next()
            elif source.finished:
                held = session.blocking()
                stop(
                    f"the video ended after {counted(len(session.photos), 'usable photo')}, "
                    "fewer than the wizard needs: use a longer video"
                    + (f"; {held}" if held else "")
                )
        elif current is wizard.review_page:
            wizard.next()
        elif current is wizard.save_page and wizard.save_page.isComplete():
            timings["save_and_train_s"] = now - entered["at"]
            timer.stop()
            wizard.accept()
        elif current is wizard.save_page and wizard.save_page.error and not wizard.save_page.saved:
            stop(wizard.save_page.error)  # a person at the screen would press "Try again"

    timer = QTimer(wizard)
    timer.setInterval(20)
    timer.timeout.connect(step)
    timer.start()
    return run
