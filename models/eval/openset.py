"""Open set: known people's photos split into enrollment, held-out (for calibration) and
probes; strangers only ever probe. Rejection rules turn per-person scores into one
acceptance score each and are compared at equal false-negative rate. Pure numpy.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float32]


@dataclass(frozen=True)
class OpenSetSplit:
    """Row indices of one data set (known people) cut into three parts."""

    enroll: NDArray[np.int64]  # the gallery
    held_out: NDArray[np.int64]  # more enrollment photos, only for calibrating rules
    probe: NDArray[np.int64]  # known people's queries


def split_known(
    labels: Sequence[str], enroll: int = 5, held_out: int = 2, seed: int = 0
) -> OpenSetSplit:
    """Per person: a seeded shuffle (seed + crc32 of the name, so adding people changes no
    one else's split), then ``enroll`` photos, ``held_out`` photos, the rest probes.

    A person with fewer than enroll + held_out + 1 photos gives all of them to enrollment
    and held-out in that order and probes nothing.
    """
    labels_arr = np.asarray(labels)
    parts: dict[str, list[int]] = {"enroll": [], "held_out": [], "probe": []}
    for name in sorted(set(labels_arr.tolist())):
        rows = np.flatnonzero(labels_arr == name)
        rng = np.random.default_rng(seed + zlib.crc32(name.encode()))
        rows = rows[rng.permutation(len(rows))]
        parts["enroll"] += rows[:enroll].tolist()
        parts["held_out"] += rows[enroll : enroll + held_out].tolist()
        parts["probe"] += rows[enroll + held_out :].tolist()
    return OpenSetSplit(*(np.array(sorted(parts[p]), np.int64) for p in parts))


def person_scores(
    queries: FloatArray, gallery: FloatArray, gallery_ids: NDArray[np.int64], people: int
) -> FloatArray:
    """(N, people): the best cosine of each query to each person's gallery photos."""
    sims = np.asarray(queries, np.float32) @ np.asarray(gallery, np.float32).T
    scores = np.full((len(queries), people), -1.0, np.float32)
    for person in range(people):
        cols = gallery_ids == person
        if cols.any():
            scores[:, person] = sims[:, cols].max(axis=1)
    return scores


def softmax(logits: NDArray[np.floating]) -> FloatArray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(shifted)
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def fit_temperature(scores: FloatArray, true_ids: NDArray[np.int64]) -> float:
    """The softmax temperature minimising the negative log-likelihood of the true person
    over ``scores`` (cosines); a 1-D bounded search over log-temperature."""
    from scipy.optimize import minimize_scalar

    rows = np.arange(len(scores))

    def nll(log_t: float) -> float:
        logits = scores / np.exp(log_t)
        logits = logits - logits.max(axis=1, keepdims=True)
        log_z = np.log(np.exp(logits).sum(axis=1))
        return float((log_z - logits[rows, true_ids]).mean())

    found = minimize_scalar(nll, bounds=(np.log(1e-3), np.log(1.0)), method="bounded")
    return float(np.exp(found.x))


@dataclass(frozen=True)
class RuleScores:
    """One rejection rule: an acceptance score per probe (higher = more sure it is the
    predicted person) and the threshold it ships with."""

    name: str
    description: str
    known: FloatArray  # per known probe
    strangers: FloatArray  # per stranger probe
    default_threshold: float
    params: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class OperatingPoint:
    threshold: float
    accuracy: float  # known probes named right + strangers rejected, over all probes
    fpr: float  # strangers accepted as someone
    fnr: float  # known probes rejected
    wrong_person: float  # known probes accepted as someone else
    dir: float  # known probes accepted as the right person (detection and identification)


def operating_point(
    rule: RuleScores, known_correct: NDArray[np.bool_], threshold: float
) -> OperatingPoint:
    accepted = rule.known >= threshold
    stranger_accepted = rule.strangers >= threshold
    n = len(rule.known) + len(rule.strangers)
    right = int((accepted & known_correct).sum()) + int((~stranger_accepted).sum())
    return OperatingPoint(
        threshold=float(threshold),
        accuracy=right / max(n, 1),
        fpr=float(stranger_accepted.mean()) if len(rule.strangers) else 0.0,
        fnr=float((~accepted).mean()) if len(rule.known) else 0.0,
        wrong_person=float((accepted & ~known_correct).mean()) if len(rule.known) else 0.0,
        dir=float((accepted & known_correct).mean()) if len(rule.known) else 0.0,
    )


def threshold_at_fpir(strangers: FloatArray, fpir: float) -> float:
    """The lowest threshold that accepts at most ``fpir`` of the strangers."""
    # float32 throughout: scores are float32, so "just above" must be in float32 steps
    ordered = np.sort(np.asarray(strangers, np.float32))[::-1]
    allowed = int(np.floor(fpir * len(ordered)))
    if allowed >= len(ordered):
        return float(ordered[-1])
    # accept strictly above the (allowed+1)-th highest stranger score
    return float(np.nextafter(ordered[allowed], np.float32(np.inf)))


def threshold_at_fnr(known: FloatArray, fnr: float) -> float:
    """The highest threshold that rejects at most ``fnr`` of the known probes."""
    ordered = np.sort(np.asarray(known, np.float32))
    allowed = int(np.floor(fnr * len(ordered) + 1e-9))
    if allowed >= len(ordered):
        return float(np.nextafter(ordered[-1], np.float32(np.inf)))
    return float(ordered[allowed])


def paper_percentile_thresholds(
    gallery: FloatArray, gallery_ids: NDArray[np.int64], percentile: float = 95.0
) -> FloatArray:
    """The paper's rule: per gallery image, the ``percentile`` of its L2 distances to the
    other images of the same identity. A query matched to that image is accepted when its
    distance is at most this. An image alone in its identity gets the global figure."""
    vectors = np.asarray(gallery, np.float32)
    sq = np.einsum("ij,ij->i", vectors, vectors)
    dist = np.sqrt(np.maximum(sq[:, None] + sq[None, :] - 2 * vectors @ vectors.T, 0.0))
    same = gallery_ids[:, None] == gallery_ids[None, :]
    np.fill_diagonal(same, False)
    out = np.empty(len(vectors), np.float32)
    pooled = dist[same]
    fallback = float(np.percentile(pooled, percentile)) if len(pooled) else 0.0
    for i in range(len(vectors)):
        mine = dist[i, same[i]]
        out[i] = np.percentile(mine, percentile) if len(mine) else fallback
    return out


@dataclass(frozen=True)
class OpenSetData:
    """Embeddings (L2-normalised) of the three known parts and of the strangers."""

    people: list[str]
    enroll: FloatArray
    enroll_ids: NDArray[np.int64]
    held_out: FloatArray
    held_out_ids: NDArray[np.int64]
    probe: FloatArray
    probe_ids: NDArray[np.int64]
    strangers: FloatArray


def rejection_rules(
    data: OpenSetData,
    *,
    softmax_scale: float = 100.0,
    softmax_threshold: float = 0.8,
    cosine_threshold: float = 0.5,
    fusion_weight: float = 0.5,
    classifier_probs: tuple[FloatArray, FloatArray] | None = None,
) -> tuple[NDArray[np.bool_], list[RuleScores]]:
    """Every rule's acceptance scores for known probes and strangers.

    Returns whether each known probe's best person is right (the same for every rule:
    they all name the best-scoring person and differ only in when they reject).

    ``classifier_probs`` = (known, strangers) probabilities of a trained classifier (for
    example the finetuned CLIP) over ``data.people``; without one, the fusion rule fuses
    the calibrated softmax over the gallery's own person scores, which is the only
    classifier a gallery has.
    """
    p = len(data.people)
    known = person_scores(data.probe, data.enroll, data.enroll_ids, p)
    strangers = person_scores(data.strangers, data.enroll, data.enroll_ids, p)
    held = person_scores(data.held_out, data.enroll, data.enroll_ids, p)
    known_best = known.argmax(axis=1)
    correct = known_best == data.probe_ids
    stranger_best = strangers.argmax(axis=1)
    rules: list[RuleScores] = []

    rules.append(
        RuleScores(
            "max_cosine",
            "best cosine to any enrolled photo (the gallery's rule)",
            known.max(axis=1),
            strangers.max(axis=1),
            cosine_threshold,
        )
    )
    rules.append(
        RuleScores(
            "max_softmax",
            f"max softmax over person cosines x {softmax_scale:g} (CLIP's logit scale)",
            softmax(known * softmax_scale).max(axis=1),
            softmax(strangers * softmax_scale).max(axis=1),
            softmax_threshold,
            {"scale": softmax_scale},
        )
    )
    temperature = fit_temperature(held, data.held_out_ids) if len(held) else 1 / softmax_scale
    cal_known = softmax(known / temperature).max(axis=1)
    cal_strangers = softmax(strangers / temperature).max(axis=1)
    rules.append(
        RuleScores(
            "calibrated_softmax",
            "max softmax, temperature fitted (NLL) on held-out enrollment photos",
            cal_known,
            cal_strangers,
            softmax_threshold,
            {"temperature": temperature},
        )
    )
    # Per-person thresholds from enrollment data only: each person's impostor scores are
    # the other enrolled people's held-out and enrollment photos against their gallery.
    # Score = (cosine - mean impostor) / sd impostor (Z-norm), so one global cut on it is
    # a per-person cosine threshold. Own photos are excluded (they would score 1.0).
    calib = np.concatenate([data.enroll, data.held_out])
    calib_ids = np.concatenate([data.enroll_ids, data.held_out_ids])
    calib_scores = person_scores(calib, data.enroll, data.enroll_ids, p)
    mu = np.empty(p, np.float32)
    sd = np.empty(p, np.float32)
    for person in range(p):
        imp = calib_scores[calib_ids != person, person]
        mu[person], sd[person] = imp.mean(), max(float(imp.std()), 1e-6)
    z_known = (known.max(axis=1) - mu[known_best]) / sd[known_best]
    z_strangers = (strangers.max(axis=1) - mu[stranger_best]) / sd[stranger_best]
    z_cut = float(np.median((cosine_threshold - mu) / sd))
    rules.append(
        RuleScores(
            "per_person",
            "per-person threshold: Z-normalised cosine against each person's impostors",
            z_known.astype(np.float32),
            z_strangers.astype(np.float32),
            z_cut,
        )
    )
    # The paper's per-image 95th-percentile distance threshold, as a margin: how far
    # inside its nearest gallery image's threshold the query lies.
    thresholds = paper_percentile_thresholds(data.enroll, data.enroll_ids)

    def paper_margin(queries: FloatArray) -> FloatArray:
        sims = queries @ data.enroll.T
        nearest = sims.argmax(axis=1)
        distance = np.sqrt(np.maximum(2 - 2 * sims[np.arange(len(queries)), nearest], 0))
        return (thresholds[nearest] - distance).astype(np.float32)

    rules.append(
        RuleScores(
            "paper_p95",
            "paper: accept if L2 distance <= the nearest image's 95th-percentile "
            "same-identity distance",
            paper_margin(data.probe),
            paper_margin(data.strangers),
            0.0,
        )
    )
    if classifier_probs is None:
        fused_known, fused_strangers = cal_known, cal_strangers
        fusion_what = "calibrated gallery softmax"
    else:
        fused_known = classifier_probs[0].max(axis=1)
        fused_strangers = classifier_probs[1].max(axis=1)
        fusion_what = "classifier probability"
    rules.append(
        RuleScores(
            "fusion",
            f"{fusion_weight:g} x {fusion_what} + {1 - fusion_weight:g} x best cosine",
            (fusion_weight * fused_known + (1 - fusion_weight) * known.max(axis=1)).astype(
                np.float32
            ),
            (fusion_weight * fused_strangers + (1 - fusion_weight) * strangers.max(axis=1)).astype(
                np.float32
            ),
            fusion_weight * softmax_threshold + (1 - fusion_weight) * cosine_threshold,
            {"weight": fusion_weight},
        )
    )
    return correct, rules


def compare_rules(
    correct: NDArray[np.bool_],
    rules: Sequence[RuleScores],
    reference: str = "max_softmax",
    fpirs: Sequence[float] = (0.01, 0.001),
    fnrs: Sequence[float] = (0.01, 0.02, 0.05),
    target_fnr: float = 0.02,
) -> dict[str, Any]:
    """Each rule at its default threshold, at the reference rule's FNR (its FPR there is
    the comparison the issue asks for), at each FNR of ``fnrs`` and at each FPIR.

    The recommendation is the rule with the lowest FPR at ``target_fnr`` (ties: the
    higher DIR), with the threshold that reaches it: the reference's own FNR can be so
    low (max-softmax at 0.8 rejects almost no one) that every rule accepts most
    strangers there and the comparison says little.
    """
    by_name = {rule.name: rule for rule in rules}
    ref = operating_point(by_name[reference], correct, by_name[reference].default_threshold)
    report: dict[str, Any] = {
        "reference": reference,
        "reference_fnr": ref.fnr,
        "target_fnr": target_fnr,
        "rules": {},
    }
    for rule in rules:
        report["rules"][rule.name] = {
            "description": rule.description,
            "params": rule.params,
            "default": asdict(operating_point(rule, correct, rule.default_threshold)),
            "at_reference_fnr": asdict(
                operating_point(rule, correct, threshold_at_fnr(rule.known, ref.fnr))
            ),
            "at_fnr": {
                f"{fnr:g}": asdict(
                    operating_point(rule, correct, threshold_at_fnr(rule.known, fnr))
                )
                for fnr in sorted({*fnrs, target_fnr})
            },
            "fpir": {
                f"{fpir:g}": asdict(
                    operating_point(rule, correct, threshold_at_fpir(rule.strangers, fpir))
                )
                for fpir in fpirs
            },
        }
    target = f"{target_fnr:g}"
    best = min(
        report["rules"],
        key=lambda name: (
            report["rules"][name]["at_fnr"][target]["fpr"],
            -report["rules"][name]["at_fnr"][target]["dir"],
        ),
    )
    report["recommended"] = best
    return report
