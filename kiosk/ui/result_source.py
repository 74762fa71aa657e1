"""What a window needs from the live pipeline: the newest result, or None."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from kiosk.live.results import FrameResult


class ResultSource(Protocol):
    """Anything that hands out the newest published `FrameResult`.

    ``latest()`` must return at once (it runs on the GUI thread on every poll) and may
    return the same object again when nothing new was published.
    """

    def latest(self) -> FrameResult | None: ...

    def status(self) -> str:
        """One line about the source's trouble ("camera 0 lost, reconnecting in 4 s"),
        or "". Asked on every poll, so it must return at once too."""
        ...


class LivePipeline(ResultSource, Protocol):
    """A started pipeline, as `kiosk run` holds it: ``stop()`` joins its threads."""

    def stop(self) -> None: ...
