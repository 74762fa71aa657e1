"""Evaluation protocols (models/evaluate.py): hand-checked cases on synthetic vectors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from models.eval.openset import (
    OpenSetData,
    compare_rules,
    fit_temperature,
    paper_percentile_thresholds,
    rejection_rules,
    split_known,
    threshold_at_fnr,
    threshold_at_fpir,
)
from models.eval.retrieval import faiss_available, knn_l2, leave_one_out, query_against_index
from models.eval.robustness import PERTURBATIONS, perturb
from tests.helpers import skip_or_fail, stale_temp


@pytest.fixture(params=["numpy", "faiss"])
def backend(request: pytest.FixtureRequest) -> str:
    if request.param == "faiss" and not faiss_available():
        skip_or_fail("faiss-cpu is not installed (the eval extra)")
    return str(request.param)


def _line(xs: list[float]) -> np.ndarray:
    """Points on a line, as 2-D vectors: distances are |x_i - x_j|, easy to check by hand."""
    return np.array([[x, 0.0] for x in xs], np.float32)


# Worked by hand; each query's five nearest others, nearest first:
#   a1 (0)    : a2 b1 c1 c2 a3     top-1 hit,  top-5 hit,  2 valid
#   a2 (1.5)  : b1 a1 c1 c2 a3     top-1 miss, top-5 hit,  2 valid
#   b1 (2)    : a2 c1 a1 c2 a3     top-1 miss, top-5 miss (b2 is 6th), 0 valid
#   c1 (3.2)  : b1 a2 a1 c2 a3     top-1 miss, top-5 hit,  1 valid
#   c2 (20)   : a3 c1 b1 a2 a1     top-1 miss, top-5 hit,  1 valid
#   a3 (21.5) : c2 c1 b2 b1 c3     top-1 miss, top-5 miss, 0 valid
#   b2 (40.7) : c3 a3 c2 c1 b1     top-1 miss, top-5 hit,  1 valid
#   c3 (41.3) : b2 a3 c2 c1 b1     top-1 miss, top-5 hit,  2 valid
#   d1        : no face: a miss. Its vector (0.1) would be a1's nearest if it were indexed.
HAND_X = [0.0, 1.5, 2.0, 3.2, 20.0, 21.5, 40.7, 41.3, 0.1]
HAND_LABELS = ["a", "a", "b", "c", "c", "a", "b", "c", "d"]
HAND_FOUND = np.array([True] * 8 + [False])


def test_leave_one_out_hand_checked(backend: str) -> None:
    result = leave_one_out(_line(HAND_X), HAND_LABELS, HAND_FOUND, backend=backend)  # type: ignore[arg-type]
    assert result.images == 9
    assert result.misses == 1
    assert result.top1 == pytest.approx(1 / 9)
    assert result.top5 == pytest.approx(6 / 9)
    assert result.top1_found == pytest.approx(1 / 8)
    assert result.top5_found == pytest.approx(6 / 8)
    assert result.valid_results == 9
    assert result.per_identity == {
        "a": (3, 1, 2),
        "b": (2, 0, 1),
        "c": (3, 0, 3),
        "d": (1, 0, 0),
    }


def test_leave_one_out_excludes_the_query_even_with_an_exact_duplicate() -> None:
    vectors = _line([5.0, 5.0, 5.0, 9.0])
    result = leave_one_out(vectors, ["a", "a", "b", "b"], backend="numpy")
    # a's twin and b1 are both at distance 0 from either a: ties go to the lower index.
    # a1 -> a2 (hit), a2 -> a1 (hit), b1 -> a1 (miss), b2 (9) -> a1 (miss)
    assert result.top1 == pytest.approx(2 / 4)
    assert result.top5 == 1.0


def test_knn_matches_brute_force(backend: str) -> None:
    rng = np.random.default_rng(1)
    index = rng.standard_normal((300, 16)).astype(np.float32)
    queries = rng.standard_normal((40, 16)).astype(np.float32)
    dist, ids = knn_l2(queries, index, 6, backend=backend, chunk_bytes=4 * 300 * 7)  # type: ignore[arg-type]
    full = ((queries[:, None, :] - index[None]) ** 2).sum(-1)
    expected = np.argsort(full, axis=1, kind="stable")[:, :6]
    assert np.array_equal(ids, expected)
    assert np.allclose(dist, np.take_along_axis(full, expected, 1), atol=1e-3)


def test_query_against_index_skips_own_original() -> None:
    index = _line([0.0, 1.0, 10.0])
    # the query is a slightly altered copy of row 0 (label a); its own original is excluded
    result = query_against_index(
        _line([0.2, 50.0]), ["a", "b"], np.array([True, False]), [0, 2], index, ["a", "a", "b"]
    )
    assert result.images == 2 and result.misses == 1
    assert result.top1 == pytest.approx(1 / 2)  # nearest other: row 1 (a)
    assert result.valid_results == 1  # of rows 1, 2 returned, one is a


def test_split_is_deterministic_disjoint_and_per_person() -> None:
    labels = ["p"] * 10 + ["q"] * 8 + ["r"] * 4
    first = split_known(labels, enroll=3, held_out=2, seed=7)
    again = split_known(labels, enroll=3, held_out=2, seed=7)
    other = split_known(labels, enroll=3, held_out=2, seed=8)
    for a, b in zip(
        (first.enroll, first.held_out, first.probe),
        (again.enroll, again.held_out, again.probe),
        strict=True,
    ):
        assert np.array_equal(a, b)
    assert not np.array_equal(first.enroll, other.enroll)
    parts = np.concatenate([first.enroll, first.held_out, first.probe])
    assert sorted(parts.tolist()) == list(range(22))
    names = np.array(labels)
    assert (names[first.enroll] == "p").sum() == 3
    assert (names[first.held_out] == "q").sum() == 2
    assert (names[first.probe] == "p").sum() == 5
    assert (names[first.probe] == "r").sum() == 0  # 4 photos: 3 enrolled, 1 held out
    # adding a person changes no one else's split
    more = split_known([*labels, "s", "s", "s"], enroll=3, held_out=2, seed=7)
    assert np.array_equal(more.enroll[: len(first.enroll)], first.enroll)


def test_thresholds_at_fpir_and_fnr() -> None:
    strangers = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0], np.float32)
    cut = threshold_at_fpir(strangers, 0.1)  # one stranger (1.0) may pass
    assert (strangers >= cut).sum() == 1
    assert (strangers >= threshold_at_fpir(strangers, 0.0)).sum() == 0
    known = np.array([0.3, 0.5, 0.7, 0.9], np.float32)
    assert threshold_at_fnr(known, 0.25) == pytest.approx(0.5)  # rejects only 0.3
    assert (known < threshold_at_fnr(known, 0.0)).sum() == 0


def test_paper_percentile_thresholds_by_hand() -> None:
    # a: 0, 3, 4 on a line; b alone at 100 takes the pooled percentile.
    gallery = _line([0.0, 3.0, 4.0, 100.0])
    ids = np.array([0, 0, 0, 1])
    got = paper_percentile_thresholds(gallery, ids, percentile=50)
    # row 0: distances 3, 4 -> median 3.5; row 1: 3, 1 -> 2; row 2: 4, 1 -> 2.5
    assert got[:3] == pytest.approx([3.5, 2.0, 2.5])
    assert got[3] == pytest.approx(np.percentile([3, 4, 3, 1, 4, 1], 50))


def test_fit_temperature_recovers_the_generating_one() -> None:
    rng = np.random.default_rng(0)
    scores = rng.uniform(-0.2, 0.8, size=(4000, 6)).astype(np.float32)
    true_t = 0.05
    p = np.exp(scores / true_t)
    p /= p.sum(1, keepdims=True)
    labels = np.array([rng.choice(6, p=row) for row in p])
    assert fit_temperature(scores, labels) == pytest.approx(true_t, rel=0.15)


def _clusters(seed: int = 0) -> OpenSetData:
    """10 people as tight clusters on a 32-d sphere and 200 strangers elsewhere."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((10, 32))

    def sample(ids: np.ndarray, spread: float) -> np.ndarray:
        x = centres[ids] + spread * rng.standard_normal((len(ids), 32))
        return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)

    enroll_ids = np.repeat(np.arange(10), 5)
    held_ids = np.repeat(np.arange(10), 2)
    probe_ids = np.repeat(np.arange(10), 6)
    strangers = rng.standard_normal((200, 32))
    return OpenSetData(
        people=[f"p{i}" for i in range(10)],
        enroll=sample(enroll_ids, 0.6),
        enroll_ids=enroll_ids,
        held_out=sample(held_ids, 0.6),
        held_out_ids=held_ids,
        probe=sample(probe_ids, 0.6),
        probe_ids=probe_ids,
        strangers=(strangers / np.linalg.norm(strangers, axis=1, keepdims=True)).astype(np.float32),
    )


