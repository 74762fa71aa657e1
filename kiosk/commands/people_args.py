"""The arguments of `kiosk people` (its handlers are in people_cmd.py)."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
) -> dict[str, argparse.ArgumentParser]:
    """`kiosk people` and its verbs; the verbs' parsers by name, to be given handlers."""
    parser = subparsers.add_parser("people", help="list, rename, delete, import, export people")
    parser.add_argument("--store", type=Path, default=None, help="override the people store dir")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    list_p = verbs.add_parser("list", help="enrolled people, their photos and consent")
    list_p.add_argument("--json", action="store_true", help="print JSON")

    rename_p = verbs.add_parser("rename", help="change a person's display name")
    rename_p.add_argument("old")
    rename_p.add_argument("new")

    delete_p = verbs.add_parser("delete", help="delete a person: records and photos, no trace")
    delete_p.add_argument("name")
    delete_p.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    delete_p.set_defaults(action="delete", reason="deleted on request")

    purge_p = verbs.add_parser(
        "purge", help="purge biometric data: of NAMEs on request, or of everyone expired"
    )
    purge_p.add_argument("names", nargs="*", metavar="NAME")
    purge_p.add_argument("--yes", action="store_true", help="do not ask for confirmation")

    export_p = verbs.add_parser(
        "export", help="write <DIR>/<name>/<image>.png aligned crops (a new or empty DIR)"
    )
    export_p.add_argument("dir", type=Path)
    export_p.add_argument("--json", action="store_true", help="print JSON")

    import_p = verbs.add_parser("import", help="enroll everyone in <DIR>/<name>/<image>")
    import_p.add_argument("dir", type=Path)
    import_p.add_argument(
        "--consent-obtained",
        action="store_true",
        help="confirm that every person in DIR consented (recorded with today's date)",
    )
    import_p.add_argument("--json", action="store_true", help="print JSON")

    audit_p = verbs.add_parser("audit", help="the log of deletions and purges (no biometrics)")
    audit_p.add_argument("--json", action="store_true", help="print JSON")

    verbs.add_parser("new-key", help="print a fresh key for $KIOSK_STORE_KEY")
    return dict(verbs.choices)
