"""The evaluation protocols run end to end on image folders: what `kiosk eval` reports.

Each run loads an embedder by spec (:mod:`models.eval.features`), extracts the features
(resuming from the cache), runs a protocol (:mod:`~models.eval.retrieval`,
:mod:`~models.eval.openset`, :mod:`~models.eval.robustness`) and returns a JSON-ready
report. Everything they need comes as arguments (:class:`EvalSetup`): nothing here
reads a configuration.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from models.errors import UserError
from models.eval.features import (
    NO_FACE,
    UNREADABLE,
    DatasetError,
    EmbedderOptions,
    EvalEmbedder,
    Features,
    Image,
    LabelledImage,
    Progress,
    Transform,
    extract,
    list_images,
    load_embedder,
)
from models.eval.retrieval import IndexBackend, RetrievalResult


@dataclass(frozen=True)
class EvalSetup:
    """How faces are found and embedded, where features are cached, which index runs."""

    options: EmbedderOptions  # model dir, align, detector name, size and threshold
    cache_dir: Path | None = None  # None: neither read nor write a cache
    index: IndexBackend = "auto"

    def embedder(self, spec: str) -> EvalEmbedder:
        return load_embedder(spec, self.options)

    def features(
        self,
        embedder: EvalEmbedder,
        images: Sequence[LabelledImage],
        label: str,
        transform: Transform | None = None,
        cache_tag: str = "",
    ) -> Features:
        return extract(
            images,
            embedder,
            cache_dir=self.cache_dir,
            cache_tag=cache_tag,
            transform=transform,
            progress=Progress(len(images), label),
        )


def select_images(root: Path, per_person: int = 0, people: int = 0) -> list[LabelledImage]:
    """The images of ``root/<person>/``: the first ``people`` people (0 = all), at most
    ``per_person`` images each (0 = all)."""
    try:
        images = list_images(root)
    except DatasetError as error:
        raise UserError(str(error)) from None
    if people:
        keep = set(sorted({image.identity for image in images})[:people])
        images = [image for image in images if image.identity in keep]
    if per_person:
        counts: dict[str, int] = {}
        kept = []
        for image in images:
            counts[image.identity] = counts.get(image.identity, 0) + 1
            if counts[image.identity] <= per_person:
                kept.append(image)
        images = kept
    return images


# ---------------------------------------------------------------------------------------


def retrieval_rows(
    setup: EvalSetup, images: Sequence[LabelledImage], specs: Sequence[str]
) -> list[dict[str, Any]]:
    """Leave-one-out top-1/top-5 retrieval over ``images``, one row per embedder spec."""
    from models.eval.retrieval import leave_one_out

    rows = []
    for spec in specs:
        start = time.perf_counter()
        features = setup.features(setup.embedder(spec), images, spec)
        result = leave_one_out(
            features.embeddings, features.labels, features.found, backend=setup.index
        )
        rows.append(
            {
                "embedder": spec,
                "align": setup.options.align,
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
                "seconds": round(time.perf_counter() - start, 2),
                "extraction_seconds": round(features.seconds, 2),
                "from_cache": features.from_cache,
            }
        )
    return rows


def retrieval_report(data: Path, rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The JSON report: one embedder's row at the top level too, and every row."""
    report = dict(rows[0]) if len(rows) == 1 else {}
    report.update({"data": str(data), "results": list(rows)})
    return report


# ---------------------------------------------------------------------------------------


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True).clip(1e-12)


@dataclass(frozen=True)
class OpenSetProtocol:
    """How the open set is split and judged (see :func:`openset_evaluation`)."""

    enroll: int = 5  # enrollment photos per person
    held_out: int = 2  # held-out enrollment photos per person (calibration)
    seed: int = 0  # of every split
    softmax_threshold: float = 0.8  # max_softmax's and calibrated_softmax's default
    target_fpr: float = 0.01  # share of dev strangers a chosen threshold may accept
    dev_fraction: float = 0.5  # share of probes and of strangers that choose thresholds


def openset_report(
    setup: EvalSetup,
    spec: str,
    known_images: Sequence[LabelledImage],
    stranger_images: Sequence[LabelledImage],
    protocol: OpenSetProtocol,
    sources: tuple[Path, Path],
) -> dict[str, Any]:
    """:func:`openset_evaluation` of ``spec``'s embeddings of the known people's and the
    strangers' photos; ``sources`` are their folders, named in the report."""
    overlap = {i.identity for i in known_images} & {i.identity for i in stranger_images}
    if overlap:
        raise UserError(
            f"{len(overlap)} people are both known and strangers (e.g. {sorted(overlap)[0]})"
        )
    start = time.perf_counter()
    embedder = setup.embedder(spec)
    known = setup.features(embedder, known_images, "known")
    strangers = setup.features(embedder, stranger_images, "strangers")
    report = openset_evaluation(
        known.embeddings[known.found],
        [label for label, found in zip(known.labels, known.found, strict=True) if found],
        strangers.embeddings[strangers.found],
        [label for label, found in zip(strangers.labels, strangers.found, strict=True) if found],
        protocol,
    )
    report["split"].update(
        known_misses=int((~known.found).sum()), stranger_misses=int((~strangers.found).sum())
    )
    return {
        "known": str(sources[0]),
        "unknown": str(sources[1]),
        "embedder": spec,
        "align": setup.options.align,
        **report,
        "seconds": round(time.perf_counter() - start, 2),
    }


