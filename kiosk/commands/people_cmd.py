"""`kiosk people list|rename|delete|import|export|purge|audit|new-key`."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from kiosk.config import KioskConfig, load_config
from models.errors import UserError

if TYPE_CHECKING:
    from enroll.store import PeopleStore


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("people", help="list, rename, delete, import, export people")
    parser.add_argument("--store", type=Path, default=None, help="override the people store dir")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    list_p = verbs.add_parser("list", help="enrolled people, their photos and consent")
    list_p.add_argument("--json", action="store_true", help="print JSON")
    list_p.set_defaults(handler=_list)

    rename_p = verbs.add_parser("rename", help="change a person's display name")
    rename_p.add_argument("old")
    rename_p.add_argument("new")
    rename_p.set_defaults(handler=_rename)

    delete_p = verbs.add_parser("delete", help="delete a person: records and photos, no trace")
    delete_p.add_argument("name")
    delete_p.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    delete_p.set_defaults(handler=_delete, action="delete", reason="deleted on request")

    purge_p = verbs.add_parser(
        "purge", help="purge biometric data: of NAMEs on request, or of everyone expired"
    )
    purge_p.add_argument("names", nargs="*", metavar="NAME")
    purge_p.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    purge_p.set_defaults(handler=_purge)

    export_p = verbs.add_parser("export", help="write <DIR>/<name>/<image>.png aligned crops")
    export_p.add_argument("dir", type=Path)
    export_p.set_defaults(handler=_export)

    import_p = verbs.add_parser("import", help="enroll everyone in <DIR>/<name>/<image>")
    import_p.add_argument("dir", type=Path)
    import_p.add_argument(
        "--consent-obtained",
        action="store_true",
        help="confirm that every person in DIR consented (recorded with today's date)",
    )
    import_p.set_defaults(handler=_import)

    audit_p = verbs.add_parser("audit", help="the log of deletions and purges (no biometrics)")
    audit_p.add_argument("--json", action="store_true", help="print JSON")
    audit_p.set_defaults(handler=_audit)

    key_p = verbs.add_parser("new-key", help="print a fresh key for $KIOSK_STORE_KEY")
    key_p.set_defaults(handler=_new_key)


@contextlib.contextmanager
def _open(args: argparse.Namespace) -> Iterator[PeopleStore]:
    """The store (on a site: the replica, whose changes reach the registry at the end)."""
    from kiosk.setup.site import people_store

    with people_store(load_config(args.config), args.store) as store:
        for uid in store.purged_on_open:
            print(f"purged person {uid}: retention period ended", file=sys.stderr)
        yield store


def _confirm(question: str, yes: bool) -> None:
    if yes:
        return
    if not sys.stdin.isatty():
        raise UserError(f"{question} Not asked (no terminal): add --yes to confirm")
    answer = input(f"{question} [y/N] ").strip().lower()
    if answer not in ("y", "yes"):
        raise UserError("cancelled; nothing was changed")


def _list(args: argparse.Namespace) -> int:
    with _open(args) as store:
        people = store.people()
        rows: list[dict[str, object]] = [
            {
                "name": p.name,
                "external_id": p.external_id,
                "photos": p.photo_count,
                "enrolled": p.created_at.isoformat(timespec="seconds"),
                "consent_version": p.consent.version,
                "consent_at": p.consent.at.isoformat(timespec="seconds"),
                "purge_after": (p.consent.at + timedelta(days=store.retention_days or 0))
                .date()
                .isoformat(),
            }
            for p in people
        ]
        root = store.root
    if args.json:
        print(json.dumps({"store": str(root), "people": rows}, indent=2, ensure_ascii=False))
        return 0
    print(f"people store: {root} ({len(rows)} people)")
    for p in people:
        external = f"  id {p.external_id}" if p.external_id else ""
        purge_after = p.consent.at + timedelta(days=store.retention_days or 0)
        print(
            f"{p.name:<30} {p.photo_count:>3} photos  enrolled {p.created_at.date()}"
            f"  purge after {purge_after.date()}{external}"
        )
    return 0


def _rename(args: argparse.Namespace) -> int:
    with _open(args) as store:
        person = store.rename(args.old, args.new)
    print(f"renamed {args.old!r} to {person.name!r}")
    return 0


def _delete(args: argparse.Namespace) -> int:
    with _open(args) as store:
        person = store.get(args.name)
        _confirm(
            f"Delete {person.name!r} and their {person.photo_count} photos for good?", args.yes
        )
        uid = store.delete(person.name, reason=args.reason, action=args.action)
    print(f"deleted {person.name!r} (audit id {uid}); rebuild or restart the recognizer")
    return 0


def _purge(args: argparse.Namespace) -> int:
    with _open(args) as store:
        if not args.names:
            purged = store.purge_expired()
            print(f"{len(store.purged_on_open) + len(purged)} expired people purged")
            return 0
        people = [store.get(name) for name in args.names]
        _confirm(f"Purge the biometric data of {len(people)} people for good?", args.yes)
        for person in people:
            uid = store.delete(person.name, reason="purged on request", action="purge")
            print(f"purged {person.name!r} (audit id {uid})")
    return 0


def _export(args: argparse.Namespace) -> int:
    with _open(args) as store:
        count = store.export(args.dir)
        people = len(store.people())
    print(f"exported {count} photos of {people} people to {args.dir}")
    return 0


def _import(args: argparse.Namespace) -> int:
    from enroll.store import EXPORT_MARKER, Consent, utc_now

    if not args.consent_obtained:
        raise UserError(
            "importing biometric data needs each person's consent: add --consent-obtained "
            "to confirm it was collected"
        )
    if not args.dir.is_dir():
        raise UserError(f"{args.dir} is not a folder of per-person folders (<dir>/<name>/<image>)")
    config = load_config(args.config)
    consent = Consent(f"{config.enroll.consent_version} (import)", utc_now())
    align = None if (args.dir / EXPORT_MARKER).exists() else _aligner(config)
    with _open(args) as store:
        imported = store.import_folder(args.dir, consent, align=align)
    for name, count in imported.items():
        print(f"imported {name!r}: {count} photos")
    print(f"{len(imported)} people imported")
    return 0


def _aligner(config: KioskConfig) -> Callable[[NDArray[np.uint8]], NDArray[np.uint8] | None]:
    """Detect the largest face of a photo and align it as the store keeps crops.

    At 320, not the live view's size: portrait photos' large faces are missed at 640.
    """
    from models.align import CLIP_SIZE, align_face
    from models.detector import FaceDetector
    from models.registry import resolve_model_dir

    detector = FaceDetector.from_name(
        config.detector.name,
        resolve_model_dir(config.models.dir),
        input_size=320,
        threshold=config.detector.threshold,
    )

    def align(image: NDArray[np.uint8]) -> NDArray[np.uint8] | None:
        faces = detector.detect(image, mode="largest")
        return align_face(image, faces[0].kps, CLIP_SIZE) if faces else None

    return align


def _audit(args: argparse.Namespace) -> int:
    with _open(args) as store:
        entries = store.audit()
    rows = [
        {
            "at": e.at.isoformat(timespec="seconds"),
            "action": e.action,
            "subject": e.subject,
            "reason": e.reason,
        }
        for e in entries
    ]
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        for row in rows:
            print(f"{row['at']}  {row['action']:<7} {row['subject']}  {row['reason']}")
    return 0


def _new_key(args: argparse.Namespace) -> int:
    from enroll.keys import KEY_ENV, new_key

    print(new_key())
    print(
        f"keep it safe: without it the photos cannot be read. export {KEY_ENV}=...", file=sys.stderr
    )
    return 0
