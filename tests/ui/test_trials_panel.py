"""The live trials panel, rendered offscreen with pytest-qt."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import Qt

from kiosk.trials.rules import Outcome, TrialResult
from kiosk.trials.session import TrialSession
from kiosk.ui.trials_panel import TrialsPanel
from models.recognition import Prediction


class FakeClock:
    """A clock the test moves by hand, so the 5-second window takes no real time."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def panel(qtbot) -> TrialsPanel:
    session = TrialSession(duration=5.0, threshold=0.8)
    session.add_participant("alice", enrolled=True)
    session.add_participant("bob", enrolled=True)
    clock = FakeClock()
    widget = TrialsPanel(session, clock=clock)
    qtbot.addWidget(widget)
    widget.show()
    widget.clock = clock  # type: ignore[attr-defined]
    return widget


def run_trial(qtbot, panel: TrialsPanel, row: int, name: str | None, conf: float) -> TrialResult:
    panel.roster.setCurrentRow(row)
    clock = panel.clock  # type: ignore[attr-defined]
    with qtbot.waitSignal(panel.trial_started, timeout=1000):
        qtbot.mouseClick(panel.start_button, Qt.MouseButton.LeftButton)
    assert not panel.start_button.isEnabled()
    assert panel.countdown_label.text() == "5.0 s"
    crop = np.full((112, 112, 3), 120, dtype=np.uint8)
    for _ in range(10):
        best = name or "alice"
        panel.session.add_frame(clock.now, Prediction(name, best, conf), face_crop=crop)
        clock.now += 0.25
    qtbot.waitUntil(lambda: panel.countdown_label.text() == "2.5 s", timeout=1000)
    clock.now += 3.0  # past the end of the window
    with qtbot.waitSignal(panel.trial_finished, timeout=2000) as blocker:
        pass
    result = blocker.args[0]
    assert isinstance(result, TrialResult)
    return result


def test_trials_update_every_view(qtbot, panel: TrialsPanel) -> None:
    assert panel.roster.count() == 2
    assert panel.metric_labels["accuracy"].text() == "–"

    first = run_trial(qtbot, panel, 0, "alice", 0.95)
    assert first.outcome is Outcome.TP
    assert panel.metric_labels["tp"].text() == "1"
    assert panel.metric_labels["accuracy"].text() == "100.0%"
    assert panel.start_button.isEnabled()

    panel.visitor_name.setText("Visitor One")
    qtbot.mouseClick(panel.add_visitor_button, Qt.MouseButton.LeftButton)
    assert panel.roster.count() == 3
    assert panel.selected_participant() == "Visitor One"
    second = run_trial(qtbot, panel, 2, "bob", 0.9)  # a stranger given a name
    assert second.outcome is Outcome.FP and not second.misidentified
    third = run_trial(qtbot, panel, 1, None, 0.4)  # bob rejected
    assert third.outcome is Outcome.FN

    labels = {key: label.text() for key, label in panel.metric_labels.items()}
    assert (labels["tp"], labels["fp"], labels["fn"], labels["tn"]) == ("1", "1", "1", "0")
    assert labels["trials"] == "3"
    assert labels["accuracy"] == "33.3%" and labels["fpr"] == "100.0%" and labels["fnr"] == "50.0%"

    assert panel.people_table.rowCount() == 3
    assert panel.people_table.item(2, 0).text() == "Visitor One"
    assert panel.people_table.item(2, 4).text() == "1"  # its FP column

    matrix = panel.confusion_table
    columns = [matrix.horizontalHeaderItem(c).text() for c in range(matrix.columnCount())]
    rows = [matrix.verticalHeaderItem(r).text() for r in range(matrix.rowCount())]
    assert rows == ["alice", "bob", "not enrolled"]
    assert columns == ["alice", "bob", "rejected", "no face"]
    assert matrix.item(0, 0).text() == "1"  # alice -> alice
    assert matrix.item(1, 2).text() == "1"  # bob -> rejected
    assert matrix.item(2, 1).text() == "1"  # visitor -> bob

    assert panel.log.count() == 3
    newest = panel.log.item(0)
    assert newest.text().startswith("bob (enrolled) -> rejected: FN")
    assert not newest.icon().isNull()  # the trial's thumbnail
    panel.grab()  # renders without error


