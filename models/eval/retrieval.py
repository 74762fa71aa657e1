"""Retrieval (the CLIP-as-face-recognizer paper): a flat L2 index over every image; each
query takes its nearest neighbours, itself excluded; top-1 = the nearest is the same
identity, top-5 = any of the five nearest is. Images without a detected face are in no
index and count as misses (wrong answers). Pure numpy (faiss when installed).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float32]


IndexBackend = Literal["auto", "numpy", "faiss"]


def faiss_available() -> bool:
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def knn_l2(
    queries: FloatArray,
    index: FloatArray,
    k: int,
    backend: IndexBackend = "auto",
    chunk_bytes: int = 256 << 20,
) -> tuple[FloatArray, NDArray[np.int64]]:
    """Exact k nearest rows of ``index`` for each query: (squared L2 distances, indices).

    Results are ordered by distance; numpy breaks exact ties by the lower index, faiss
    makes no such promise. ``auto`` takes faiss-cpu's flat index when it is installed: at
    200k x 1024 it answered 1.2x faster than numpy on this project's 2-core machines
    (`kiosk eval index-bench`), with the same nearest neighbours.
    """
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    index = np.ascontiguousarray(index, dtype=np.float32)
    k = min(k, len(index))
    if len(queries) == 0 or k == 0:
        return np.zeros((len(queries), k), np.float32), np.zeros((len(queries), k), np.int64)
    if backend == "auto":
        backend = "faiss" if faiss_available() else "numpy"
    if backend == "faiss":
        import faiss

        flat = faiss.IndexFlatL2(index.shape[1])
        flat.add(index)
        dist, ids = flat.search(queries, k)
        return dist.astype(np.float32), ids.astype(np.int64)
    index_sq = np.einsum("ij,ij->i", index, index)
    chunk = max(1, chunk_bytes // (4 * len(index)))  # bounds the distance block's memory
    all_dist = np.empty((len(queries), k), np.float32)
    all_ids = np.empty((len(queries), k), np.int64)
    for start in range(0, len(queries), chunk):
        q = queries[start : start + chunk]
        # |q - x|^2 = |q|^2 - 2 q.x + |x|^2
        dist = index_sq[None, :] - 2.0 * (q @ index.T)
        dist += np.einsum("ij,ij->i", q, q)[:, None]
        if k < dist.shape[1]:
            part = np.argpartition(dist, k - 1, axis=1)[:, :k]
        else:
            part = np.broadcast_to(np.arange(dist.shape[1]), dist.shape).copy()
        part_dist = np.take_along_axis(dist, part, axis=1)
        order = np.lexsort((part, part_dist), axis=1)
        all_ids[start : start + len(q)] = np.take_along_axis(part, order, axis=1)
        all_dist[start : start + len(q)] = np.maximum(
            np.take_along_axis(part_dist, order, axis=1), 0.0
        )
    return all_dist, all_ids


@dataclass(frozen=True)
class RetrievalResult:
    images: int  # every image of the data set, misses included
    misses: int  # images with no detected face: counted as wrong
    top1: float  # fraction of all images
    top5: float
    top1_found: float  # the same over images with a face only
    top5_found: float
    valid_results: int  # same-identity results among the 5 returned, summed over queries
    per_identity: dict[str, tuple[int, int, int]] = field(default_factory=dict)
    # identity -> (images, top-1 hits, top-5 hits)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def leave_one_out(
    embeddings: FloatArray,
    labels: Sequence[str],
    found: NDArray[np.bool_] | None = None,
    *,
    k: int = 5,
    backend: IndexBackend = "auto",
) -> RetrievalResult:
    """The paper's protocol: every image with a face is a query against all the others.

    ``embeddings`` has one row per image; rows where ``found`` is False (no face) are
    neither queries nor index entries and count as misses. The query is removed from
    its own results explicitly, so an exact duplicate image does not take its place.
    """
    labels_arr = np.asarray(labels)
    if len(labels_arr) != len(embeddings):
        raise ValueError("one label per embedding is needed")
    found_mask = np.ones(len(labels_arr), bool) if found is None else np.asarray(found, bool)
    rows = np.flatnonzero(found_mask)
    hit1 = np.zeros(len(labels_arr), bool)
    hit5 = np.zeros(len(labels_arr), bool)
    valid = 0
    if len(rows) > 1:
        vectors = np.asarray(embeddings, np.float32)[rows]
        _, ids = knn_l2(vectors, vectors, k + 1, backend=backend)
        own = np.arange(len(rows))[:, None]
        # drop the query itself wherever it appears, keep the first k others
        keep = ids != own
        neighbours = np.array(
            [row[mask][:k] for row, mask in zip(ids, keep, strict=True)], dtype=np.int64
        )
        same = labels_arr[rows][neighbours] == labels_arr[rows][:, None]
        hit1[rows] = same[:, 0]
        hit5[rows] = same.any(axis=1)
        valid = int(same.sum())
    per_identity: dict[str, tuple[int, int, int]] = {}
    for name in sorted(set(labels_arr.tolist())):
        mask = labels_arr == name
        per_identity[name] = (int(mask.sum()), int(hit1[mask].sum()), int(hit5[mask].sum()))
    images = len(labels_arr)
    n_found = max(len(rows), 1)
    return RetrievalResult(
        images=images,
        misses=images - len(rows),
        top1=float(hit1.sum() / max(images, 1)),
        top5=float(hit5.sum() / max(images, 1)),
        top1_found=float(hit1.sum() / n_found),
        top5_found=float(hit5.sum() / n_found),
        valid_results=valid,
        per_identity=per_identity,
    )


def query_against_index(
    queries: FloatArray,
    query_labels: Sequence[str],
    query_found: NDArray[np.bool_],
    exclude: Sequence[int],
    index: FloatArray,
    index_labels: Sequence[str],
    *,
    k: int = 5,
    backend: IndexBackend = "auto",
) -> RetrievalResult:
    """Retrieval of altered queries (perturbed, cloaked) from an index of the originals.

    ``exclude[i]`` is the index row of query i's own original (-1 for none); it is never
    returned, as in leave-one-out.
    """
    labels_q = np.asarray(query_labels)
    labels_i = np.asarray(index_labels)
    hit1 = np.zeros(len(labels_q), bool)
    hit5 = np.zeros(len(labels_q), bool)
    valid = 0
    rows = np.flatnonzero(np.asarray(query_found, bool))
    if len(rows) and len(index):
        _, ids = knn_l2(np.asarray(queries, np.float32)[rows], index, k + 1, backend=backend)
        excl = np.asarray(exclude, np.int64)[rows][:, None]
        neighbours = [row[row != e][:k] for row, e in zip(ids, excl, strict=True)]
        for row, found_ids in zip(rows, neighbours, strict=True):
            same = labels_i[found_ids] == labels_q[row]
            hit1[row] = bool(len(same)) and bool(same[0])
            hit5[row] = bool(same.any())
            valid += int(same.sum())
    images = len(labels_q)
    return RetrievalResult(
        images=images,
        misses=images - len(rows),
        top1=float(hit1.sum() / max(images, 1)),
        top5=float(hit5.sum() / max(images, 1)),
        top1_found=float(hit1.sum() / max(len(rows), 1)),
        top5_found=float(hit5.sum() / max(len(rows), 1)),
        valid_results=valid,
    )


def benchmark_index(
    n: int = 200_000, dim: int = 1024, queries: int = 500, k: int = 6, seed: int = 0
) -> dict[str, Any]:
    """Seconds per flat-L2 search of ``queries`` random vectors in ``n`` x ``dim``, per backend.

    Both backends answer the same queries; ``agree`` says whether their neighbours match.
    """
    import time

    rng = np.random.default_rng(seed)
    index = rng.standard_normal((n, dim), dtype=np.float32)
    index /= np.linalg.norm(index, axis=1, keepdims=True)
    query = index[rng.choice(n, size=queries, replace=False)]
    result: dict[str, Any] = {"n": n, "dim": dim, "queries": queries, "k": k}
    answers = {}
    backends: list[IndexBackend] = ["numpy", "faiss"] if faiss_available() else ["numpy"]
    for backend in backends:
        start = time.perf_counter()
        _, ids = knn_l2(query, index, k, backend=backend)
        seconds = time.perf_counter() - start
        answers[backend] = ids
        result[backend] = {
            "seconds": round(seconds, 3),
            "queries_per_second": round(queries / seconds, 1),
            # leave-one-out over the whole index: every row is a query
            "projected_leave_one_out_seconds": round(seconds * n / queries, 1),
        }
    if len(answers) == 2:
        result["agree"] = bool(np.array_equal(answers["numpy"][:, 0], answers["faiss"][:, 0]))
        result["faster"] = min(backends, key=lambda b: result[b]["seconds"])
    return result
