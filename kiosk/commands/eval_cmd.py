"""`kiosk eval retrieval|openset|robustness|index-bench`: research evaluation on folders.

The protocols live in models/evaluate.py and the feature extraction in models/features.py;
this module parses arguments, prints tables and writes JSON and charts.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kiosk.config import load_config
from models.errors import UserError

APP_NAME = "clip-face-kiosk"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("eval", help="research evaluation: retrieval, open set, ...")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    retrieval = verbs.add_parser(
        "retrieval", help="leave-one-out top-1/top-5 retrieval over a folder per person"
    )
    _data_args(retrieval, "--data", "folder with one sub-folder of images per person")
    _embedder_args(retrieval, many=True)
    retrieval.add_argument("--chart", type=Path, help="write a bar chart (PNG) of top-1/top-5")
    retrieval.set_defaults(handler=_retrieval)

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
    openset.add_argument("--seed", type=int, default=0, help="seed of the per-person split")
    openset.add_argument(
        "--softmax-threshold", type=float, default=None, help="default: the config's clip.threshold"
    )
    openset.add_argument(
        "--target-fnr",
        type=float,
        default=0.02,
        help="FNR at which rules are ranked for the recommendation (default 0.02)",
    )
    openset.set_defaults(handler=_openset)

    robust = verbs.add_parser(
        "robustness", help="retrieval with perturbed or cloaked queries against the originals"
    )
    _data_args(robust, "--data", "the originals: one sub-folder per person")
    _embedder_args(robust, many=False)
    robust.add_argument(
        "--perturb",
        default="all",
        help="comma-separated perturbations, 'all' or 'none' (see models/evaluate.py)",
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
    robust.set_defaults(handler=_robustness)

    bench = verbs.add_parser("index-bench", help="flat L2 index speed: numpy against faiss-cpu")
    bench.add_argument("--n", type=int, default=200_000, help="index rows")
    bench.add_argument("--dim", type=int, default=1024, help="vector width")
    bench.add_argument("--queries", type=int, default=1000, help="queries timed")
    bench.add_argument("--json", type=Path, help="write the figures as JSON")
    bench.set_defaults(handler=_index_bench)


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


def _images(root: Path, per_person: int = 0, people: int = 0) -> list[Any]:
    from models.eval.features import DatasetError, list_images

    try:
        images = list_images(root)
    except DatasetError as error:
        raise UserError(str(error)) from None
    if people:
        keep = sorted({image.identity for image in images})[:people]
        images = [image for image in images if image.identity in set(keep)]
    if per_person:
        counts: dict[str, int] = {}
        kept = []
        for image in images:
            counts[image.identity] = counts.get(image.identity, 0) + 1
            if counts[image.identity] <= per_person:
                kept.append(image)
        images = kept
    return images


def _cache_dir(args: argparse.Namespace) -> Path | None:
    if args.no_cache:
        return None
    if args.cache is not None:
        return Path(args.cache)
    import platformdirs

    return Path(platformdirs.user_cache_dir(APP_NAME)) / "eval-features"


def _load_embedder(args: argparse.Namespace, spec: str) -> Any:
    from models import registry
    from models.eval.features import EmbedderOptions, load_embedder

    config = load_config(args.config)
    if args.detector_size % 32:
        raise UserError(f"--detector-size must be a multiple of 32, got {args.detector_size}")
    options = EmbedderOptions(
        model_dir=registry.resolve_model_dir(config.models.dir),
        align=args.align,
        detector=config.detector.name,
        detector_size=args.detector_size,
        detector_threshold=config.detector.threshold,
    )
    return load_embedder(spec, options)


def _extract(
    args: argparse.Namespace, embedder: Any, images: Sequence[Any], label: str, **kw: Any
) -> Any:
    from models.eval.features import Progress, extract

    return extract(
        images,
        embedder,
        cache_dir=_cache_dir(args),
        progress=Progress(len(images), label),
        **kw,
    )


def write_json(path: Path, payload: dict[str, Any]) -> None:
    """Atomic: a temporary file in the same folder, then a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(payload, handle, indent=2)
        handle.write("\n")
    os.replace(tmp, path)


