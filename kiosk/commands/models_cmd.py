"""`kiosk models list|fetch|verify`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from kiosk.config import load_config
from models import registry


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("models", help="list, fetch and verify model files")
    parser.add_argument("--model-dir", type=Path, default=None, help="override the model dir")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    list_p = verbs.add_parser("list", help="the manifest and each file's state")
    list_p.add_argument("--json", action="store_true", help="print JSON")
    list_p.set_defaults(handler=_list)
    fetch_p = verbs.add_parser("fetch", help="download model files (the only command that does)")
    fetch_p.add_argument("names", nargs="*", help="models to fetch (default: all downloadable)")
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


def _progress(name: str) -> registry.ProgressCallback:
    def report(done: int, total: int | None) -> None:
        if total:
            print(f"\r{name}: {done / 1e6:.1f} / {total / 1e6:.1f} MB", end="", file=sys.stderr)
        else:
            print(f"\r{name}: {done / 1e6:.1f} MB", end="", file=sys.stderr)

    return report


def _fetch(args: argparse.Namespace) -> int:
    model_dir = _model_dir(args)
    manifest = registry.load_manifest()
    names = args.names or [name for name, model in sorted(manifest.items()) if model.url]
    failed = 0
    for name in names:
        try:
            path = registry.fetch(name, model_dir, progress=_progress(name))
        except registry.ModelError as error:
            print(f"\n{name}: FAILED: {error}", file=sys.stderr)
            failed += 1
        else:
            print(f"\n{name}: ok {path}", file=sys.stderr)
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