def test_rejection_rules_compared_at_equal_fnr() -> None:
    data = _clusters()
    correct, rules = rejection_rules(data)
    names = [rule.name for rule in rules]
    assert names == [
        "max_cosine",
        "max_softmax",
        "calibrated_softmax",
        "per_person",
        "paper_p95",
        "fusion",
    ]
    assert correct.shape == (60,) and correct.mean() > 0.9
    for rule in rules:
        assert rule.known.shape == (60,) and rule.strangers.shape == (200,)
    report = compare_rules(correct, rules)
    ref = report["rules"]["max_softmax"]
    # the reference rule at its own FNR sits where its default threshold puts it
    assert ref["at_reference_fnr"]["fnr"] == pytest.approx(ref["default"]["fnr"])
    assert ref["at_reference_fnr"]["fpr"] <= ref["default"]["fpr"]
    for rule in report["rules"].values():
        assert rule["at_reference_fnr"]["fnr"] <= report["reference_fnr"] + 1e-9
        assert rule["fpir"]["0.01"]["fpr"] <= 0.01
    best = report["rules"][report["recommended"]]["at_reference_fnr"]["fpr"]
    assert best == min(r["at_reference_fnr"]["fpr"] for r in report["rules"].values())
    assert report["rules"]["calibrated_softmax"]["params"]["temperature"] > 0


