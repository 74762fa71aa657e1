"""`kiosk models list|fetch|verify`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from kiosk.config import load_config
from models import registry
from models.errors import ModelError


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("models", help="list, fetch and verify model files")
    parser.add_argument("--model-dir", type=Path, default=None, help="override the model dir")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    list_p = verbs.add_parser("list", help="the manifest and each file's state")
    list_p.add_argument("--json", action="store_true", help="print JSON")
    list_p.set_defaults(handler=_list)
    fetch_p = verbs.add_parser("fetch", help="download model files (the only command that does)")
    fetch_p.add_argument(
        "names",
        nargs="*",
        help="models to fetch (default: the missing ones this configuration needs, after asking)",
    )
    fetch_p.add_argument(
        "--all", action="store_true", help="with no names: every model that has an address"
    )
    fetch_p.add_argument("--yes", action="store_true", help="download without asking")
    fetch_p.set_defaults(handler=_fetch)
    verify_p = verbs.add_parser("verify", help="check every present file's sha256")
    verify_p.add_argument("names", nargs="*", help="models to verify (default: all)")
    verify_p.set_defaults(handler=_verify)


def _model_dir(args: argparse.Namespace) -> Path:
    if args.model_dir is not None:
        return Path(args.model_dir)
    return registry.resolve_model_dir(load_config(args.config).models.dir)


def _list(args: argparse.Namespace) -> int:
    model_dir = _model_dir(args)
    rows = []
    for result in registry.verify_all(model_dir):
        model = registry.spec(result.name)
        rows.append(
            {
                "name": model.name,
                "kind": model.kind,
                "file": model.file,
                "state": result.status,
                "sha256": model.sha256,
                "licence": model.licence,
                "source": model.source,
                "url": model.url,
                "preprocessing": model.preprocessing,
            }
        )
    if args.json:
        print(json.dumps({"model_dir": str(model_dir), "models": rows}, indent=2))
        return 0
    print(f"model directory: {model_dir}")
    for row in rows:
        print(f"{row['name']:<20} {row['kind']:<9} {row['state']:<8} {row['file']}")
        print(f"{'':<20} licence: {row['licence']}")
    return 0


def _fetch(args: argparse.Namespace) -> int:
    from kiosk.setup.first_run import ProgressBar, ensure_models, needed_models

    model_dir = _model_dir(args)
    mirror = load_config(args.config).models.mirror
    if not args.names:
        if args.all:
            manifest = registry.load_manifest()
            wanted = [n for n, m in sorted(manifest.items()) if registry.sources(m, mirror)]
        else:
            wanted = needed_models(load_config(args.config))
        kiosk = getattr(args, "kiosk", "kiosk")
        fetched = ensure_models(
            wanted,
            model_dir,
            mirror=mirror,
            assume_yes=args.yes,
            command=f"{kiosk} models fetch",
            kiosk=kiosk,
        )
        print(f"{len(fetched)} file(s) fetched; all needed files are in {model_dir}")
        return 0
    failed = 0
    for name in args.names:
        bar = ProgressBar(name, sys.stderr)
        try:
            path = registry.fetch(name, model_dir, mirror=mirror, progress=bar)
        except ModelError as error:
            bar.finish(f"FAILED: {error}")
            failed += 1
        else:
            bar.finish(f"ok {path}")
    return 1 if failed else 0


def _verify(args: argparse.Namespace) -> int:
    model_dir = _model_dir(args)
    bad = 0
    for result in registry.verify_all(model_dir, args.names or None):
        if result.status == "ok":
            print(f"{result.name:<20} ok       {result.path}")
        else:
            bad += 1
            print(f"{result.name:<20} {result.status:<8} {result.detail}")
    return 1 if bad else 0
