"""One `kiosk` command with subcommands. Each subcommand lives in kiosk/commands/."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from kiosk import __version__
from kiosk.config import CONFIG_ENV
from models.errors import UserError

# Each module defines register(subparsers) and sets a `handler(args) -> int` default.
COMMAND_MODULES = [
    "kiosk.commands.models_cmd",
    "kiosk.commands.doctor_cmd",
    "kiosk.commands.trials_cmd",
    "kiosk.commands.run_cmd",
    "kiosk.commands.pin_cmd",
    "kiosk.commands.liveness_cmd",
    "kiosk.commands.people_cmd",
    "kiosk.commands.enroll_cmd",
    "kiosk.commands.eval_cmd",
    "kiosk.commands.train_cmd",
    "kiosk.commands.recognize_cmd",
    "kiosk.commands.bench_cmd",
    "kiosk.commands.site_cmd",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kiosk", description="Door-side face recognition kiosk (SCRFD + CLIP)."
    )
    parser.add_argument("--version", action="version", version=f"kiosk {__version__}")
    parser.add_argument(
        "--home",
        type=Path,
        default=None,
        help="keep data, cache and config in this folder (sets $KIOSK_HOME; "
        "the config file is then HOME/config.toml)",
    )
    parser.add_argument(
        "--config",
        type=Path,
        default=None,
        help="TOML config file (default: $KIOSK_CONFIG, else config.toml in the config dir)",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from kiosk.setup.first_run import kiosk_command
    from models.errors import ModelError
    from models.paths import HOME_ENV

    parser = build_parser()
    args = parser.parse_args(argv)
    if args.config is not None:
        # Child processes (the background retrain) read the same configuration.
        os.environ[CONFIG_ENV] = str(Path(args.config).resolve())
    if args.home is not None:  # before anything resolves a path; child processes inherit it
        os.environ[HOME_ENV] = str(args.home.expanduser().absolute())
    # The prefix of the commands messages suggest: they must act on the same files.
    args.kiosk = kiosk_command(args.home, args.config)
    from models.paths import make_user_dirs_private

    make_user_dirs_private()  # after --home: the folders it names
    try:
        return int(args.handler(args))
    except (UserError, ModelError) as error:
        print(f"kiosk: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("kiosk: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
