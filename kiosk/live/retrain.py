"""The CLIP bundle's background retrain: one child process at a time, never the video.

When the people in the store change (someone enrolled, renamed, deleted, purged), the
finetuned CLIP recognizer must learn the new set. :class:`Retrainer` runs ``kiosk train
--from-store`` in a child process at a lower priority (``nice``): torch, RN50's text
tower and the optimiser live and die there, so the kiosk's own memory and threads are
untouched, a crash in training cannot take the door down, and on two cores the video
keeps the CPU it needs. The child warm-starts from the bundle in use, writes the new
bundle atomically, and reports its progress as JSON lines on stdout, which become
:class:`RetrainStatus` for the wizard's last page and the operator's view. The running
kiosk picks the new bundle up through its recognizer holder and swaps it in between two
frames.

Requests while a retrain runs are merged into one more run after it. Several processes
(the door, a wizard in another process) may each run a retrainer over one store: the
child holds a lock on the bundle, so their trainings never overlap, and a child that
finds the bundle already trained from the store's current state exits at once.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

log = logging.getLogger(__name__)

RetrainState = Literal["idle", "training", "done", "failed"]
NICE = 10


@dataclass(frozen=True)
class RetrainStatus:
    """What the last (or running) retrain is doing, for people to read."""

    state: RetrainState
    message: str = ""
    progress: float = 0.0  # 0 to 1 while training
    eta_s: float | None = None  # seconds left, an estimate
    version: int | None = None  # the bundle version the last success wrote
    finished_at: float | None = None  # time.time() of the last end
    pending: bool = False  # another run is due after this one

    @property
    def busy(self) -> bool:
        return self.state == "training" or self.pending


def progress_line(**fields: object) -> str:
    """One progress report of the child, as it writes it to stdout."""
    return json.dumps(fields, ensure_ascii=False)


class Retrainer:
    """Runs ``command`` (the child training run) on request, one at a time."""

    def __init__(
        self,
        command: Sequence[str],
        *,
        env: dict[str, str] | None = None,
        on_done: Callable[[RetrainStatus], None] | None = None,
    ) -> None:
        self.command = list(command)
        self.env = env
        self.on_done = on_done
        self._status = RetrainStatus("idle")
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._child: subprocess.Popen[str] | None = None
        self._thread: threading.Thread | None = None

    @classmethod
    def for_config(cls, *, store: Path, bundle: Path) -> Retrainer:
        """``python -m kiosk train --from-store`` of this store into this bundle; the rest
        of the configuration comes from $KIOSK_CONFIG, as in this process."""
        # The child lowers its own priority (os.nice: preexec_fn is unsafe with threads).
        command = [sys.executable, "-m", "kiosk", "train", "--from-store", "--progress"]
        command += ["--nice", str(NICE), "--store", str(store), "--out", str(bundle)]
        # The child runs this very code (a source checkout too, not only an installed one).
        root = str(Path(__file__).resolve().parents[2])
        path = os.environ.get("PYTHONPATH", "")
        env = {**os.environ, "PYTHONPATH": root + (os.pathsep + path if path else "")}
        return cls(command, env=env)

    def status(self) -> RetrainStatus:
        with self._lock:
            return self._status

    def request(self) -> None:
        """Retrain soon: now if idle, else once more after the running retrain."""
        with self._lock:
            self._status = replace(self._status, pending=True)  # busy from now on
            self._wake.set()
            if self._thread is None:
                self._stop.clear()
                self._thread = threading.Thread(target=self._run, name="retrain", daemon=True)
                self._thread.start()

    def stop(self) -> None:
        """End the retrain in progress (the bundle in use stays) and the worker thread."""
        self._stop.set()
        self._wake.set()
        child = self._child
        if child is not None and child.poll() is None:
            child.terminate()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _set(self, **fields: object) -> None:
        with self._lock:
            self._status = replace(self._status, **fields)  # type: ignore[arg-type]

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait()
            self._wake.clear()
            if self._stop.is_set():
                return
            self._set(
                state="training",
                message="updating the recognizer",
                progress=0.0,
                eta_s=None,
                pending=False,
            )
            status = self._train_once()
            with self._lock:
                again = self._status.pending
                self._status = replace(status, pending=again)
            if self.on_done is not None:
                try:
                    self.on_done(status)
                except Exception:  # a listener's bug must not stop retraining
                    log.exception("retrain listener failed")

    def _train_once(self) -> RetrainStatus:
        started = time.time()
        last: dict[str, object] = {}
        try:
            child = subprocess.Popen(
                self.command,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                stdin=subprocess.DEVNULL,
                text=True,
                env=self.env,
            )
        except OSError as error:
            return RetrainStatus(
                "failed", f"the retrain could not start: {error}", finished_at=time.time()
            )
        self._child = child
        errors: list[str] = []
        stderr = child.stderr
        reader = threading.Thread(
            target=lambda: errors.extend(stderr.readlines() if stderr else []), daemon=True
        )
        reader.start()
        assert child.stdout is not None
        for line in child.stdout:
            try:
                report = json.loads(line)
            except json.JSONDecodeError:
                continue
            if not isinstance(report, dict):
                continue
            last = report
            self._set(
                message=str(report.get("message", "updating the recognizer")),
                progress=float(report.get("progress", 0.0)),
                eta_s=report.get("eta_s"),
            )
        code = child.wait()
        reader.join(timeout=5)
        self._child = None
        finished = time.time()
        if self._stop.is_set():
            return RetrainStatus("idle", "stopped", finished_at=finished)
        if code != 0:
            reason = next(
                (
                    line.removeprefix("kiosk: error: ").strip()
                    for line in reversed(errors)
                    if line.startswith("kiosk: error:")
                ),
                (errors[-1].strip() if errors else f"exit status {code}"),
            )
            log.warning("the recognizer retrain failed: %s", reason)
            return RetrainStatus("failed", reason, finished_at=finished)
        version = last.get("version")
        message = str(last.get("message", "the recognizer is up to date"))
        log.info("recognizer retrained in %.1f s: %s", finished - started, message)
        return RetrainStatus(
            "done",
            message,
            progress=1.0,
            version=int(version) if isinstance(version, int) else None,
            finished_at=finished,
        )