def test_errors_show_in_the_panel(qtbot, panel: TrialsPanel) -> None:
    panel.roster.setCurrentRow(-1)
    panel.roster.clearSelection()
    panel.start_trial()
    assert "select a participant" in panel.message.text()
    panel.visitor_name.setText("alice")
    panel.add_visitor()
    assert "already on the roster" in panel.message.text()
    assert panel.roster.count() == 2


def test_space_starts_a_trial(qtbot, panel: TrialsPanel) -> None:
    panel.roster.setCurrentRow(0)
    panel.roster.setFocus()
    with qtbot.waitSignal(panel.trial_started, timeout=1000):
        qtbot.keyClick(panel.roster, Qt.Key.Key_Space)
    assert panel.session.active is not None


def test_attack_trials_are_counted(qtbot, panel: TrialsPanel) -> None:
    panel.visitor_name.setText("photo of alice")
    qtbot.mouseClick(panel.add_attack_button, Qt.MouseButton.LeftButton)
    assert panel.roster.item(2).text() == "photo of alice  (attack)"
    clock = panel.clock  # type: ignore[attr-defined]
    outcomes = []
    for live in (False, None):  # found not live, then a liveness check that never decided
        panel.roster.setCurrentRow(2)
        panel.start_trial()
        for _ in range(10):
            panel.session.add_frame(clock.now, Prediction("alice", "alice", 0.95), live=live)
            clock.now += 0.25
        clock.now += 3.0
        with qtbot.waitSignal(panel.trial_finished, timeout=2000) as blocker:
            pass
        outcomes.append(blocker.args[0].outcome)
    assert outcomes == [Outcome.ATTACK_REFUSED, Outcome.FP]
    labels = {key: label.text() for key, label in panel.metric_labels.items()}
    assert (labels["attack_refused"], labels["attack_accepted"], labels["fp"]) == ("1", "1", "1")
    assert labels["apcer"] == "50.0%"
    assert "ATTACK ACCEPTED" in panel.log.item(0).text()
    assert "10 not live" in panel.log.item(1).text()
    table = panel.confusion_table
    rows = [table.verticalHeaderItem(r).text() for r in range(table.rowCount())]
    assert rows[-1] == "attack"


def _with_trials(qtbot, panel: TrialsPanel) -> None:
    run_trial(qtbot, panel, 0, "alice", 0.95)
    run_trial(qtbot, panel, 1, None, 0.4)


@pytest.mark.parametrize("suffix", [".csv", ".json", ".html"])
def test_export_writes_each_format(qtbot, panel: TrialsPanel, tmp_path, suffix: str) -> None:
    import csv
    import json

    _with_trials(qtbot, panel)
    path = tmp_path / f"session{suffix}"
    panel.ask_export_path = lambda: path  # type: ignore[method-assign]
    qtbot.mouseClick(panel.export_button, Qt.MouseButton.LeftButton)
    assert panel.message.text() == f"exported 2 trials to {path}"
    text = path.read_text(encoding="utf-8")
    if suffix == ".csv":
        rows = list(csv.DictReader(text.splitlines()))
        assert [(r["participant"], r["outcome"]) for r in rows] == [("alice", "TP"), ("bob", "FN")]
    elif suffix == ".json":
        summary = json.loads(text)
        assert (summary["tp"], summary["fn"], summary["trials"]) == (1, 1, 2)
    else:
        assert text.startswith("<!doctype html>") and "alice" in text


def test_a_failed_export_says_why(qtbot, panel: TrialsPanel, tmp_path, monkeypatch) -> None:
    from PySide6.QtWidgets import QMessageBox

    _with_trials(qtbot, panel)
    warned: list[str] = []
    monkeypatch.setattr(QMessageBox, "warning", lambda parent, title, text: warned.append(text))
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    panel.ask_export_path = lambda: blocked / "session.csv"  # type: ignore[method-assign]
    panel.export()
    assert len(warned) == 1 and "not exported" in warned[0] and "cannot write" in warned[0]
    assert panel.message.text().startswith("export failed: cannot write")
    panel.ask_export_path = lambda: tmp_path / "session.xlsx"  # type: ignore[method-assign]
    panel.export()
    assert "name a .csv, .json or .html file" in warned[1]
    assert not (tmp_path / "session.xlsx").exists()
    panel.ask_export_path = lambda: None  # type: ignore[method-assign]
    panel.export()  # cancelled: nothing said, nothing written
    assert len(warned) == 2


