"""`kiosk pin`: make the operator PIN hash for the config (the PIN itself is never stored)."""

from __future__ import annotations

import argparse
import getpass
import sys

from kiosk.setup.pin import hash_pin
from models.errors import UserError


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "pin", help="make the operator PIN hash for [ui] operator_pin in the config"
    )
    parser.add_argument(
        "--stdin", action="store_true", help="read the PIN from one line of stdin (scripts)"
    )
    parser.set_defaults(handler=_pin)


def _pin(args: argparse.Namespace) -> int:
    if args.stdin:
        pin = sys.stdin.readline().rstrip("\r\n")
    else:
        pin = getpass.getpass("new operator PIN: ")
        if getpass.getpass("the same PIN again: ") != pin:
            raise UserError("the two PINs differ; nothing was changed")
    line = f'operator_pin = "{hash_pin(pin)}"'
    print("[ui]")
    print(line)
    print("kiosk: put these lines in the config file (the hash, never the PIN)", file=sys.stderr)
    return 0
