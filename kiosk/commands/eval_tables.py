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
        f"known: {s['people']} people, {s['enroll']} enrolled + {s['held_out']} held out "
        f"(calibration), {s['known_probes']} probes (dev {s['dev_known_probes']}, test "
        f"{s['test_known_probes']}); strangers: {s['strangers']} photos of "
        f"{s['stranger_people']} people (dev {s['dev_strangers']}, test {s['test_strangers']}); "
        f"no face: {s['known_misses']} known, {s['stranger_misses']} strangers"
    )
    print(f"closed-set rank-1 of known probes: {_pct(p['closed_set_rank1'])} %")
    target = f"{100 * p['target_fpr']:g} %"
    width = max(len(r["at_target"]["threshold_text"]) for r in p["rules"].values()) + 2
    width = max(width, len("threshold (dev)") + 2)
    print(f"\nAt a target FPR of {target}, each rule's threshold chosen on the dev part:")
    print(
        f"{'rule':<20}{'threshold (dev)':<{width}}|{'dev FPR':>8}{'FNR':>7}{'DIR':>7} |"
        f"{'test FPR':>9}{'FNR':>7}{'DIR':>7} |{'test FPR 95 % CI':>18}  holds"
    )
    for name, r in p["rules"].items():
        a = r["at_target"]
        d, t = a["dev"], a["test"]
        low, high = a["test_fpr_ci95"]
        print(
            f"{name:<20}{a['threshold_text']:<{width}}|{_pct(d['fpr']):>8}{_pct(d['fnr']):>7}"
            f"{_pct(d['dir']):>7} |{_pct(t['fpr']):>9}{_pct(t['fnr']):>7}{_pct(t['dir']):>7} |"
            f"{f'{100 * low:.2f}-{100 * high:.2f}':>18}  {'yes' if a['holds'] else 'NO'}"
        )
    fpirs = list(next(iter(p["rules"].values()))["fpir"])
    width = max(len(r["default"]["threshold_text"]) for r in p["rules"].values()) + 2
    width = max(width, len("threshold") + 2)
    print("\nAt each rule's default threshold, and DIR at lower FPIRs (thresholds from dev):")
    print(
        f"{'rule':<20}{'threshold':<{width}}|{'dev FPR':>8}{'FNR':>7} |{'test FPR':>9}"
        f"{'FNR':>7}{'acc':>7} |"
        + "".join(f"{f'DIR@{100 * float(f):g}% dev/test':>21}" for f in fpirs)
    )
    for name, r in p["rules"].items():
        d, t = r["default"]["dev"], r["default"]["test"]
        print(
            f"{name:<20}{r['default']['threshold_text']:<{width}}|{_pct(d['fpr']):>8}"
            f"{_pct(d['fnr']):>7} |{_pct(t['fpr']):>9}{_pct(t['fnr']):>7}{_pct(t['accuracy']):>7} |"
            + "".join(
                f"{_pct(r['fpir'][f]['dev']['dir']):>14}{_pct(r['fpir'][f]['test']['dir']):>7}"
                for f in fpirs
            )
        )
    rec = p["recommendation"]
    if rec["rule"] is None:
        print(f"\nNo rule is recommended: none names a dev probe right within {target} FPR.")
    else:
        d, t = rec["dev"], rec["test"]
        print(
            f"\nRecommended (highest dev DIR within {target} dev FPR): {rec['rule']} at "
            f"{rec['threshold_text']}: dev FPR {_pct(d['fpr']).strip()} %, FNR "
            f"{_pct(d['fnr']).strip()} %, DIR {_pct(d['dir']).strip()} %; test FPR "
            f"{_pct(t['fpr']).strip()} % ({'holds' if rec['holds'] else 'ABOVE the target'}), "
            f"FNR {_pct(t['fnr']).strip()} %, DIR {_pct(t['dir']).strip()} %."
        )
    ref = rec["reference"]
    print(
        f"{ref['rule']} at its threshold ({ref['threshold_text']}): test FPR "
        f"{_pct(ref['test']['fpr']).strip()} %, FNR {_pct(ref['test']['fnr']).strip()} %, "
        f"DIR {_pct(ref['test']['dir']).strip()} %."
    )
    print(f"gallery threshold (max cosine at {target} dev FPR): {rec['gallery_threshold']:.4f}")
    for warning in p["warnings"]:
        print(f"warning: {warning}")


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
