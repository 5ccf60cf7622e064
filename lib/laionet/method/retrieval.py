"""§4.4: ImageNet recreated by searching LAION with ImageNet's captions (paper_spec A19, B18, C.6).

Each ImageNet-Captions caption is a query (k = 1) of the caption index (``laionet.jobs.caption_index``);
the retrieved LAION row gets the caption's class; rows whose caption-to-caption similarity passes
a threshold (0.7 in the paper) form the "LAION | ImageNet texts" dataset.
The approximate index's scores are not the caption-to-caption similarity (PQ codes): the
retrieved pairs are re-scored exactly (``exact_similarity``) before the threshold and the sweep.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from laionet.paper import PAPER_SWEEP  # noqa: F401
from laionet.method.similarity import compare_classes, sample_per_class


def label_retrieved(query_ids: Sequence, query_wnids: Sequence, keys: np.ndarray,
                    sims: np.ndarray, index_sims: np.ndarray | None = None) -> pd.DataFrame:
    """One row per (query, neighbour): image_key, wnid (the query caption's class), key,
    similarity (what the threshold and the sweep use: the exact caption-to-caption cosine from
    ``exact_similarity``, or the index's own score) and, when ``index_sims`` is given, the
    index's score as ``index_similarity``.

    As the authors did, no substring check and no multi-label drop: a LAION row retrieved by
    captions of two classes belongs to both. Missing neighbours (key -1) are dropped.
    """
    keys = np.asarray(keys).reshape(len(query_ids), -1)
    sims = np.asarray(sims).reshape(len(query_ids), -1)
    k = keys.shape[1]
    out = pd.DataFrame({"image_key": np.repeat(np.asarray(query_ids), k),
                        "wnid": np.repeat(np.asarray(query_wnids), k),
                        "key": keys.ravel(), "similarity": sims.ravel()})
    if index_sims is not None:
        out["index_similarity"] = np.asarray(index_sims, dtype=np.float32).reshape(keys.shape).ravel()
    return out[out["key"] >= 0].reset_index(drop=True)


def retrieved_dataset(labelled: pd.DataFrame, threshold: float,
                      inclusive: bool = False) -> pd.DataFrame:
    """The LAION rows per class whose caption-to-caption similarity passes ``threshold``.

    A (class, row) pair retrieved by several captions is kept once (the authors'
    ``list(set(...))``) and passes when its best caption does (similarity = the maximum).
    Columns: wnid, key, similarity, n_queries. Strict ``>`` by default, as the paper.
    """
    g = labelled.groupby(["wnid", "key"], sort=True).agg(similarity=("similarity", "max"),
                                                         n_queries=("image_key", "size"))
    g = g.reset_index()
    keep = g["similarity"] >= threshold if inclusive else g["similarity"] > threshold
    return g[keep].reset_index(drop=True)


def threshold_sweep(labelled: pd.DataFrame, thresholds: Sequence[float],
                    compare: Callable[[pd.DataFrame], pd.DataFrame],
                    inclusive: bool = False) -> pd.DataFrame:
    """B18 sweep: for each caption-to-caption threshold, the classes kept and the per-class
    comparison with ImageNet.

    ``compare(kept)`` gets ``retrieved_dataset(labelled, t)`` and returns one row per class in
    the shape of ``laionet.method.similarity.compare_classes``: boolean columns ``tested``,
    ``significantly_lower`` and ``significantly_higher`` (vs ImageNet).
    Columns: threshold, n_rows, n_classes, n_tested, share_lower, share_higher.
    """
    rows = []
    for t in thresholds:
        kept = retrieved_dataset(labelled, t, inclusive)
        res = compare(kept)
        tested = res[res["tested"].astype(bool)]
        n_tested = len(tested)
        shares = {f"share_{side}": float(tested[f"significantly_{side}"].mean()) if n_tested
                  else float("nan") for side in ("lower", "higher")}
        rows.append({"threshold": float(t), "n_rows": int(kept["key"].nunique()),
                     "n_classes": int(kept["wnid"].nunique()), "n_tested": n_tested, **shares})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------
# The LAION caption index, one index file per part (stage 09)
# --------------------------------------------------------------------------------------------


def exact_similarity(queries: np.ndarray, found: np.ndarray,
                     embeddings_of: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """The exact cosine similarity of each query with each retrieved caption: [n, k] float32
    (NaN where no neighbour). ``embeddings_of(distinct keys)`` gives unit-norm caption
    embeddings aligned to its argument (``caption_embeddings``), called once."""
    q = np.asarray(queries, dtype=np.float32)
    found = np.asarray(found, dtype=np.int64).reshape(len(q), -1)
    uniq, inv = np.unique(found[found >= 0], return_inverse=True)
    out = np.full(found.shape, np.nan, np.float32)
    if len(uniq):
        emb = np.asarray(embeddings_of(uniq), dtype=np.float32)
        rows, cols = np.nonzero(found >= 0)
        out[rows, cols] = np.einsum("ij,ij->i", q[rows], emb[inv])
    return out


# --------------------------------------------------------------------------------------------
# The retrieved rows' images and their comparison with ImageNet
# --------------------------------------------------------------------------------------------

def sample_retrieved(retrieved: pd.DataFrame, n_per_class: int = 100, seed: int = 0) -> pd.DataFrame:
    """Up to ``n_per_class`` seeded (class, row) pairs per class of ``retrieved_dataset``'s
    table: a row retrieved for two classes is a candidate of both, so the pair is sampled."""

    pairs = retrieved.assign(pair=retrieved["wnid"] + ":" + retrieved["key"].astype(str))
    return sample_per_class(pairs, n_per_class, seed, key="pair").drop(columns="pair")


class ClassComparer:
    """The retrieved rows of each class vs a reference dataset's classes (ImageNet).

    ``by_class(kept)``: {wnid: embeddings} of the kept (class, row) pairs that have an image
    embedding (a row can serve two classes); calling it with ``kept`` gives
    ``similarity.compare_classes`` against the reference, the ``compare`` of
    ``threshold_sweep``.
    """

    def __init__(self, keys: Sequence, emb: np.ndarray, reference: Mapping[str, np.ndarray],
                 method: str = "bootstrap", min_pairs: int = 7, seed: int = 0):
        self.emb_by_key = dict(zip(np.asarray(keys).tolist(), emb))
        self.reference = reference
        self.method, self.min_pairs, self.seed = method, min_pairs, seed

    def by_class(self, kept: pd.DataFrame) -> dict[str, np.ndarray]:
        kept = kept[kept["key"].isin(set(self.emb_by_key))]
        return {w: np.stack([self.emb_by_key[x] for x in g["key"]]) for w, g in kept.groupby("wnid")}

    def __call__(self, kept: pd.DataFrame) -> pd.DataFrame:
        return compare_classes(self.by_class(kept), self.reference, method=self.method,
                               min_pairs=self.min_pairs, seed=self.seed)
