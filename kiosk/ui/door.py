"""`kiosk run`: the door-side window over the live pipeline, from the config to the exit.

Missing model files are fetched (after asking) before any window opens; the pipeline is
built and started off the GUI thread (:class:`~kiosk.live.starter.PipelineStarter`), so
the window shows at once. An error the user can fix is also shown in a dialog: a kiosk
started from a launcher has no terminal.
"""

from __future__ import annotations

import signal
from pathlib import Path

from kiosk.build import live_pipeline
from kiosk.config import KioskConfig, load_config
from kiosk.live.starter import PipelineStarter
from kiosk.ui.result_source import LivePipeline
from models.errors import ModelError, UserError


def start_pipeline(config: KioskConfig, source: str | None) -> LivePipeline:
    """The one place `kiosk run` gets its pipeline: built and started off the GUI thread.
    On a site, the erasures its sync applies are finished while it runs."""
    from kiosk.erasure import ErasureFinisher

    finisher = ErasureFinisher(config)
    return PipelineStarter(lambda: live_pipeline(config, source=source, on_erased=finisher.request))


def first_run(
    config: KioskConfig, *, assume_yes: bool, command: str = "kiosk run", kiosk: str = "kiosk"
) -> None:
    """Missing or corrupt model files: say what will be downloaded, ask, fetch (from the
    site mirror first), before any window. ``command`` reruns this one, ``kiosk`` is the
    prefix of the commands suggested (:func:`~kiosk.setup.first_run.kiosk_command`)."""
    from kiosk.setup.first_run import ensure_models, needed_models
    from models.registry import resolve_model_dir

    ensure_models(
        needed_models(config),
        resolve_model_dir(config.models.dir),
        mirror=config.models.mirror,
        assume_yes=assume_yes,
        command=command,
        kiosk=kiosk,
    )


def run_door(
    config_path: Path | None,
    source: str | None,
    *,
    windowed: bool,
    assume_yes: bool,
    kiosk: str = "kiosk",
) -> int:
    """The locked full-screen kiosk (a normal window when ``windowed``) until it closes:
    by the operator (PIN), SIGTERM from the service manager, or Ctrl+C. ``kiosk`` is the
    command prefix (with the user's ``--home``, ``--config``) of the commands suggested."""
    from kiosk.erasure import finish_erasures
    from kiosk.setup.first_run import rerun_command
    from kiosk.ui import application, has_display, show_error_dialog
    from kiosk.ui.enrollment import KioskEnrollment
    from kiosk.ui.main_window import KioskWindow, no_pin_message

    try:
        config = load_config(config_path)
        if not windowed and config.ui.operator_pin is None:
            raise UserError(no_pin_message(kiosk))
        again = rerun_command(kiosk, windowed=windowed, source=source)
        first_run(config, assume_yes=assume_yes, command=again, kiosk=kiosk)
        finish_erasures(config)  # the purged and the erased: gone everywhere first
        app = application()
        pipeline = start_pipeline(config, source)
    except (UserError, ModelError) as error:
        # The CLI prints it to stderr; a kiosk started from a launcher has no terminal,
        # so it also gets one dialog.
        if has_display():
            show_error_dialog(str(error))
        raise
    try:
        window = KioskWindow(
            pipeline,
            kiosk_mode=not windowed,
            pin_hash=config.ui.operator_pin,
            poll_ms=config.ui.poll_ms,
            door_open_s=config.ui.door_open_s,
            door_sound=config.ui.door_sound,
        )
        if isinstance(pipeline, PipelineStarter):
            shown = source if source is not None else config.kiosk.source
            window.on_enroll = KioskEnrollment(window, config, shown, pipeline).open
        window.start()
        # The service manager's stop (SIGTERM) or Ctrl+C in the setup terminal closes the
        # window; the poll timer runs Python often enough for the handler to be called.
        previous = {
            signum: signal.signal(signum, lambda *_: window.shutdown())
            for signum in (signal.SIGINT, signal.SIGTERM)
        }
        try:
            code = int(app.exec())
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
    finally:
        pipeline.stop()
    failed = getattr(pipeline, "error", None)  # shown in the window; the CLI says it too
    if isinstance(failed, UserError | ModelError):
        raise failed
    return code
