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
from pathlib import Path

from PySide6.QtCore import QSize, Qt, QTimer, Signal
from PySide6.QtGui import QFont, QFontMetrics, QIcon, QKeySequence, QPixmap, QShortcut
from PySide6.QtWidgets import (
    QFileDialog,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QListView,
    QListWidget,
    QListWidgetItem,
    QMessageBox,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from kiosk.trials.exports import SUFFIXES, ReportLog, write_session_report
from kiosk.trials.rules import TrialResult, per_participant
from kiosk.trials.session import TrialSession
from kiosk.ui.fit_text import FitLabel
from kiosk.ui.screen_fit import fit_to_screen
from models.errors import UserError
from models.words import counted

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


METRIC_TITLES = {
    "tp": "TP",
    "fp": "FP",
    "fn": "FN",
    "tn": "TN",
    "no_face": "no face",
    "misidentified": "misidentified",
    "attack_refused": "attacks refused",
    "attack_accepted": "attacks accepted",
    "trials": "trials",
    "accuracy": "accuracy",
    "fpr": "FPR",
    "fnr": "FNR",
    "apcer": "APCER",
}
METRIC_COLUMNS = 3  # (title, value) pairs a row: fits a 1024 px console
# The widest a value gets ("100.0%", five digits): its column never changes width.
WIDEST_VALUE = "100.0%"
EXPORT_FILTERS = {
    "CSV, one row a trial (*.csv)": ".csv",
    "JSON, everything (*.json)": ".json",
    "HTML report with plots (*.html)": ".html",
}
PEOPLE_COLUMNS = [
    ("participant", "the name on the roster"),
    ("kind", "enrolled, visitor or attack"),
    ("trials", "trials run"),
    ("TP", "named correctly"),
    ("FP", "a stranger named, or someone named as another"),
    ("FN", "enrolled, rejected"),
    ("TN", "a stranger rejected"),
    ("no face", "no face in the window"),
    ("refused", "attack trials refused"),
    ("accepted", "attack trials accepted (also FP)"),
]


class TrialsPanel(QWidget):
    """Roster, Start (button or Space) with a countdown, Export, metrics, and the per
    person, matrix, log and definitions tabs.

    Two columns: the controls (below ``video`` when the console gives its camera view)
    and the results. Every number sits in a column as wide as its widest value and every
    message in a space of its own, so nothing moves as the counts grow.
    """

    trial_started = Signal(str)  # participant name
    countdown = Signal(float)  # seconds left in the active trial, for the kiosk screen
    trial_finished = Signal(object)  # TrialResult

    def __init__(
        self,
        session: TrialSession,
        clock: Callable[[], float] = time.monotonic,
        parent: QWidget | None = None,
        *,
        video: QWidget | None = None,
        target_fpr: float = 0.02,
        reports: Path | None = None,
    ) -> None:
        """``reports``: the kiosk's trials database, where each export is recorded so
        that an erasure reaches it (kiosk/trials/exports.py)."""
        super().__init__(parent)
        self.session = session
        self.target_fpr = target_fpr
        self.reports = reports
        self._clock = clock
        self._timer = QTimer(self)
        self._timer.setInterval(100)
        self._timer.timeout.connect(self._tick)

        self.roster = QListWidget()
        self.roster.setMinimumWidth(150)
        _wrapping(self.roster)
        self.visitor_name = QLineEdit()
        self.visitor_name.setPlaceholderText("a visitor, or 'photo of Ada'")
        self.add_visitor_button = QPushButton("Add visitor")
        self.add_attack_button = QPushButton("Add attack")
        self.add_attack_button.setToolTip(
            "a presentation attack: someone holds up a photo or screen of an enrolled person"
        )
        self.start_button = QPushButton("Start trial (Space)")
        self.export_button = QPushButton("Export…")
        self.export_button.setToolTip("save the session as CSV, JSON or an HTML report")
        self.export_dialog: QFileDialog | None = None  # while it is open
        # Someone was erased and the session's trials are not shown anonymised yet: no
        # export, which would write the name again (reload_results ends it).
        self.erasing = False
        self._reload = False  # reload_results once the trial in progress ends
        self.countdown_label = FitLabel("", largest=36, smallest=12, bold=True)
        self.countdown_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)
        self.countdown_label.setFixedHeight(44)
        self.message = QLabel("")
        self.message.setWordWrap(True)
        self.message.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop)
        # The room left in its column, at least three lines: a message coming or going
        # moves nothing (no height-for-width: the text never resizes it).
        self.message.setSizePolicy(
            QSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Ignored)
        )
        self.message.setMinimumHeight(self.message.fontMetrics().lineSpacing() * 3 + 4)

        value_font = QFont(self.font())
        value_font.setPointSize(max(11, value_font.pointSize() + 3))
        value_font.setBold(True)
        value_width = QFontMetrics(value_font).horizontalAdvance(WIDEST_VALUE) + 6
        self.metric_labels: dict[str, QLabel] = {}
        metrics_box = QGroupBox("Totals")
        grid = QGridLayout(metrics_box)
        grid.setHorizontalSpacing(6)
        grid.setVerticalSpacing(2)
        for i, key in enumerate(METRIC_KEYS + RATE_KEYS):
            label = QLabel("0")
            label.setObjectName(key)
            label.setFont(value_font)
            label.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            label.setFixedWidth(value_width)
            self.metric_labels[key] = label
            row, column = divmod(i, METRIC_COLUMNS)
            title = QLabel(METRIC_TITLES[key])
            title.setToolTip(OUTCOME_HELP)
            grid.addWidget(title, row, 2 * column)
            grid.addWidget(label, row, 2 * column + 1)
        for column in range(METRIC_COLUMNS):
            grid.setColumnStretch(2 * column, 1)

        self.people_table = QTableWidget(0, len(PEOPLE_COLUMNS))
        self.people_table.setHorizontalHeaderLabels([name for name, _ in PEOPLE_COLUMNS])
        for column, (_, tip) in enumerate(PEOPLE_COLUMNS):
            header_item = self.people_table.horizontalHeaderItem(column)
            if header_item is not None:
                header_item.setToolTip(tip)
        self.people_table.verticalHeader().setVisible(False)
        self.people_table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        header = self.people_table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        header.setMinimumSectionSize(36)
        for column in range(1, len(PEOPLE_COLUMNS)):
            header.setSectionResizeMode(column, QHeaderView.ResizeMode.Fixed)
            widest = "not enrolled" if column == 1 else PEOPLE_COLUMNS[column][0]  # the kind
            width = header.fontMetrics().horizontalAdvance(widest) + 14
            header.resizeSection(column, max(width, 40))
        self.confusion_table = QTableWidget(0, 0)
        self.confusion_table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.confusion_table.horizontalHeader().setSectionResizeMode(
            QHeaderView.ResizeMode.ResizeToContents
        )
        self.log = QListWidget()
        self.log.setIconSize(QSize(40, 40))
        _wrapping(self.log)
        definitions = QLabel(OUTCOME_HELP)
        definitions.setWordWrap(True)
        definitions.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop)
        definitions.setMargin(6)
        definitions_scroll = QScrollArea()
        definitions_scroll.setWidget(definitions)
        definitions_scroll.setWidgetResizable(True)
        self.tabs = QTabWidget()
        self.tabs.addTab(self.log, "Trial log")
        self.tabs.addTab(self.people_table, "Per participant")
        self.tabs.addTab(self.confusion_table, "Confusion matrix")
        self.tabs.addTab(definitions_scroll, "Definitions")
        self.tabs.setTabToolTip(2, "rows: participant, columns: answer")

        buttons = QVBoxLayout()
        buttons.addWidget(self.visitor_name)
        add_row = QHBoxLayout()
        add_row.addWidget(self.add_visitor_button)
        add_row.addWidget(self.add_attack_button)
        buttons.addLayout(add_row)
        buttons.addWidget(self.start_button)
        buttons.addWidget(self.countdown_label)
        buttons.addWidget(self.message, 1)
        buttons.addWidget(self.export_button)
        roster_column = QVBoxLayout()
        roster_column.addWidget(QLabel("Roster"))
        roster_column.addWidget(self.roster, 1)
        controls = QHBoxLayout()
        controls.addLayout(roster_column, 1)
        controls.addLayout(buttons, 1)
        left = QVBoxLayout()
        if video is not None:
            left.addWidget(video, 3)
        left.addLayout(controls, 2)
        right = QVBoxLayout()
        right.addWidget(metrics_box)
        right.addWidget(self.tabs, 1)
        layout = QHBoxLayout(self)
        layout.addLayout(left, 5 if video is not None else 2)
        layout.addLayout(right, 4)

        self.add_visitor_button.clicked.connect(self.add_visitor)
        self.add_attack_button.clicked.connect(self.add_attack)
        self.visitor_name.returnPressed.connect(self.add_visitor)
        self.start_button.clicked.connect(self.start_trial)
        self.export_button.clicked.connect(self.export)
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

    def forget(self, names: list[str]) -> bool:
        """People erased from the store leave the roster, and a trial of theirs in
        progress is dropped, never recorded (whether one was); exports wait until
        :meth:`reload_results` shows the trials anonymised."""
        self.erasing = True
        dropped = self.session.forget(names)
        if dropped:
            self._timer.stop()
            self._set_idle(True)
            self.countdown_label.setText("")
            self.message.setText("the trial was stopped: its participant was erased")
        self._fill_roster()
        return dropped

    def reload_results(self) -> None:
        """The session's finished trials as the store holds them now (after an erasure:
        anonymised), shown; exports again. A trial in progress ends first."""
        if self.session.active is not None:
            self._reload = True
            return
        self._reload = False
        try:
            self.session.reload_results()
        except UserError as error:
            self.message.setText(str(error))
            return
        self.erasing = False
        self.refresh()

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
            if self._reload:
                self.reload_results()

    def export(self) -> None:
        """Export button: ask where, write it, and say how it went."""
        if self.erasing:
            self.message.setText("someone was erased: export once their trials are anonymised")
            return
        path = self.ask_export_path()
        if path is None:
            return
        try:
            self.export_to(path)
        except (UserError, OSError) as error:
            self.message.setText(f"export failed: {error}")
            QMessageBox.warning(self, "Export", f"The session was not exported.\n\n{error}")
            return
        self.message.setText(f"exported {counted(len(self.session.results), 'trial')} to {path}")

    def ask_export_path(self) -> Path | None:
        """A save dialog; the file type follows the filter chosen when the name has none."""
        stem = f"trials-session-{self.session.session_id or 'live'}"
        dialog = QFileDialog(self, "Export the trial session", str(Path.home() / f"{stem}.csv"))
        dialog.setAcceptMode(QFileDialog.AcceptMode.AcceptSave)
        dialog.setOption(QFileDialog.Option.DontUseNativeDialog)
        dialog.setNameFilters(list(EXPORT_FILTERS))
        fit_to_screen(dialog, 820, 520)
        self.export_dialog = dialog
        try:
            if dialog.exec() != QFileDialog.DialogCode.Accepted or not dialog.selectedFiles():
                return None
            path = Path(dialog.selectedFiles()[0])
            if not path.suffix:
                path = path.with_suffix(EXPORT_FILTERS.get(dialog.selectedNameFilter(), ".csv"))
            return path
        finally:
            self.export_dialog = None
            dialog.deleteLater()

    def export_to(self, path: Path) -> None:
        """Write the session to ``path`` as its suffix says (.csv, .json or .html), 0600,
        recorded in the trials database ``reports`` when given."""
        kind = SUFFIXES.get(path.suffix.lower())
        if kind is None:
            raise UserError(f"cannot export to {path.name}: name a .csv, .json or .html file")
        recorder = None
        if self.reports is not None:
            recorder = ReportLog(self.reports, [self.session], self.target_fpr, remakeable=True)
        write_session_report(
            kind, self.session, path, target_fpr=self.target_fpr, recorder=recorder
        )

    def _set_idle(self, idle: bool) -> None:
        # No export while a trial runs: its transaction holds the trials database, where
        # the export is recorded.
        buttons = (self.start_button, self.add_visitor_button, self.add_attack_button)
        for button in (*buttons, self.export_button):
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
                item = QTableWidgetItem(str(cell))
                item.setToolTip(str(cell))  # a long name is elided in a narrow window
                self.people_table.setItem(row, column, item)

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
            f" {result.outcome.value}\n{result.face_frames}/{len(result.frames)} frames"
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


def _wrapping(view: QListWidget) -> None:
    """Long lines of ``view`` wrap at its width instead of scrolling sideways."""
    view.setWordWrap(True)
    view.setResizeMode(QListView.ResizeMode.Adjust)
    view.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