def openset_evaluation(
    known: np.ndarray,
    known_labels: Sequence[str],
    strangers: np.ndarray,
    stranger_labels: Sequence[str],
    protocol: OpenSetProtocol,
) -> dict[str, Any]:
    """Known people against strangers (embeddings, one row per photo with a face): every
    rejection rule at its default threshold and at thresholds chosen on a dev part,
    reported on dev and on a disjoint test part, and the recommended rule at the
    protocol's ``target_fpr``.

    Each known person's photos are split (``seed``) into ``enroll`` enrolled,
    ``held_out`` for calibration and the rest as probes; probes (per person) and
    strangers (whole people) are then split into dev (``dev_fraction``) and test
    (:func:`models.eval.openset.split_open_set`).
    """
    from models.eval.openset import OpenSetData, compare_rules, rejection_rules, split_open_set

    enroll, held_out, seed = protocol.enroll, protocol.held_out, protocol.seed
    target_fpr, dev_fraction = protocol.target_fpr, protocol.dev_fraction
    parts = split_open_set(
        known_labels,
        stranger_labels,
        enroll=enroll,
        held_out=held_out,
        dev_fraction=dev_fraction,
        seed=seed,
    )
    if not all(len(part) for part in (parts.probe_dev, parts.probe_test)) or not all(
        len(part) for part in (parts.stranger_dev, parts.stranger_test)
    ):
        raise UserError(
            "the split left no known probes or no strangers in the dev or the test part: "
            f"give people more photos than --enroll + --held-out ({enroll} + {held_out}) "
            "and at least two strangers"
        )
    people = sorted(set(known_labels))
    ids = np.array([people.index(name) for name in known_labels], np.int64)
    vectors = _unit(np.asarray(known, np.float32))
    split = parts.known
    data = OpenSetData(
        people=people,
        enroll=vectors[split.enroll],
        enroll_ids=ids[split.enroll],
        held_out=vectors[split.held_out],
        held_out_ids=ids[split.held_out],
        probe=vectors[split.probe],
        probe_ids=ids[split.probe],
        strangers=_unit(np.asarray(strangers, np.float32)),
    )
    dev_known = np.isin(split.probe, parts.probe_dev)
    dev_strangers = np.zeros(len(data.strangers), np.bool_)
    dev_strangers[parts.stranger_dev] = True
    rules = rejection_rules(data, softmax_threshold=protocol.softmax_threshold)
    report = compare_rules(rules, dev_known, dev_strangers, target_fpr=target_fpr)
    warnings = []
    dev_count = len(parts.stranger_dev)
    fpirs = [float(f) for f in next(iter(report["rules"].values()))["fpir"]]
    for rate in sorted({target_fpr, *fpirs}):
        if rate * dev_count < 1:
            warnings.append(
                f"only {dev_count} dev strangers: an FPR of {rate:g} allows none of them, so "
                f"its thresholds lie above every dev stranger (it needs at least "
                f"{int(np.ceil(1 / rate))} dev strangers to mean what it says)"
            )
    recommendation: dict[str, Any] = {"rule": report["recommended"]}
    if report["recommended"] is not None:
        best = report["rules"][report["recommended"]]["at_target"]
        recommendation.update(
            threshold=best["threshold"],
            threshold_text=best["threshold_text"],
            dev=best["dev"],
            test=best["test"],
            holds=best["holds"],
            test_fpr_ci95=best["test_fpr_ci95"],
        )
        if not best["holds"]:
            low, high = best["test_fpr_ci95"]
            warnings.append(
                f"the recommended {report['recommended']} accepts "
                f"{100 * best['test']['fpr']:.2f} % of the test strangers, above the target "
                f"{100 * target_fpr:g} % it was chosen for on dev (95 % interval "
                f"{100 * low:.2f} to {100 * high:.2f} %)"
            )
    else:
        warnings.append("no rule names any dev probe right within the target FPR")
    reference = report["rules"][report["reference"]]["default"]
    recommendation["reference"] = {
        "rule": report["reference"],
        "threshold_text": reference["threshold_text"],
        "dev": reference["dev"],
        "test": reference["test"],
    }
    # what EmbeddingGallery(threshold=...) takes today: max cosine at the target, from dev
    recommendation["gallery_threshold"] = report["rules"]["max_cosine"]["at_target"]["threshold"]
    return {
        "split": {
            "seed": seed,
            "enroll_per_person": enroll,
            "held_out_per_person": held_out,
            "dev_fraction": dev_fraction,
            "people": len(people),
            "enroll": len(data.enroll),
            "held_out": len(data.held_out),
            "known_probes": len(data.probe),
            "strangers": len(data.strangers),
            "dev_known_probes": len(parts.probe_dev),
            "test_known_probes": len(parts.probe_test),
            "dev_strangers": dev_count,
            "test_strangers": len(parts.stranger_test),
            "stranger_people": len(set(stranger_labels)),
            "known_misses": 0,
            "stranger_misses": 0,
        },
        # the gallery's best person (max_cosine names it) over all known probes
        "closed_set_rank1": float(rules[0].correct.mean()),
        **report,
        "recommendation": recommendation,
        "warnings": warnings,
    }


