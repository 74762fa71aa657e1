"""Counts in words: never "1 people" or "1 photos"."""

from models.words import counted


def test_one_is_singular_and_every_other_count_plural() -> None:
    assert counted(1, "person") == "1 person"
    assert [counted(n, "person") for n in (0, 2, 12)] == ["0 people", "2 people", "12 people"]
    assert counted(1, "photo") == "1 photo" and counted(30, "photo") == "30 photos"
    assert counted(3, "push", "pushes") == "3 pushes" and counted(1, "push", "pushes") == "1 push"
