"""Open set: known people's photos split into enrollment, held-out (for calibration) and
probes; strangers only ever probe. Probes and strangers are split again into a dev part,
on which each rule's threshold is chosen, and a test part, on which it is reported.
Rejection rules turn per-person scores into one acceptance score each; the recommended
rule is the one that names the most known probes right at a target false-positive rate
chosen on dev. Pure numpy (scipy for the temperature fit and the confidence interval).
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float32]
BoolArray = NDArray[np.bool_]

# The score the fusion rule gives a probe its classifier already rejected: below any
# cosine, so no threshold on the embedder's cosine accepts it.
CLASSIFIER_REJECTED = -2.0


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


def _salted(seed: int, name: str) -> int:
    # a stream apart from split_known's (seed + crc32(name)) for the same person
    return zlib.crc32(f"dev-test|{seed}|{name}".encode())


def split_dev_test(
    labels: Sequence[str], fraction: float = 0.5, seed: int = 0, *, whole_people: bool = False
) -> BoolArray:
    """True for the rows in the dev part, False for the test part; deterministic (seeded).

    ``whole_people=False`` (known people's probes): every person's probes are shuffled
    (seeded by the seed and the name) and ``fraction`` of them go to dev, rounded up or
    down by a seeded coin, so the gallery's people are in both parts and no probe is.
    ``whole_people=True`` (strangers): whole people go to one part, so a stranger with
    several photos is never on both sides; people are ranked by a seeded hash of their
    name and the first ``fraction`` of them are dev. In both, adding a person moves no one
    else's probe (and at most one stranger across the boundary).
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"the dev fraction must be between 0 and 1, got {fraction}")
    labels_arr = np.asarray(labels)
    dev = np.zeros(len(labels_arr), np.bool_)
    names = sorted(set(labels_arr.tolist()))
    if whole_people:
        ranked = sorted(names, key=lambda name: (_salted(seed, name), name))
        chosen = set(ranked[: round(fraction * len(ranked))])
        dev[:] = [name in chosen for name in labels_arr.tolist()]
        return dev
    for name in names:
        rows = np.flatnonzero(labels_arr == name)
        rng = np.random.default_rng(_salted(seed, name))
        rows = rows[rng.permutation(len(rows))]
        dev[rows[: int(np.floor(fraction * len(rows) + rng.random()))]] = True
    return dev


@dataclass(frozen=True)
class OpenSetParts:
    """The whole protocol's split, as row indices: known people's photos (``known``) and
    strangers' (``strangers``) each into disjoint parts."""

    known: OpenSetSplit  # enroll, held_out, probe (dev and test together)
    probe_dev: NDArray[np.int64]  # the known probes that choose thresholds
    probe_test: NDArray[np.int64]  # the known probes the figures are reported on
    stranger_dev: NDArray[np.int64]
    stranger_test: NDArray[np.int64]


def split_open_set(
    known_labels: Sequence[str],
    stranger_labels: Sequence[str],
    *,
    enroll: int = 5,
    held_out: int = 2,
    dev_fraction: float = 0.5,
    seed: int = 0,
) -> OpenSetParts:
    """Known photos by :func:`split_known`, then their probes (per person) and the
    strangers (whole people) by :func:`split_dev_test`; all seeded by ``seed``."""
    known = split_known(known_labels, enroll, held_out, seed)
    probe_labels = [known_labels[r] for r in known.probe.tolist()]
    dev = split_dev_test(probe_labels, dev_fraction, seed)
    stranger_dev = split_dev_test(stranger_labels, dev_fraction, seed, whole_people=True)
    return OpenSetParts(
        known,
        known.probe[dev],
        known.probe[~dev],
        np.flatnonzero(stranger_dev),
        np.flatnonzero(~stranger_dev),
    )


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
    """One rejection rule: whether the person it names for each known probe is right, an
    acceptance score per probe (higher = more sure it is that person) and the threshold
    it ships with.

    ``per_image`` names a rule whose real threshold is per gallery image (the paper's
    95th percentile): its global "threshold" is then a margin added to those, 0 being the
    rule as published, and is never shown as a threshold of its own. ``gate`` names a
    fixed first condition (the fusion's classifier threshold) the swept threshold adds to.
    """

    name: str
    description: str
    known: FloatArray  # per known probe
    strangers: FloatArray  # per stranger probe
    correct: BoolArray  # per known probe: the person it names is the right one
    default_threshold: float
    params: dict[str, float] = field(default_factory=dict)
    per_image: str | None = None
    gate: str | None = None

    def threshold_text(self, threshold: float) -> str:
        """What the rule really compares with, for people to read."""
        if self.per_image is not None:
            if abs(threshold - self.default_threshold) < 1e-9:
                return f"per image ({self.per_image})"
            # accepted when distance <= per-image threshold - margin: a positive one is stricter
            return f"per image ({self.per_image}) {-threshold:+.3f} L2"
        text = f"{threshold:.4f}"
        if 0.9999 < abs(threshold) < 1.0:
            text = f"{threshold:.8g}"  # a saturated softmax: 0.99999994 is not 1
        if self.gate is None:
            return text
        if threshold <= -1.0:  # below any cosine: the gate alone decides
            return f"{self.gate}, any cosine"
        return f"{self.gate}, cosine >= {text}"

    def subset(self, known_rows: BoolArray, stranger_rows: BoolArray) -> RuleScores:
        return RuleScores(
            self.name,
            self.description,
            self.known[known_rows],
            self.strangers[stranger_rows],
            self.correct[known_rows],
            self.default_threshold,
            self.params,
            self.per_image,
            self.gate,
        )