# ---------------------------------------------------------------------------------------


def perturbation_kinds(text: str) -> list[str]:
    """``all``, ``none`` or comma-separated names of :data:`PERTURBATIONS`."""
    from models.eval.robustness import PERTURBATIONS

    if text == "all":
        return list(PERTURBATIONS)
    if text == "none":
        return []
    kinds = [k.strip() for k in text.split(",") if k.strip()]
    unknown = [k for k in kinds if k not in PERTURBATIONS]
    if unknown:
        raise UserError(
            f"unknown perturbation {unknown[0]!r}; choose from {', '.join(PERTURBATIONS)}"
        )
    return kinds


def _perturbation(kind: str, seed: int) -> Transform:
    from models.eval.robustness import perturb

    def transform(image: Image, relpath: str) -> Image:
        return perturb(image, kind, relpath, seed)

    return transform


def _subset(features: Features, rows: Sequence[int]) -> Features:
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


def _robust_row(result: RetrievalResult) -> dict[str, Any]:
    return {
        "images": result.images,
        "top1": result.top1,
        "top5": result.top5,
        "valid_results": result.valid_results,
        "possible_results": 5 * (result.images - result.misses),
        "misses": result.misses,
    }


def robustness_report(
    setup: EvalSetup,
    spec: str,
    images: Sequence[LabelledImage],
    *,
    data: Path,
    kinds: Sequence[str],
    queries_per_person: int,
    seed: int,
    cloaked: Path | None = None,
) -> dict[str, Any]:
    """Retrieval of perturbed (``kinds``) or cloaked queries against the originals.

    ``queries_per_person`` originals per person (``seed``) are queried clean and under
    each perturbation, each excluded from the index it is searched in. Images in the
    ``cloaked`` folder are matched to their originals by relative path (a different
    extension or a ``_cloaked`` suffix is fine). ``data`` is the originals' folder.
    """
    from models.eval.retrieval import query_against_index

    start = time.perf_counter()
    embedder = setup.embedder(spec)
    originals = setup.features(embedder, images, "originals")
    row_of = {image.relpath: row for row, image in enumerate(images)}
    index_rows = np.flatnonzero(originals.found)
    index = originals.embeddings[index_rows]
    index_labels = [images[r].identity for r in index_rows.tolist()]
    position = {int(r): i for i, r in enumerate(index_rows)}

    def evaluate(query_features: Features, originals_of: list[int]) -> dict[str, Any]:
        exclude = [position.get(r, -1) for r in originals_of]
        result = query_against_index(
            query_features.embeddings,
            query_features.labels,
            query_features.found,
            exclude,
            index,
            index_labels,
            backend=setup.index,
        )
        return _robust_row(result)

    rng = np.random.default_rng(seed)
    by_person: dict[str, list[int]] = {}
    for index_row in index_rows.tolist():
        by_person.setdefault(images[index_row].identity, []).append(index_row)
    query_rows = sorted(
        r
        for rows in by_person.values()
        for r in rng.permutation(rows)[:queries_per_person].tolist()
    )
    queries = [images[r] for r in query_rows]
    results: dict[str, dict[str, Any]] = {
        "clean": evaluate(_subset(originals, query_rows), query_rows)
    }
    for kind in kinds:
        feats = setup.features(
            embedder,
            queries,
            kind,
            transform=_perturbation(kind, seed),
            cache_tag=f"perturb={kind}|seed={seed}",
        )
        results[kind] = evaluate(feats, query_rows)
    if cloaked is not None:
        row_by_stem = {rel.rpartition(".")[0]: row for rel, row in row_of.items()}
        mapped: list[LabelledImage] = []
        originals_of: list[int] = []
        unmatched: list[str] = []
        for image in select_images(cloaked):
            original = row_of.get(image.relpath, _by_stem(row_by_stem, image.relpath))
            if original is None:
                unmatched.append(image.relpath)
                continue
            mapped.append(image)
            originals_of.append(original)
        if not mapped:
            raise UserError(
                f"no image in {cloaked} maps to an original in {data}: cloaked "
                "images must keep the originals' relative paths (a different extension or "
                "a _cloaked suffix is fine)"
            )
        feats = setup.features(embedder, mapped, "cloaked", cache_tag=f"cloaked={cloaked}")
        results["cloaked: originals"] = evaluate(_subset(originals, originals_of), originals_of)
        results["cloaked"] = evaluate(feats, originals_of)
        results["cloaked"]["unmatched"] = unmatched
    return {
        "data": str(data),
        "embedder": spec,
        "align": setup.options.align,
        "seed": seed,
        "index": len(index),
        "results": results,
        "seconds": round(time.perf_counter() - start, 2),
    }
