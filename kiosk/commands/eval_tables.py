"""The tables `kiosk eval` prints (the reports come from models/eval/runs.py)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any


def _pct(x: float) -> str:
    return f"{100 * x:6.2f}"


def print_retrieval(data: Path, images: int, rows: Sequence[dict[str, Any]]) -> None:
    print(f"data: {data} ({images} images)")
    print(f"{'embedder':<40} {'top-1 %':>8} {'top-5 %':>8} {'misses':>7} {'seconds':>8}")
    for row in rows:
        print(
            f"{row['embedder']:<40} {_pct(row['top1']):>8} {_pct(row['top5']):>8} "
            f"{row['misses']:>7} {row['seconds']:>8.1f}"
        )
    for row in rows:
        if row["no_face"] or row["unreadable"]:
            shown = ", ".join((row["unreadable"] + row["no_face"])[:5])
            print(
                f"{row['embedder']}: no face in {len(row['no_face'])}, unreadable "
                f"{len(row['unreadable'])} (counted as misses): {shown} ..."
            )


def print_openset(p: dict[str, Any]) -> None:
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


def print_robustness(p: dict[str, Any], queries_per_person: int) -> None:
    queries = p["results"]["clean"]["images"]
    print(
        f"data: {p['data']}; index: {p['index']} originals; queries: {queries} "
        f"({queries_per_person} per person, seed {p['seed']})"
    )
    print(
        f"{'queries':<22} {'n':>5} {'top-1 %':>8} {'top-5 %':>8} {'valid':>7} {'of':>6} "
        f"{'no face':>8}"
    )
    for name, out in p["results"].items():
        print(
            f"{name:<22} {out['images']:>5} {_pct(out['top1']):>8} {_pct(out['top5']):>8} "
            f"{out['valid_results']:>7} {out['possible_results']:>6} {out['misses']:>8}"
        )
