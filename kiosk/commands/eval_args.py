"""The arguments of `kiosk eval` (its handlers are in eval_cmd.py)."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
) -> dict[str, argparse.ArgumentParser]:
    """`kiosk eval` and its verbs; the verbs' parsers by name, to be given handlers."""
    parser = subparsers.add_parser("eval", help="research evaluation: retrieval, open set, ...")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    retrieval = verbs.add_parser(
        "retrieval", help="leave-one-out top-1/top-5 retrieval over a folder per person"
    )
    _data_args(retrieval, "--data", "folder with one sub-folder of images per person")
    _embedder_args(retrieval, many=True)
    retrieval.add_argument("--chart", type=Path, help="write a bar chart (PNG) of top-1/top-5")

    openset = verbs.add_parser(
        "openset", help="known people against strangers: rejection rules compared"
    )
    _data_args(openset, "--known", "known people: one sub-folder per person")
    openset.add_argument(
        "--unknown", type=Path, required=True, help="strangers: one sub-folder per person"
    )
    _embedder_args(openset, many=False, index=False)
    openset.add_argument("--enroll", type=int, default=5, help="enrollment photos per person")
    openset.add_argument(
        "--held-out", type=int, default=2, help="held-out enrollment photos (calibration)"
    )
    openset.add_argument(
        "--seed", type=int, default=0, help="seed of the per-person and the dev/test splits"
    )
    openset.add_argument(
        "--softmax-threshold", type=float, default=None, help="default: the config's clip.threshold"
    )
    openset.add_argument(
        "--target-fpr",
        type=float,
        default=0.01,
        help="share of strangers a rule may accept; each rule's threshold is chosen for it on "
        "the dev part (default 0.01)",
    )
    openset.add_argument(
        "--dev-fraction",
        type=float,
        default=0.5,
        help="share of probes and of strangers that choose thresholds; the rest is the test "
        "part the figures are reported on (default 0.5)",
    )

    robust = verbs.add_parser(
        "robustness", help="retrieval with perturbed or cloaked queries against the originals"
    )
    _data_args(robust, "--data", "the originals: one sub-folder per person")
    _embedder_args(robust, many=False)
    robust.add_argument(
        "--perturb",
        default="all",
        help="comma-separated perturbations, 'all' or 'none' (see models/eval/robustness.py)",
    )
    robust.add_argument(
        "--queries-per-person", type=int, default=2, help="perturbed queries per person"
    )
    robust.add_argument("--seed", type=int, default=0, help="seed of noise and query choice")
    robust.add_argument(
        "--cloaked",
        type=Path,
        help="folder of cloaked images (Fawkes, LowKey) at the originals' relative paths",
    )

    bench = verbs.add_parser("index-bench", help="flat L2 index speed: numpy against faiss-cpu")
    bench.add_argument("--n", type=int, default=200_000, help="index rows")
    bench.add_argument("--dim", type=int, default=1024, help="vector width")
    bench.add_argument("--queries", type=int, default=1000, help="queries timed")
    bench.add_argument("--json", type=Path, help="write the figures as JSON")
    return dict(verbs.choices)


def _data_args(parser: argparse.ArgumentParser, flag: str, what: str) -> None:
    parser.add_argument(flag, type=Path, required=True, help=what)
    parser.add_argument(
        "--per-person", type=int, default=0, help="use at most N images per person (0 = all)"
    )
    parser.add_argument("--people", type=int, default=0, help="use the first N people (0 = all)")


def _embedder_args(parser: argparse.ArgumentParser, many: bool, index: bool = True) -> None:
    parser.add_argument(
        "--embedder",
        action="append" if many else "store",
        required=True,
        help="an .onnx file or manifest name (mobilefacenet_128d), clip:MODEL:TAG "
        "(clip:RN50:openai, clip:RN50:none), bundle:PATH (a trained bundle) or face_recognition"
        + (" (repeat to compare)" if many else ""),
    )
    parser.add_argument(
        "--align",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="detect and align the largest face (default) or embed the whole image",
    )
    parser.add_argument("--detector-size", type=int, default=320, help="SCRFD input size")
    parser.add_argument(
        "--cache",
        type=Path,
        default=None,
        help="feature cache folder (default: the user cache dir); resumes interrupted runs",
    )
    parser.add_argument("--no-cache", action="store_true", help="neither read nor write a cache")
    if index:
        parser.add_argument(
            "--index", choices=["auto", "numpy", "faiss"], default="auto", help="flat L2 backend"
        )
    parser.add_argument("--json", type=Path, help="write the results as JSON")
