"""UI test guard: a modal dialog that no test dismisses fails its test in seconds,
instead of holding the whole run until the suite's hang guard ends it."""

from collections.abc import Iterator

import pytest
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QMessageBox

UNANSWERED_AFTER_MS = 10_000


@pytest.fixture(autouse=True)
def _unanswered_dialogs_fail(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    unanswered: list[str] = []
    modal = QMessageBox.exec

    def exec_with_deadline(box: QMessageBox) -> int:
        def give_up() -> None:
            if box.isVisible():
                unanswered.append(f"{box.text()} {box.informativeText()}".strip())
                box.done(0)

        QTimer.singleShot(UNANSWERED_AFTER_MS, give_up)
        return int(modal(box))

    monkeypatch.setattr(QMessageBox, "exec", exec_with_deadline)
    yield
    assert not unanswered, f"a modal dialog nobody answered: {unanswered}"
