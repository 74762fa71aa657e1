"""`kiosk trials` without a verb: the operator console on the live pipeline, recording a
session of everyone enrolled into the trials database."""

from __future__ import annotations

from pathlib import Path

from kiosk.config import KioskConfig
from kiosk.trials.runs import (
    EnrolledRoster,
    configured_recognizer,
    default_database,
    session_origin,
    trials_pipeline,
)


def run_console(
    config: KioskConfig, source: str | None, db: Path | None, operator: str | None = None
) -> int:
    """Open the console (``source`` overrides ``[kiosk] source``) until it is closed; the
    session records the site, kiosk and ``operator`` (default: the login name) for the
    exports' header. The journal's erasures are finished first; the roster then follows
    the people store, and erasures a site sync applies are finished while it runs."""
    from kiosk.erasure import ErasureFinisher, finish_erasures
    from kiosk.trials.rules import Participant
    from kiosk.trials.site import open_trial_store
    from kiosk.ui import application
    from kiosk.ui.trials_window import TrialsWindow

    finish_erasures(config)  # the purged and the erased: gone everywhere first
    app = application()
    roster = EnrolledRoster(config)
    finisher = ErasureFinisher(config)
    try:
        pipeline = trials_pipeline(config, source, on_erased=finisher.request)
        shown_source = source if source is not None else config.kiosk.source
        # On a site, finished trials are also queued for the registry (kiosk/trials/site.py).
        database = db if db is not None else default_database(config)
        with open_trial_store(config, database) as store:
            session = store.create_session(
                label=f"live {shown_source}",
                duration=config.trials.duration,
                threshold=pipeline.recognizers.current().threshold,
                min_share=config.trials.min_share,
                # The pipeline's recognizer is the configured one (kiosk.build); every frame
                # records its label and version (record_live_result).
                recognizer=configured_recognizer(config),
                participants=[Participant(name, enrolled=True) for name in roster.names],
                **session_origin(config, operator),
            )
            # Liveness reaches the tracks through the tracker's veto; without one no check
            # runs, and a named track must not be recorded as live.
            liveness = config.liveness.enabled and pipeline.tracker.veto is not None
            window = TrialsWindow(
                pipeline,
                session,
                liveness=liveness,
                poll_ms=config.ui.poll_ms,
                target_fpr=config.trials.target_fpr,  # the exports' threshold analysis
                reports=default_database(config).expanduser(),  # each export, for erasure
                roster=roster,  # the erased leave it
                finisher=finisher,
            )
            if not roster.people:
                window.panel.message.setText(
                    "nobody is enrolled yet: add visitors, or enroll first"
                )
            window.start()
            try:
                return int(app.exec())
            finally:
                window.shutdown()
    finally:
        roster.close()
