"""What the people store removes when it opens, and what it leaves to a live process."""

from __future__ import annotations

from pathlib import Path

from enroll.store import PeopleStore
from models.io import held_lock


def test_an_export_lock_without_its_journal_is_removed_unless_held(tmp_path: Path) -> None:
    root = tmp_path / "store"
    PeopleStore(root).close()
    dead = root / "exports" / f"{'a' * 32}.lock"  # killed before it wrote its journal
    dead.touch()
    live = root / "exports" / f"{'b' * 32}.lock"
    # held: an export in another process, just starting
    with held_lock(live), PeopleStore(root) as store:
        assert not dead.exists() and live.exists()
        assert store.check() == [f"exports/{live.name}: left behind"]
    live.unlink()
    with PeopleStore(root) as store:
        assert store.check() == []
