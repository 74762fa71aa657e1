"""`kiosk site migrate|add-kiosk|status|sync|upload|train|purge`: the site registry."""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from kiosk.config import KioskConfig, load_config
from models.errors import UserError
from models.words import counted


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("site", help="a site of many kiosks on one PostgreSQL registry")
    parser.add_argument(
        "--user", default=None, help="connect as this database role instead of [site] user"
    )
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    migrate = verbs.add_parser("migrate", help="create or upgrade the registry's schema")
    migrate.add_argument(
        "--create-roles",
        action="store_true",
        help="also create the kiosk_door, kiosk_enroll and kiosk_operator group roles",
    )
    migrate.set_defaults(handler=_guarded(_migrate))

    add = verbs.add_parser("add-kiosk", help="create a kiosk's own database role")
    add.add_argument("kiosk_id", help="the kiosk's id, which is its role's name")
    add.add_argument("--role", choices=["door", "enroll", "operator"], required=True)
    add.add_argument(
        "--password-stdin", action="store_true", help="read the new role's password from stdin"
    )
    add.set_defaults(handler=_guarded(_add_kiosk))

    status = verbs.add_parser("status", help="every kiosk: last sync, replica age, queue, health")
    status.add_argument("--json", action="store_true", help="print JSON")
    status.set_defaults(handler=_guarded(_status))

    sync = verbs.add_parser("sync", help="sync this kiosk's replica once, now")
    sync.add_argument("--json", action="store_true", help="print JSON")
    sync.set_defaults(handler=_guarded(_sync))

    upload = verbs.add_parser("upload", help="copy this kiosk's people into the registry")
    upload.set_defaults(handler=_guarded(_upload))

    train = verbs.add_parser("train", help="train the CLIP bundle from the registry, publish it")
    train.add_argument("--json", type=Path, default=None, help="also write what was published")
    train.set_defaults(handler=_guarded(_train))

    purge = verbs.add_parser("purge", help="erase everyone whose retention period has ended")
    purge.set_defaults(handler=_guarded(_purge))

    vacuum = verbs.add_parser(
        "vacuum",
        help="as the registry's owner: rewrite the tables erasures change, so that no old "
        "row version of an erased person stays in the server's files",
    )
    vacuum.set_defaults(handler=_guarded(_vacuum))


def _guarded(handler: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        from kiosk.site.connect import registry_errors

        with registry_errors():
            return handler(args)

    return run


def _config(args: argparse.Namespace) -> KioskConfig:
    from kiosk.setup.site import require_site

    config = load_config(args.config)
    site = require_site(config)
    if args.user:
        config = config.model_copy(update={"site": site.model_copy(update={"user": args.user})})
    return config


def _migrate(args: argparse.Namespace) -> int:
    from kiosk.site.connect import connect, describe
    from kiosk.site.schema import migrate

    config = _config(args)
    assert config.site is not None
    import psycopg

    with connect(config.site) as conn:
        try:
            before, after = migrate(conn, create_roles=args.create_roles)
        except psycopg.errors.InsufficientPrivilege as error:
            raise UserError(
                f"{describe(config.site)} may not change the schema: run `kiosk site migrate` "
                f"as the database's owner (--user); {str(error).splitlines()[0]}"
            ) from None
        conn.commit()
    if before == after:
        print(f"the site registry is at schema version {after}; nothing to do")
    else:
        print(f"the site registry was migrated from schema version {before} to {after}")
    return 0


def _vacuum(args: argparse.Namespace) -> int:
    from kiosk.site.connect import connect
    from kiosk.site.schema import require_current, vacuum

    config = _config(args)
    assert config.site is not None
    with connect(config.site) as conn:
        require_current(conn)
        tables = vacuum(conn)
    print(f"rewrote {counted(len(tables), 'table')} of the site registry: {', '.join(tables)}")
    return 0


def _add_kiosk(args: argparse.Namespace) -> int:
    from kiosk.site.connect import connect
    from kiosk.site.schema import add_kiosk

    config = _config(args)
    assert config.site is not None
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    elif sys.stdin.isatty():
        password = getpass.getpass(f"password for {args.kiosk_id}: ")
    else:
        password = ""
    if not password:
        print(
            "no password set: the role logs in only by certificate, ~/.pgpass or peer",
            file=sys.stderr,
        )
    with connect(config.site) as conn:
        add_kiosk(conn, args.kiosk_id, args.role, password or None)
    print(f"kiosk {args.kiosk_id} created ({args.role}); set its [site] user = {args.kiosk_id!r}")
    return 0


def _status(args: argparse.Namespace) -> int:
    from kiosk.setup.site import site_status

    config = _config(args)
    assert config.site is not None
    status = site_status(config.site)
    if args.json:
        print(json.dumps(status, indent=2, default=str))
        return 0
    print(
        f"{status['registry']}: {counted(status['people'], 'person')}, "
        f"change {status['last_change']}, "
        f"bundle {status['bundle_version'] or 'none'}"
    )
    print(f"{'kiosk':<24} {'replica age':>12} {'behind':>6} {'bundle':>6} {'queued':>6}  health")
    for row in status["kiosks"]:
        age = "never" if row["replica_age_s"] is None else f"{row['replica_age_s']:.0f} s"
        print(
            f"{row['kiosk_id']:<24} {age:>12} {row['behind']:>6} "
            f"{row['bundle_version'] or '-':>6} {row['queued']:>6}  {row['health']}"
        )
    return 0


def _sync(args: argparse.Namespace) -> int:
    from kiosk.setup.site import site_session

    config = _config(args)
    with site_session(config) as sync:
        report = sync.sync_once()
        counts = sync.state.counts()
        rejected = sync.state.rejected()
    result = {**asdict(report), **counts}
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(
            f"synced to change {report.cursor}: {report.added} added, {report.renamed} renamed, "
            f"{report.erased} erased, {report.pushed} pushed; {counts['queued']} queued, "
            f"{counts['rejected']} refused"
        )
    for kind, uid, reason in rejected:
        print(f"refused {kind} {uid}: {reason}", file=sys.stderr)
    return 0


def _upload(args: argparse.Namespace) -> int:
    from kiosk.setup.site import site_session, upload

    with site_session(_config(args)) as sync:
        queued = upload(sync)
        left = sync.state.counts()["queued"]
    print(f"{counted(queued, 'person')} uploaded; {counted(left, 'push', 'pushes')} still queued")
    return 0


def _train(args: argparse.Namespace) -> int:
    from kiosk.setup.site import site_session, train_and_publish
    from models.io import write_json_atomic

    config = _config(args)
    with site_session(config) as sync:
        published = train_and_publish(config, sync)
    if args.json is not None:
        write_json_atomic(args.json, published)
    people = counted(published["people"], "person")
    print(f"published bundle version {published['version']} ({people})")
    return 0


def _purge(args: argparse.Namespace) -> int:
    from kiosk.site.connect import connect
    from kiosk.site.registry import Registry

    config = _config(args)
    assert config.site is not None
    with connect(config.site) as conn:
        registry = Registry(conn)
        erased = [uid for uid in registry.expired() if registry.erase(uid, "retention ended")]
    for uid in erased:
        print(f"erased person {uid}: retention period ended")
    print(f"{counted(len(erased), 'person')} erased from the site")
    return 0