@dataclass(frozen=True)
class OperatingPoint:
    threshold: float
    accuracy: float  # known probes named right + strangers rejected, over all probes
    fpr: float  # strangers accepted as someone (FPIR)
    fnr: float  # known probes rejected
    wrong_person: float  # known probes accepted as someone else
    dir: float  # known probes accepted as the right person (detection and identification)
    known: int  # known probes measured
    strangers: int  # strangers measured
    strangers_accepted: int


def operating_point(rule: RuleScores, threshold: float) -> OperatingPoint:
    accepted = rule.known >= threshold
    stranger_accepted = rule.strangers >= threshold
    n = len(rule.known) + len(rule.strangers)
    right = int((accepted & rule.correct).sum()) + int((~stranger_accepted).sum())
    return OperatingPoint(
        threshold=float(threshold),
        accuracy=right / max(n, 1),
        fpr=float(stranger_accepted.mean()) if len(rule.strangers) else 0.0,
        fnr=float((~accepted).mean()) if len(rule.known) else 0.0,
        wrong_person=float((accepted & ~rule.correct).mean()) if len(rule.known) else 0.0,
        dir=float((accepted & rule.correct).mean()) if len(rule.known) else 0.0,
        known=len(rule.known),
        strangers=len(rule.strangers),
        strangers_accepted=int(stranger_accepted.sum()),
    )


def threshold_at_fpir(strangers: FloatArray, fpir: float) -> float:
    """The lowest threshold that accepts at most ``fpir`` of the strangers."""
    # float32 throughout: scores are float32, so "just above" must be in float32 steps
    ordered = np.sort(np.asarray(strangers, np.float32))[::-1]
    allowed = int(np.floor(fpir * len(ordered) + 1e-9))
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


