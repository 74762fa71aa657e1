"""`kiosk eval retrieval|openset|robustness|index-bench`: research evaluation on folders.

The protocols run in models/eval/runs.py; this module parses the arguments (their
definitions: eval_args.py), prints the tables (eval_tables.py) and writes JSON.
"""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

from kiosk.commands import eval_args, eval_tables
from kiosk.config import load_config
from models.errors import UserError
from models.io import write_json_atomic

if TYPE_CHECKING:
    from models.eval.runs import EvalSetup


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    verbs = eval_args.register(subparsers)
    verbs["retrieval"].set_defaults(handler=_retrieval)
    verbs["openset"].set_defaults(handler=_openset)
    verbs["robustness"].set_defaults(handler=_robustness)
    verbs["index-bench"].set_defaults(handler=_index_bench)


def _setup(args: argparse.Namespace) -> EvalSetup:
    from kiosk.build import model_dir
    from models.eval.features import EmbedderOptions
    from models.eval.runs import EvalSetup
    from models.paths import user_cache_dir

    config = load_config(args.config)
    if args.detector_size % 32:
        raise UserError(f"--detector-size must be a multiple of 32, got {args.detector_size}")
    options = EmbedderOptions(
        model_dir=model_dir(config),
        align=args.align,
        detector=config.detector.name,
        detector_size=args.detector_size,
        detector_threshold=config.detector.threshold,
    )
    cache = None if args.no_cache else args.cache or user_cache_dir() / "eval-features"
    return EvalSetup(options, cache, getattr(args, "index", "auto"))


def _retrieval(args: argparse.Namespace) -> int:
    from models.eval.runs import retrieval_report, retrieval_rows, select_images

    images = select_images(args.data, args.per_person, args.people)
    rows = retrieval_rows(_setup(args), images, args.embedder)
    eval_tables.print_retrieval(args.data, len(images), rows)
    if args.chart:
        from models.eval.chart import retrieval_chart

        retrieval_chart(rows, args.chart, title=f"Retrieval on {args.data.name}")
        print(f"chart: {args.chart}")
    if args.json:
        write_json_atomic(args.json, retrieval_report(args.data, rows))
    return 0


def _openset(args: argparse.Namespace) -> int:
    from models.eval.runs import OpenSetProtocol, openset_report, select_images

    if args.enroll < 1 or args.held_out < 1:
        raise UserError("--enroll and --held-out must be at least 1")
    if not 0.0 < args.target_fpr < 1.0:
        raise UserError(f"--target-fpr must be between 0 and 1, got {args.target_fpr}")
    if not 0.0 < args.dev_fraction < 1.0:
        raise UserError(f"--dev-fraction must be between 0 and 1, got {args.dev_fraction}")
    threshold = args.softmax_threshold
    if threshold is None:
        threshold = load_config(args.config).clip.threshold
    report = openset_report(
        _setup(args),
        args.embedder,
        select_images(args.known, args.per_person, args.people),
        select_images(args.unknown),
        OpenSetProtocol(
            args.enroll, args.held_out, args.seed, threshold, args.target_fpr, args.dev_fraction
        ),
        sources=(args.known, args.unknown),
    )
    eval_tables.print_openset(report)
    if args.json:
        write_json_atomic(args.json, report)
    return 0


def _robustness(args: argparse.Namespace) -> int:
    from models.eval.runs import perturbation_kinds, robustness_report, select_images

    if args.queries_per_person < 1:
        raise UserError("--queries-per-person must be at least 1")
    images = select_images(args.data, args.per_person, args.people)
    report = robustness_report(
        _setup(args),
        args.embedder,
        images,
        data=args.data,
        kinds=perturbation_kinds(args.perturb),
        queries_per_person=args.queries_per_person,
        seed=args.seed,
        cloaked=args.cloaked,
    )
    eval_tables.print_robustness(report, args.queries_per_person)
    if args.json:
        write_json_atomic(args.json, report)
    return 0


def _index_bench(args: argparse.Namespace) -> int:
    from models.eval.retrieval import benchmark_index

    result = benchmark_index(args.n, args.dim, args.queries)
    print(json.dumps(result, indent=2))
    if args.json:
        write_json_atomic(args.json, result)
    return 0 if result.get("agree", True) else 1