def test_perturbations_are_deterministic_and_change_the_image() -> None:
    rng = np.random.default_rng(3)
    image = rng.integers(30, 220, size=(64, 48, 3), dtype=np.uint8)
    for kind in PERTURBATIONS:
        first = perturb(image, kind, "person/img_0001.jpg", seed=5)
        again = perturb(image.copy(), kind, "person/img_0001.jpg", seed=5)
        assert first.shape == image.shape and first.dtype == np.uint8
        assert np.array_equal(first, again), kind
        assert not np.array_equal(first, image), kind
    noise_a = perturb(image, "noise10", "person/img_0001.jpg", seed=5)
    noise_b = perturb(image, "noise10", "person/img_0002.jpg", seed=5)
    assert not np.array_equal(noise_a, noise_b)  # each image draws its own noise
    with pytest.raises(ValueError, match="unknown perturbation"):
        perturb(image, "melt", "x")


def test_data_sets_are_read_by_the_folder_per_person_rule(tmp_path: Path) -> None:
    """faces94's ``_unknown`` is no identity; what else is left out is reported."""
    from models.eval.features import DatasetError, list_images
    from models.io import NESTED_FOLDER, NOT_AN_IMAGE, Skipped

    for folder in ("Ana", "ana", "Bob", "_unknown", "Bob/2019"):
        (tmp_path / folder).mkdir()
    for name in ("Ana/1.jpg", "Ana/0.png", "ana/0.png", "Bob/a.pgm", "Bob/notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "_unknown" / "x.jpg").write_bytes(b"x")
    (tmp_path / "README.txt").write_text("about the set", encoding="utf-8")
    skipped: list[Skipped] = []
    images = list_images(tmp_path, skipped)
    assert [(i.relpath, i.identity) for i in images] == [
        ("Ana/0.png", "Ana"),
        ("Ana/1.jpg", "Ana"),
        ("Bob/a.pgm", "Bob"),
    ]
    reasons = {Path(item.path).relative_to(tmp_path).as_posix(): item.reason for item in skipped}
    assert reasons["ana"].startswith("duplicate name")
    assert reasons["Bob/2019"] == NESTED_FOLDER and reasons["Bob/notes.txt"] == NOT_AN_IMAGE
    assert len(reasons) == 3
    with pytest.raises(DatasetError, match="does not exist"):
        list_images(tmp_path / "missing")


def test_eval_cache_chunks_are_atomic_and_killed_writes_are_removed(tmp_path: Path) -> None:
    from models.eval.features import FeatureCache

    cache = FeatureCache(tmp_path, "embedder|tag")
    killed = stale_temp(cache.dir, ".tmp-k1lled_0.npz")
    assert cache.load() == {} and not killed.exists()
    cache.write(["a", "b"], [0, 1], np.ones((2, 3), np.float32))
    assert sorted(p.name for p in cache.dir.iterdir()) == ["chunk_000000.npz", "key.json"]
    loaded = cache.load()
    assert loaded["a"][0] == 0 and loaded["b"][0] == 1 and loaded["b"][1].tolist() == [1.0] * 3