def clopper_pearson(successes: int, trials: int, level: float = 0.95) -> tuple[float, float]:
    """The exact (Clopper-Pearson) ``level`` interval of a binomial proportion."""
    from scipy.stats import beta

    if trials == 0:
        return 0.0, 1.0
    alpha = 1.0 - level
    low = 0.0 if successes == 0 else float(beta.ppf(alpha / 2, successes, trials - successes + 1))
    high = (
        1.0
        if successes == trials
        else float(beta.ppf(1 - alpha / 2, successes + 1, trials - successes))
    )
    return low, high


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
    classifier_probs: tuple[FloatArray, FloatArray] | None = None,
    classifier_threshold: float | None = None,
) -> list[RuleScores]:
    """Every rule's acceptance scores for known probes and strangers.

    The gallery's rules name the best-scoring person (by cosine) and differ only in when
    they reject. Everything they calibrate comes from the enrollment and held-out photos,
    never from the probes, so the scores are the same whichever probes are dev or test.

    ``classifier_probs`` = (known, strangers) probabilities of a trained classifier (for
    example the finetuned CLIP) over ``data.people``, accepted at ``classifier_threshold``
    (default ``softmax_threshold``): it adds the classifier's own max-softmax rule, and the
    fusion rule takes the classifier's answer. Without one, the fusion's classifier is the
    calibrated softmax over the gallery's own person scores, the only classifier a gallery
    has.
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
            correct,
            cosine_threshold,
        )
    )
    rules.append(
        RuleScores(
            "max_softmax",
            f"max softmax over person cosines x {softmax_scale:g} (CLIP's logit scale; "
            "float32, as the recognizer computes it)",
            softmax(known * softmax_scale).max(axis=1),
            softmax(strangers * softmax_scale).max(axis=1),
            correct,
            softmax_threshold,
            {"scale": softmax_scale},
        )
    )
    temperature = fit_temperature(held, data.held_out_ids) if len(held) else 1 / softmax_scale
    cal_known_p = softmax(known / temperature)
    cal_strangers_p = softmax(strangers / temperature)
    rules.append(
        RuleScores(
            "calibrated_softmax",
            "max softmax, temperature fitted (NLL) on held-out enrollment photos",
            cal_known_p.max(axis=1),
            cal_strangers_p.max(axis=1),
            correct,
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
            correct,
            z_cut,
        )
    )
    # The paper's per-image 95th-percentile distance threshold, as a margin: how far
    # inside its nearest gallery image's threshold the query lies (0 = the paper's rule).
    thresholds = paper_percentile_thresholds(data.enroll, data.enroll_ids)

    def paper_margin(queries: FloatArray) -> tuple[FloatArray, NDArray[np.int64]]:
        sims = queries @ data.enroll.T
        nearest = sims.argmax(axis=1)
        distance = np.sqrt(np.maximum(2 - 2 * sims[np.arange(len(queries)), nearest], 0))
        return (thresholds[nearest] - distance).astype(np.float32), data.enroll_ids[nearest]

    paper_known, paper_named = paper_margin(data.probe)
    rules.append(
        RuleScores(
            "paper_p95",
            "paper: accept if the L2 distance to the nearest enrolled image is at most that "
            "image's 95th percentile of distances to its own identity",
            paper_known,
            paper_margin(data.strangers)[0],
            paper_named == data.probe_ids,
            0.0,
            per_image="95th percentile",
        )
    )
    gate = softmax_threshold if classifier_threshold is None else classifier_threshold
    if classifier_probs is None:
        clf_known, clf_strangers = cal_known_p, cal_strangers_p
        what, gate_text = "the calibrated gallery softmax", f"calibrated softmax >= {gate:g}"
    else:
        clf_known, clf_strangers = (np.asarray(x, np.float32) for x in classifier_probs)
        if clf_known.shape != known.shape or clf_strangers.shape != strangers.shape:
            raise ValueError(
                f"classifier probabilities must be (probes, people) = {known.shape} and "
                f"{strangers.shape}, got {clf_known.shape} and {clf_strangers.shape}"
            )
        what, gate_text = "the classifier's max softmax", f"classifier >= {gate:g}"
        rules.append(
            RuleScores(
                "classifier_softmax",
                "the classifier's own max softmax",
                clf_known.max(axis=1),
                clf_strangers.max(axis=1),
                clf_known.argmax(axis=1) == data.probe_ids,
                gate,
            )
        )

    def fused(probs: FloatArray, cosines: FloatArray) -> tuple[FloatArray, NDArray[np.int64]]:
        named = probs.argmax(axis=1)
        agree = cosines[np.arange(len(probs)), named]
        return np.where(probs.max(axis=1) >= gate, agree, CLASSIFIER_REJECTED).astype(
            np.float32
        ), named

    fused_known, fused_named = fused(clf_known, known)
    rules.append(
        RuleScores(
            "fusion",
            f"the classifier's answer, accepted when {what} reaches {gate:g} and the "
            "embedder's cosine to that same person reaches the threshold (models/fusion.py)",
            fused_known,
            fused(clf_strangers, strangers)[0],
            fused_named == data.probe_ids,
            cosine_threshold,
            {"classifier_threshold": gate},
            gate=gate_text,
        )
    )
    return rules


def _both(rule: RuleScores, dev: RuleScores, test: RuleScores, threshold: float) -> dict[str, Any]:
    return {
        "threshold": None if rule.per_image else threshold,
        "margin": threshold if rule.per_image else None,
        "threshold_text": rule.threshold_text(threshold),
        "dev": asdict(operating_point(dev, threshold)),
        "test": asdict(operating_point(test, threshold)),
    }


def compare_rules(
    rules: Sequence[RuleScores],
    dev_known: BoolArray,
    dev_strangers: BoolArray,
    *,
    target_fpr: float = 0.01,
    fpirs: Sequence[float] = (0.001,),
    reference: str = "max_softmax",
) -> dict[str, Any]:
    """Each rule at its default threshold and at thresholds chosen on the dev part
    (``dev_known``/``dev_strangers`` mark its rows; the rest is test), figures on both.

    At ``target_fpr`` each rule's threshold is the lowest that accepts at most that share
    of the dev strangers; ``fpirs`` are more such points (DIR at FPIR). The recommendation
    is, among the rules whose dev FPR is within the target, the one with the highest dev
    DIR (ties: the lower dev FNR, then the earlier rule); whether the test FPR holds is
    reported with its 95 % interval. Nothing about the test part chooses anything.
    """
    if not 0.0 < target_fpr < 1.0:
        raise ValueError(f"the target FPR must be between 0 and 1, got {target_fpr}")
    dev_known, dev_strangers = np.asarray(dev_known, bool), np.asarray(dev_strangers, bool)
    report: dict[str, Any] = {"reference": reference, "target_fpr": target_fpr, "rules": {}}
    candidates = []
    for order, rule in enumerate(rules):
        dev = rule.subset(dev_known, dev_strangers)
        test = rule.subset(~dev_known, ~dev_strangers)
        at_target = _both(rule, dev, test, threshold_at_fpir(dev.strangers, target_fpr))
        accepted = at_target["test"]["strangers_accepted"]
        at_target["test_fpr_ci95"] = list(clopper_pearson(accepted, len(test.strangers)))
        at_target["holds"] = at_target["test"]["fpr"] <= target_fpr
        report["rules"][rule.name] = {
            "description": rule.description,
            "params": rule.params,
            "default": _both(rule, dev, test, rule.default_threshold),
            "at_target": at_target,
            "fpir": {
                f"{fpir:g}": _both(rule, dev, test, threshold_at_fpir(dev.strangers, fpir))
                for fpir in fpirs
            },
        }
        point = at_target["dev"]
        if point["fpr"] <= target_fpr and point["dir"] > 0:
            candidates.append((-point["dir"], point["fnr"], order, rule.name))
    report["recommended"] = min(candidates)[3] if candidates else None
    return report
