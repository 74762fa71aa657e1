"""`kiosk pin`: the operator PIN's hash, written into the config file under [ui]
(the PIN itself is never stored); ``--print`` prints the lines and the file they go in."""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path

from kiosk.config import config_path
from kiosk.setup.pin import hash_pin, write_pin_to_config
from models.errors import UserError


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "pin", help="set the operator PIN: its hash goes under [ui] operator_pin in the config"
    )
    parser.add_argument(
        "--stdin", action="store_true", help="read the PIN from one line of stdin (scripts)"
    )
    parser.add_argument(
        "--print",
        action="store_true",
        help="print the lines for the config instead of writing them into it",
    )
    # Also accepted after `pin`; SUPPRESS keeps `kiosk --config X pin` working.
    parser.add_argument("--config", type=Path, default=argparse.SUPPRESS, help="TOML config")
    parser.set_defaults(handler=_pin)


def _pin(args: argparse.Namespace) -> int:
    if args.stdin:
        pin = sys.stdin.readline().rstrip("\r\n")
    else:
        pin = getpass.getpass("new operator PIN: ")
        if getpass.getpass("the same PIN again: ") != pin:
            raise UserError("the two PINs differ; nothing was changed")
    pin_hash = hash_pin(pin)
    target = config_path(getattr(args, "config", None)).expanduser().absolute()
    if args.print:
        print("[ui]")
        print(f'operator_pin = "{pin_hash}"')
        print(
            f"kiosk: put these lines in {target} (the config `kiosk run` reads): "
            "the key operator_pin under [ui], the hash, never the PIN",
            file=sys.stderr,
        )
        return 0
    done = write_pin_to_config(target, pin_hash)
    print(
        f"kiosk: operator PIN set: {done} [ui] operator_pin in {target} "
        "(its hash; the PIN itself is not stored)",
        file=sys.stderr,
    )
    return 0