def _pct(x: float) -> str:
    return f"{100 * x:6.2f}"


# ---------------------------------------------------------------------------------------


def _retrieval(args: argparse.Namespace) -> int:
    from models.eval.features import NO_FACE, UNREADABLE
    from models.eval.retrieval import leave_one_out

    images = _images(args.data, args.per_person, args.people)
    results = []
    for spec in args.embedder:
        start = time.perf_counter()
        embedder = _load_embedder(args, spec)
        features = _extract(args, embedder, images, spec)
        result = leave_one_out(
            features.embeddings, features.labels, features.found, backend=args.index
        )
        seconds = time.perf_counter() - start
        row = {
            "embedder": spec,
            "align": args.align,
            "top1": result.top1,
            "top5": result.top5,
            "top1_found": result.top1_found,
            "top5_found": result.top5_found,
            "images": result.images,
            "identities": len(result.per_identity),
            "misses": result.misses,
            "unreadable": features.missed(UNREADABLE),
            "no_face": features.missed(NO_FACE),
            "valid_results": result.valid_results,
            "seconds": round(seconds, 2),
            "extraction_seconds": round(features.seconds, 2),
            "from_cache": features.from_cache,
        }
        results.append(row)
    print(f"data: {args.data} ({len(images)} images)")
    print(f"{'embedder':<40} {'top-1 %':>8} {'top-5 %':>8} {'misses':>7} {'seconds':>8}")
    for row in results:
        print(
            f"{row['embedder']:<40} {_pct(row['top1']):>8} {_pct(row['top5']):>8} "
            f"{row['misses']:>7} {row['seconds']:>8.1f}"
        )
    for row in results:
        if row["no_face"] or row["unreadable"]:
            shown = ", ".join((row["unreadable"] + row["no_face"])[:5])
            print(
                f"{row['embedder']}: no face in {len(row['no_face'])}, unreadable "
                f"{len(row['unreadable'])} (counted as misses): {shown} ..."
            )
    if args.chart:
        retrieval_chart(results, args.chart, title=f"Retrieval on {args.data.name}")
        print(f"chart: {args.chart}")
    if args.json:
        payload = dict(results[0]) if len(results) == 1 else {}
        payload.update({"data": str(args.data), "results": results})
        write_json(args.json, payload)
    return 0


def retrieval_chart(results: Sequence[dict[str, Any]], path: Path, title: str) -> None:
    """Grouped bars of top-1 and top-5 per embedder, like the paper's Figure 3."""
    try:
        # a bare Figure: no pyplot, so no global backend state (the GUI may share it)
        from matplotlib.figure import Figure
    except ImportError:  # installations such as the door bundle leave matplotlib out
        raise UserError("--chart needs matplotlib: pip install matplotlib") from None
    import numpy as np

    names = [row["embedder"] for row in results]
    x = np.arange(len(names))
    fig = Figure(figsize=(max(4.0, 1.6 * len(names) + 2), 4.0))
    ax = fig.subplots()
    for offset, key, label in ((-0.2, "top1", "top-1"), (0.2, "top5", "top-5")):
        values = [100 * row[key] for row in results]
        bars = ax.bar(x + offset, values, 0.4, label=label)
        ax.bar_label(bars, fmt="%.1f", fontsize=8)
    ax.set_xticks(x, names, rotation=15, ha="right")
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 118)  # room above the bars for the legend
    ax.set_title(title)
    ax.legend(loc="upper left", ncols=2)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".png")
    os.close(fd)
    fig.savefig(tmp, dpi=120, format="png")
    os.replace(tmp, path)


# ---------------------------------------------------------------------------------------


