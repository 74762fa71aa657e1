"""Counts in words for what people read: "1 person", "2 people", "1 photo", "3 photos"."""

from __future__ import annotations

IRREGULAR = {"person": "people", "person's": "people's"}


def counted(count: int, singular: str, plural: str | None = None) -> str:
    """``count`` with the noun it counts, singular for exactly one ("1 person", "0 people")."""
    if count == 1:
        return f"{count} {singular}"
    return f"{count} {plural or IRREGULAR.get(singular, singular + 's')}"
