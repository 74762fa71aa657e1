"""Asking the person at the terminal before a command destroys something."""

from __future__ import annotations

import sys

from models.errors import UserError


def confirm(question: str, yes: bool) -> None:
    """Return if ``yes`` (``--yes``) or the person answers y; else refuse, changing nothing."""
    if yes:
        return
    if not sys.stdin.isatty():
        raise UserError(f"{question} Not asked (no terminal): add --yes to confirm")
    if input(f"{question} [y/N] ").strip().lower() not in ("y", "yes"):
        raise UserError("cancelled; nothing was changed")