def _openset(args: argparse.Namespace) -> int:
    import numpy as np

    from models.eval.openset import OpenSetData, compare_rules, rejection_rules, split_known

    config = load_config(args.config)
    if args.enroll < 1 or args.held_out < 1:
        raise UserError("--enroll and --held-out must be at least 1")
    if not 0.0 < args.target_fnr < 1.0:
        raise UserError(f"--target-fnr must be between 0 and 1, got {args.target_fnr}")
    known_images = _images(args.known, args.per_person, args.people)
    stranger_images = _images(args.unknown)
    overlap = {i.identity for i in known_images} & {i.identity for i in stranger_images}
    if overlap:
        raise UserError(
            f"{len(overlap)} people are both known and strangers (e.g. {sorted(overlap)[0]})"
        )
    start = time.perf_counter()
    embedder = _load_embedder(args, args.embedder)
    known = _extract(args, embedder, known_images, "known")
    strangers = _extract(args, embedder, stranger_images, "strangers")

    def unit(x: Any) -> Any:
        return x / np.linalg.norm(x, axis=1, keepdims=True).clip(1e-12)

    rows = np.flatnonzero(known.found)
    labels = [known.labels[r] for r in rows]
    split = split_known(labels, args.enroll, args.held_out, args.seed)
    people = sorted(set(labels))
    ids = np.array([people.index(name) for name in labels], np.int64)
    vectors = unit(known.embeddings[rows])
    data = OpenSetData(
        people=people,
        enroll=vectors[split.enroll],
        enroll_ids=ids[split.enroll],
        held_out=vectors[split.held_out],
        held_out_ids=ids[split.held_out],
        probe=vectors[split.probe],
        probe_ids=ids[split.probe],
        strangers=unit(strangers.embeddings[strangers.found]),
    )
    if len(data.probe) == 0 or len(data.strangers) == 0:
        raise UserError(
            "the split left no known probes or no strangers: give people more photos than "
            f"--enroll + --held-out ({args.enroll} + {args.held_out}), and strangers' photos"
        )
    threshold = (
        args.softmax_threshold if args.softmax_threshold is not None else config.clip.threshold
    )
    correct, rules = rejection_rules(data, softmax_threshold=threshold)
    report = compare_rules(correct, rules, target_fnr=args.target_fnr)
    target = f"{args.target_fnr:g}"
    best = report["rules"][report["recommended"]]["at_fnr"][target]
    ref = report["rules"][report["reference"]]
    payload = {
        "known": str(args.known),
        "unknown": str(args.unknown),
        "embedder": args.embedder,
        "align": args.align,
        "split": {
            "seed": args.seed,
            "enroll_per_person": args.enroll,
            "held_out_per_person": args.held_out,
            "people": len(people),
            "enroll": len(data.enroll),
            "held_out": len(data.held_out),
            "known_probes": len(data.probe),
            "strangers": len(data.strangers),
            "known_misses": int((~known.found).sum()),
            "stranger_misses": int((~strangers.found).sum()),
        },
        "closed_set_rank1": float(correct.mean()),
        **report,
        "recommendation": {
            "rule": report["recommended"],
            "threshold": best["threshold"],
            "fnr": best["fnr"],
            "fpr": best["fpr"],
            "reference_fnr": ref["default"]["fnr"],
            "reference_fpr": ref["default"]["fpr"],
            # what EmbeddingGallery(threshold=...) takes today: max cosine at the target FNR
            "gallery_threshold": report["rules"]["max_cosine"]["at_fnr"][target]["threshold"],
        },
        "seconds": round(time.perf_counter() - start, 2),
    }
    _print_openset(payload)
    if args.json:
        write_json(args.json, payload)
    return 0


