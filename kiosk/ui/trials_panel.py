"""The operator's live trials panel: a thin view over :class:`kiosk.trials.session.TrialSession`.

The panel starts and ends trials and draws the session; it decides nothing. Frames reach
the active trial from the live pipeline through ``session.add_frame(now, prediction,
crop, live)`` (``kiosk.trials.session.record_live_result`` in the console,
``kiosk/ui/trials_window.py``) using the same clock the panel was given. Participants are
enrolled people, visitors (not enrolled) and presentation attacks. When the window has elapsed, the
panel's timer ends the trial, refreshes every view and emits ``trial_finished``.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from PySide6.QtCore import QSize, Qt, QTimer, Signal
from PySide6.QtGui import QFont, QIcon, QKeySequence, QPixmap, QShortcut
from PySide6.QtWidgets import (
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from kiosk.trials.rules import TrialResult, per_participant
from kiosk.trials.session import TrialSession
from models.errors import UserError

METRIC_KEYS = (
    "tp",
    "fp",
    "fn",
    "tn",
    "no_face",
    "misidentified",
    "attack_refused",
    "attack_accepted",
    "trials",
)
RATE_KEYS = ("accuracy", "fpr", "fnr", "apcer")
OUTCOME_HELP = (
    "TP: enrolled, named correctly.  FP: a stranger given a name, or an enrolled person"
    " named as someone else (also a misidentification).  FN: enrolled, rejected.  TN: a"
    " stranger rejected.  Attack (a photo of an enrolled person): refused when rejected or"
    " not live; accepted (also an FP) when named.  APCER: accepted / attack trials.  no_face:"
    " no face in the window (in N, not in FPR/FNR)."
)


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"


class TrialsPanel(QWidget):
    """Roster, Start (button or Space) with a countdown, metrics, per person, matrix, log."""

    trial_started = Signal(str)  # participant name
    countdown = Signal(float)  # seconds left in the active trial, for the kiosk screen
    trial_finished = Signal(object)  # TrialResult

    def __init__(
        self,
        session: TrialSession,
        clock: Callable[[], float] = time.monotonic,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.session = session
        self._clock = clock
        self._timer = QTimer(self)
        self._timer.setInterval(100)
        self._timer.timeout.connect(self._tick)

        self.roster = QListWidget()
        self.visitor_name = QLineEdit()
        self.visitor_name.setPlaceholderText("a visitor, or 'photo of Ada'")
        self.add_visitor_button = QPushButton("Add visitor")
        self.add_attack_button = QPushButton("Add attack")
        self.add_attack_button.setToolTip(
            "a presentation attack: someone holds up a photo or screen of an enrolled person"
        )
        self.start_button = QPushButton("Start trial (Space)")
        self.countdown_label = QLabel("")
        font = QFont()
        font.setPointSize(28)
        font.setBold(True)
        self.countdown_label.setFont(font)
        self.countdown_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.message = QLabel("")
        self.message.setWordWrap(True)

        value_font = QFont()
        value_font.setPointSize(16)
        value_font.setBold(True)
        self.metric_labels: dict[str, QLabel] = {}
        metrics_box = QGroupBox("Totals")
        grid = QGridLayout(metrics_box)
        for i, key in enumerate(METRIC_KEYS + RATE_KEYS):
            label = QLabel("0")
            label.setObjectName(key)
            label.setFont(value_font)
            self.metric_labels[key] = label
            title = key.upper() if len(key) <= 3 or key == "apcer" else key.replace("_", " ")
            grid.addWidget(QLabel(title), i // 5 * 2, i % 5)
            grid.addWidget(label, i // 5 * 2 + 1, i % 5)
        help_label = QLabel(OUTCOME_HELP)
        help_label.setWordWrap(True)
        grid.addWidget(help_label, (len(METRIC_KEYS + RATE_KEYS) + 4) // 5 * 2, 0, 1, 5)

        people_columns = ["participant", "kind", "trials", "TP", "FP", "FN", "TN", "no face"]
        people_columns += ["attack refused", "attack accepted"]
        self.people_table = QTableWidget(0, len(people_columns))
        self.people_table.setHorizontalHeaderLabels(people_columns)
        self.people_table.verticalHeader().setVisible(False)
        self.people_table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.confusion_table = QTableWidget(0, 0)
        self.confusion_table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.confusion_table.horizontalHeader().setSectionResizeMode(
            QHeaderView.ResizeMode.ResizeToContents
        )
        self.log = QListWidget()
        self.log.setIconSize(QSize(48, 48))

        left = QVBoxLayout()
        left.addWidget(QLabel("Roster"))
        left.addWidget(self.roster)
        left.addWidget(self.visitor_name)
        add_row = QHBoxLayout()
        add_row.addWidget(self.add_visitor_button)
        add_row.addWidget(self.add_attack_button)
        left.addLayout(add_row)
        left.addWidget(self.start_button)
        left.addWidget(self.countdown_label)
        left.addWidget(self.message)
        right = QVBoxLayout()
        right.addWidget(metrics_box)
        right.addWidget(QLabel("Per participant"))
        right.addWidget(self.people_table)
        right.addWidget(QLabel("Confusion matrix (rows: participant, columns: answer)"))
        right.addWidget(self.confusion_table)
        right.addWidget(QLabel("Trial log"))
        right.addWidget(self.log)
        layout = QHBoxLayout(self)
        layout.addLayout(left, 1)
        layout.addLayout(right, 2)

        self.add_visitor_button.clicked.connect(self.add_visitor)
        self.add_attack_button.clicked.connect(self.add_attack)
        self.visitor_name.returnPressed.connect(self.add_visitor)
        self.start_button.clicked.connect(self.start_trial)
        QShortcut(QKeySequence(Qt.Key.Key_Space), self, self.start_trial)
        self.refresh()

    # -- actions -----------------------------------------------------------------------

    def add_visitor(self) -> None:
        self._add_participant(attack=False)

    def add_attack(self) -> None:
        self._add_participant(attack=True)

    def _add_participant(self, *, attack: bool) -> None:
        try:
            self.session.add_participant(self.visitor_name.text(), enrolled=False, attack=attack)
        except UserError as error:
            self.message.setText(str(error))
            return
        self.visitor_name.clear()
        self.message.setText("")
        self._fill_roster()
        self.roster.setCurrentRow(self.roster.count() - 1)

    def selected_participant(self) -> str | None:
        item = self.roster.currentItem()
        return None if item is None else str(item.data(Qt.ItemDataRole.UserRole))

    def start_trial(self) -> None:
        name = self.selected_participant()
        if name is None:
            self.message.setText("select a participant first")
            return
        try:
            self.session.start(name, now=self._clock(), wall_clock=time.time())
        except UserError as error:
            self.message.setText(str(error))
            return
        self.message.setText(f"trial running: {name}")
        self._set_idle(False)
        self.trial_started.emit(name)
        self._timer.start()
        self._tick()

    def _tick(self) -> None:
        active = self.session.active
        if active is None:
            self._timer.stop()
            return
        now = self._clock()
        remaining = active.remaining(now)
        self.countdown_label.setText(f"{remaining:.1f} s")
        self.countdown.emit(remaining)
        if self.session.is_due(now):
            self._timer.stop()
            result = self.session.finish()
            self._set_idle(True)
            self.countdown_label.setText(result.outcome.value)
            self.message.setText(f"{result.participant.name}: {result.answer_label}")
            self.refresh()
            self.trial_finished.emit(result)

    def _set_idle(self, idle: bool) -> None:
        for button in (self.start_button, self.add_visitor_button, self.add_attack_button):
            button.setEnabled(idle)

    # -- views -------------------------------------------------------------------------

    def refresh(self) -> None:
        self._fill_roster()
        self._fill_metrics()
        self._fill_people()
        self._fill_confusion()
        self._fill_log()

    def _fill_roster(self) -> None:
        current = self.selected_participant()
        self.roster.clear()
        for participant in self.session.participants:
            item = QListWidgetItem(f"{participant.name}  ({participant.kind})")
            item.setData(Qt.ItemDataRole.UserRole, participant.name)
            self.roster.addItem(item)
            if participant.name == current:
                self.roster.setCurrentItem(item)

    def _fill_metrics(self) -> None:
        values = self.session.metrics().as_dict()
        for key in METRIC_KEYS:
            self.metric_labels[key].setText(str(values[key]))
        for key in RATE_KEYS:
            value = values[key]
            self.metric_labels[key].setText(_percent(None if value is None else float(value)))

    def _fill_people(self) -> None:
        summaries = per_participant(self.session.results)
        self.people_table.setRowCount(len(summaries))
        for row, summary in enumerate(summaries):
            m = summary.metrics
            cells = [summary.participant.name, summary.participant.kind, m.trials]
            cells += [m.tp, m.fp, m.fn, m.tn, m.no_face, m.attack_refused, m.attack_accepted]
            for column, cell in enumerate(cells):
                self.people_table.setItem(row, column, QTableWidgetItem(str(cell)))

    def _fill_confusion(self) -> None:
        matrix = self.session.confusion()
        table = self.confusion_table
        table.setRowCount(len(matrix.rows))
        table.setColumnCount(len(matrix.columns))
        table.setVerticalHeaderLabels(matrix.rows)
        table.setHorizontalHeaderLabels(matrix.columns)
        for row in range(len(matrix.rows)):
            for column in range(len(matrix.columns)):
                count = int(matrix.counts[row, column])
                table.setItem(row, column, QTableWidgetItem(str(count) if count else ""))

    def _fill_log(self) -> None:
        self.log.clear()
        for result in reversed(self.session.results):
            self.log.addItem(self._log_item(result))

    @staticmethod
    def _log_item(result: TrialResult) -> QListWidgetItem:
        text = (
            f"{result.participant.name} ({result.participant.kind}) -> {result.answer_label}:"
            f" {result.outcome.value}   {result.face_frames}/{len(result.frames)} frames"
            " with a face"
        )
        live, not_live, _ = result.live_frames
        if live or not_live:
            text += f", {not_live} not live"
        if result.attack_accepted:
            text += "  ATTACK ACCEPTED"
        item = QListWidgetItem(text)
        if result.thumbnail:
            pixmap = QPixmap()
            if pixmap.loadFromData(result.thumbnail, "JPG"):
                item.setIcon(QIcon(pixmap))
        return item
