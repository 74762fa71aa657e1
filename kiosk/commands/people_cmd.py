"""`kiosk people list|rename|delete|import|export|purge|audit|new-key` (arguments:
people_args.py; the rows: enroll/records.py)."""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import sys
from collections import Counter
from collections.abc import Iterator
from typing import TYPE_CHECKING

from kiosk.commands import people_args
from kiosk.commands.prompt import confirm
from kiosk.config import load_config
from models.errors import UserError
from models.words import counted

if TYPE_CHECKING:
    from enroll.store import PeopleStore
    from kiosk.config import KioskConfig
    from models.io import Skipped


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    verbs = people_args.register(subparsers)
    # each verb's handler is the function named after it: new-key -> _new_key
    for handler in (_list, _rename, _delete, _purge, _export, _import, _audit, _new_key):
        verbs[handler.__name__[1:].replace("_", "-")].set_defaults(handler=handler)


@contextlib.contextmanager
def _open(args: argparse.Namespace, *, keyless: bool = False) -> Iterator[PeopleStore]:
    """The store (on a site: the replica, whose changes reach the registry at the end).

    Whoever was purged on opening it, deleted or purged meanwhile, or erased earlier
    without everything being removed, is removed from everything else when the block
    ends (kiosk/erasure.py). ``keyless``: the command decrypts nothing, so an encrypted
    store opens without its key (an erasure must never wait for one)."""
    from kiosk.build import with_store
    from kiosk.setup.site import people_store

    config = with_store(load_config(args.config), args.store)
    # After the push; after an error in the block: the next command.
    finish = functools.partial(_finish_erasures, config)
    with people_store(config, config.enroll.store_dir, keyless=keyless, then=finish) as store:
        for uid in store.purged_on_open:
            print(f"purged person {uid}: retention period ended", file=sys.stderr)
        yield store


def _finish_erasures(config: KioskConfig, store: PeopleStore) -> None:
    from kiosk.erasure import complete_erasures

    for erased in complete_erasures(config, store):
        print(f"erased person {erased.uid}: {erased.summary()}", file=sys.stderr)
        for problem in erased.problems:
            print(
                f"kiosk: warning: person {erased.uid} is not erased from {problem}; "
                "any `kiosk people` command tries again",
                file=sys.stderr,
            )


def _list(args: argparse.Namespace) -> int:
    from enroll.records import person_line, person_row

    with _open(args, keyless=True) as store:
        rows = [person_row(person, store.retention_days) for person in store.people()]
    if args.json:
        print(json.dumps({"store": str(store.root), "people": rows}, indent=2, ensure_ascii=False))
        return 0
    print(f"people store: {store.root} ({counted(len(rows), 'person')})")
    for row in rows:
        print(person_line(row))
    return 0


def _rename(args: argparse.Namespace) -> int:
    with _open(args, keyless=True) as store:
        person = store.rename(args.old, args.new)
    print(f"renamed {args.old!r} to {person.name!r}")
    return 0


def _delete(args: argparse.Namespace) -> int:
    with _open(args, keyless=True) as store:
        person = store.get(args.name)
        photos = counted(person.photo_count, "photo")
        question = f"Delete {person.name!r} and their {photos} for good?"
        confirm(question, args.yes)
        uid = store.delete(person.name, reason=args.reason, action=args.action)
        print(f"deleted {person.name!r} (audit id {uid})")
    return 0


def _purge(args: argparse.Namespace) -> int:
    with _open(args, keyless=True) as store:
        if not args.names:
            purged = store.purge_expired()
            print(f"{len(store.purged_on_open) + len(purged)} expired people purged")
            return 0
        people = [store.get(name) for name in args.names]
        confirm(f"Purge the biometric data of {counted(len(people), 'person')} for good?", args.yes)
        for person in people:
            uid = store.delete(person.name, reason="purged on request", action="purge")
            print(f"purged {person.name!r} (audit id {uid})")
    return 0


def _export(args: argparse.Namespace) -> int:
    skipped: list[Skipped] = []
    with _open(args) as store:
        count = store.export(args.dir, skipped=skipped)
        people = len(store.people())
    if args.json:
        report = {"dir": str(args.dir), "people": people, "photos": count}
        print(json.dumps({**report, "skipped": [s.as_dict() for s in skipped]}, indent=2))
        return 0
    print_skipped(skipped, "left out (damaged in the store: see `kiosk doctor`)")
    print(f"exported {counted(count, 'photo')} of {counted(people, 'person')} to {args.dir}")
    return 0


def print_skipped(skipped: list[Skipped], what: str, shown: int = 20) -> None:
    """Each skipped input with its reason on stderr (the first ``shown``), then how many
    there were of each reason (the most frequent eight)."""
    if not skipped:
        return
    for item in skipped[:shown]:
        print(f"kiosk: {what}: {item.path}: {item.reason}", file=sys.stderr)
    if len(skipped) > shown:
        print(f"kiosk: ... and {len(skipped) - shown} more", file=sys.stderr)
    counts = Counter(item.reason for item in skipped).most_common()
    summary = "; ".join(f"{n} x {reason}" for reason, n in counts[:8])
    others = sum(n for _, n in counts[8:])
    summary += f"; {others} for other reasons" if others else ""
    print(f"kiosk: {len(skipped)} {what}: {summary}", file=sys.stderr)


def _import(args: argparse.Namespace) -> int:
    from enroll.records import import_consent
    from kiosk.build import photo_aligner

    config = load_config(args.config)
    consent = import_consent(config.enroll.consent_version, args.consent_obtained)
    if not args.dir.is_dir():
        raise UserError(f"{args.dir} is not a folder of per-person folders (<dir>/<name>/<image>)")
    skipped: list[Skipped] = []
    with _open(args) as store:
        imported = store.import_folder(
            args.dir, consent, align=photo_aligner(config), skipped=skipped
        )
    if args.json:
        report = {"imported": imported, "skipped": [item.as_dict() for item in skipped]}
        print(json.dumps(report, indent=2, ensure_ascii=False))
        return 0
    for name, count in imported.items():
        print(f"imported {name!r}: {counted(count, 'photo')}")
    print_skipped(skipped, "skipped")
    photos = counted(sum(imported.values()), "photo")
    print(f"{counted(len(imported), 'person')} imported ({photos}, {len(skipped)} skipped)")
    return 0


def _audit(args: argparse.Namespace) -> int:
    from enroll.records import audit_line, audit_row

    with _open(args, keyless=True) as store:
        rows = [audit_row(entry) for entry in store.audit()]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for row in rows:
        print(audit_line(row))
    return 0


def _new_key(args: argparse.Namespace) -> int:
    from enroll.keys import KEY_ENV, new_key

    print(new_key())
    print(
        f"keep it safe: without it the photos cannot be read. export {KEY_ENV}=...", file=sys.stderr
    )
    return 0