def _print_openset(p: dict[str, Any]) -> None:
    s = p["split"]
    print(
        f"known: {s['people']} people, {s['enroll']} enrolled + {s['held_out']} held out, "
        f"{s['known_probes']} probes; strangers: {s['strangers']} "
        f"(no face: {s['known_misses']} known, {s['stranger_misses']} strangers)"
    )
    print(f"closed-set rank-1 of known probes: {_pct(p['closed_set_rank1'])} %")
    fnrs = list(next(iter(p["rules"].values()))["at_fnr"])
    print(
        f"\n{'':<19}{'at the default threshold':^32}| {'FPR % at FNR':^{7 * (len(fnrs) + 1)}}"
        f"| {'DIR % at FPIR':^15}"
    )
    print(
        f"{'rule':<19}{'thr':>8}{'acc %':>8}{'FPR %':>8}{'FNR %':>8} |"
        + "".join(f"{'ref' if not f else f'{100 * float(f):g}%':>7}" for f in ["", *fnrs])
        + f" |{'1%':>7}{'0.1%':>7}"
    )
    for name, r in p["rules"].items():
        d = r["default"]
        print(
            f"{name:<19}{d['threshold']:8.3f}{_pct(d['accuracy']):>8}{_pct(d['fpr']):>8}"
            f"{_pct(d['fnr']):>8} |{_pct(r['at_reference_fnr']['fpr']):>7}"
            + "".join(f"{_pct(r['at_fnr'][f]['fpr']):>7}" for f in fnrs)
            + f" |{_pct(r['fpir']['0.01']['dir']):>7}{_pct(r['fpir']['0.001']['dir']):>7}"
        )
    rec = p["recommendation"]
    print(
        f"\nref = the FNR of {p['reference']} at its threshold "
        f"({_pct(p['reference_fnr']).strip()} %). Recommended (lowest FPR at "
        f"{100 * p['target_fnr']:g} % FNR): {rec['rule']} at {rec['threshold']:.4f}, "
        f"FPR {_pct(rec['fpr']).strip()} %, FNR {_pct(rec['fnr']).strip()} %; "
        f"{p['reference']} at its threshold: FPR {_pct(rec['reference_fpr']).strip()} %, "
        f"FNR {_pct(rec['reference_fnr']).strip()} %."
    )
    print(f"gallery threshold (max cosine) at that FNR: {rec['gallery_threshold']:.4f}")


# ---------------------------------------------------------------------------------------