def test_the_export_dialog_adds_the_chosen_type(qtbot, panel: TrialsPanel, tmp_path) -> None:
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QLineEdit

    from kiosk.ui.trials_panel import EXPORT_FILTERS

    json_filter = next(f for f, suffix in EXPORT_FILTERS.items() if suffix == ".json")
    seen: dict[str, object] = {}

    def answer() -> None:
        dialog = panel.export_dialog
        if dialog is None:
            QTimer.singleShot(20, answer)
            return
        seen["size"] = (dialog.width(), dialog.height())
        dialog.selectNameFilter(json_filter)
        dialog.setDirectory(str(tmp_path))
        name = dialog.findChild(QLineEdit, "fileNameEdit")  # where the operator types
        name.setText("my-session")  # without a type
        dialog.accept()

    QTimer.singleShot(20, answer)
    assert panel.ask_export_path() == tmp_path / "my-session.json"
    assert panel.export_dialog is None
    assert seen["size"][0] <= 820 and seen["size"][1] <= 520  # type: ignore[index]


def test_numbers_and_messages_do_not_move_the_layout(qtbot, panel: TrialsPanel) -> None:
    from PySide6.QtCore import QPoint
    from PySide6.QtGui import QFontMetrics

    panel.resize(900, 560)
    qtbot.wait(50)
    watched = [panel.start_button, panel.export_button, panel.countdown_label, panel.tabs]
    watched += list(panel.metric_labels.values())

    def places() -> list[tuple[int, int, int, int]]:
        return [(*w.mapTo(panel, QPoint(0, 0)).toTuple(), w.width(), w.height()) for w in watched]

    before = places()
    for key, label in panel.metric_labels.items():
        label.setText("100.0%" if key in ("accuracy", "fpr", "fnr", "apcer") else "12345")
        assert QFontMetrics(label.font()).horizontalAdvance(label.text()) <= label.width()
    panel.countdown_label.setText("attack_refused")
    panel.message.setText("a participant needs a name; " * 4)
    qtbot.wait(50)
    assert places() == before


def test_an_export_is_recorded_for_erasure_and_waits_for_the_trial(qtbot, tmp_path) -> None:
    """The console's exports are recorded in the kiosk's trials database, 0600, with the
    session that makes them again; no export while a trial holds that database."""
    from kiosk.trials.store import TrialStore

    database = tmp_path / "trials.sqlite"
    with TrialStore(database) as store:
        session = store.create_session(label="live", duration=5.0, threshold=0.8, min_share=0.5)
        session.add_participant("alice", enrolled=True)
        clock = FakeClock()
        panel = TrialsPanel(session, clock=clock, reports=database)
        qtbot.addWidget(panel)
        panel.show()
        panel.clock = clock  # type: ignore[attr-defined]
        panel.roster.setCurrentRow(0)
        qtbot.mouseClick(panel.start_button, Qt.MouseButton.LeftButton)
        assert not panel.export_button.isEnabled()  # the trial's transaction is open
        clock.now += 6.0
        qtbot.waitUntil(panel.export_button.isEnabled, timeout=2000)
        path = tmp_path / "out" / "session.html"
        panel.ask_export_path = lambda: path  # type: ignore[method-assign]
        qtbot.mouseClick(panel.export_button, Qt.MouseButton.LeftButton)
        assert panel.message.text() == f"exported 1 trial to {path}"
        [record] = store.reports()
    assert (record.path, record.kind, record.session_id, record.last_trial) == (path, "html", 1, 1)
    assert path.stat().st_mode & 0o777 == 0o600


def test_an_erased_participant_leaves_the_roster_and_their_trial_is_dropped(
    qtbot, panel: TrialsPanel
) -> None:
    panel.roster.setCurrentRow(0)
    panel.start_trial()
    assert panel.session.active is not None and not panel.start_button.isEnabled()
    assert panel.forget(["ALICE"])  # names match under name_key
    assert panel.session.active is None and panel.start_button.isEnabled()
    assert [panel.roster.item(i).text() for i in range(panel.roster.count())] == ["bob  (enrolled)"]
    assert "participant was erased" in panel.message.text()
    panel.export()  # would write the trials before the erasure anonymised them
    assert "export once" in panel.message.text() and panel.export_dialog is None
    panel.reload_results()  # the erasure is finished
    assert not panel.erasing
    assert not panel.forget(["nobody"])  # no trial ran