def _robustness(args: argparse.Namespace) -> int:
    import numpy as np

    from models.eval.retrieval import query_against_index
    from models.eval.robustness import PERTURBATIONS, perturb

    if args.queries_per_person < 1:
        raise UserError("--queries-per-person must be at least 1")
    images = _images(args.data, args.per_person, args.people)
    if args.perturb == "all":
        kinds = list(PERTURBATIONS)
    elif args.perturb == "none":
        kinds = []
    else:
        kinds = [k.strip() for k in args.perturb.split(",") if k.strip()]
        unknown = [k for k in kinds if k not in PERTURBATIONS]
        if unknown:
            raise UserError(
                f"unknown perturbation {unknown[0]!r}; choose from {', '.join(PERTURBATIONS)}"
            )
    start = time.perf_counter()
    embedder = _load_embedder(args, args.embedder)
    originals = _extract(args, embedder, images, "originals")
    row_of = {image.relpath: row for row, image in enumerate(images)}
    index_rows = np.flatnonzero(originals.found)
    index = originals.embeddings[index_rows]
    index_labels = [images[r].identity for r in index_rows]
    position = {int(r): i for i, r in enumerate(index_rows)}

    def evaluate(query_images: Sequence[Any], query_features: Any, originals_of: list[int]) -> Any:
        exclude = [position.get(r, -1) for r in originals_of]
        return query_against_index(
            query_features.embeddings,
            query_features.labels,
            query_features.found,
            exclude,
            index,
            index_labels,
            backend=args.index,
        )

    rng = np.random.default_rng(args.seed)
    by_person: dict[str, list[int]] = {}
    for index_row in index_rows.tolist():
        by_person.setdefault(images[index_row].identity, []).append(index_row)
    query_rows = sorted(
        r
        for rows in by_person.values()
        for r in rng.permutation(rows)[: args.queries_per_person].tolist()
    )
    queries = [images[r] for r in query_rows]
    rows_out: dict[str, dict[str, Any]] = {}
    clean = evaluate(queries, _subset(originals, query_rows), query_rows)
    rows_out["clean"] = _robust_row(clean)
    for kind in kinds:
        feats = _extract(
            args,
            embedder,
            queries,
            kind,
            transform=lambda image, rel, kind=kind: perturb(image, kind, rel, args.seed),
            cache_tag=f"perturb={kind}|seed={args.seed}",
        )
        rows_out[kind] = _robust_row(evaluate(queries, feats, query_rows))
    if args.cloaked is not None:
        cloaked = _images(args.cloaked)
        row_by_stem = {rel.rpartition(".")[0]: row for rel, row in row_of.items()}
        mapped: list[Any] = []
        originals_of: list[int] = []
        unmatched: list[str] = []
        for image in cloaked:
            original = row_of.get(image.relpath, _by_stem(row_by_stem, image.relpath))
            if original is None:
                unmatched.append(image.relpath)
                continue
            mapped.append(image)
            originals_of.append(original)
        if not mapped:
            raise UserError(
                f"no image in {args.cloaked} maps to an original in {args.data}: cloaked "
                "images must keep the originals' relative paths (a different extension or "
                "a _cloaked suffix is fine)"
            )
        feats = _extract(args, embedder, mapped, "cloaked", cache_tag=f"cloaked={args.cloaked}")
        clean_c = evaluate(mapped, _subset(originals, originals_of), originals_of)
        rows_out["cloaked: originals"] = _robust_row(clean_c)
        rows_out["cloaked"] = _robust_row(evaluate(mapped, feats, originals_of))
        rows_out["cloaked"]["unmatched"] = unmatched
    print(
        f"data: {args.data}; index: {len(index)} originals; queries: {len(queries)} "
        f"({args.queries_per_person} per person, seed {args.seed})"
    )
    print(
        f"{'queries':<22} {'n':>5} {'top-1 %':>8} {'top-5 %':>8} {'valid':>7} {'of':>6} "
        f"{'no face':>8}"
    )
    for name, out in rows_out.items():
        print(
            f"{name:<22} {out['images']:>5} {_pct(out['top1']):>8} {_pct(out['top5']):>8} "
            f"{out['valid_results']:>7} {out['possible_results']:>6} {out['misses']:>8}"
        )
    if args.json:
        write_json(
            args.json,
            {
                "data": str(args.data),
                "embedder": args.embedder,
                "align": args.align,
                "seed": args.seed,
                "index": len(index),
                "results": rows_out,
                "seconds": round(time.perf_counter() - start, 2),
            },
        )
    return 0


def _subset(features: Any, rows: Sequence[int]) -> Any:
    from models.eval.features import Features

    return Features(
        [features.images[r] for r in rows],
        features.embeddings[list(rows)],
        features.status[list(rows)],
        seconds=0.0,
    )


def _by_stem(row_by_stem: dict[str, int], relpath: str) -> int | None:
    """The original of a cloaked image whose extension or suffix changed: Fawkes writes
    ``x_cloaked.png`` for ``x.jpg``, LowKey ``x_attacked.png``."""
    stem = relpath.rpartition(".")[0]
    for suffix in ("_cloaked", "_attacked", "_lowkey", "_fawkes", ""):
        if stem.endswith(suffix):
            row = row_by_stem.get(stem[: len(stem) - len(suffix)] if suffix else stem)
            if row is not None:
                return row
    return None


def _robust_row(result: Any) -> dict[str, Any]:
    return {
        "images": result.images,
        "top1": result.top1,
        "top5": result.top5,
        "valid_results": result.valid_results,
        "possible_results": 5 * (result.images - result.misses),
        "misses": result.misses,
    }


def _index_bench(args: argparse.Namespace) -> int:
    from models.eval.retrieval import benchmark_index

    result = benchmark_index(args.n, args.dim, args.queries)
    print(json.dumps(result, indent=2))
    if args.json:
        write_json(args.json, result)
    return 0 if result.get("agree", True) else 1
