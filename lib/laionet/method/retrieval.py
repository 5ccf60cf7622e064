"""§4.4: ImageNet recreated by searching LAION with ImageNet's captions (A19, B18, C.6): each
caption's nearest LAION row (``jobs.caption_index``) gets its class; rows whose caption-to-caption
similarity, re-scored exactly (``exact_similarity``), passes a threshold (0.7) form the dataset."""

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from laionet.method.similarity import sample_per_class


def label_retrieved(query_ids: Sequence, query_wnids: Sequence, keys: np.ndarray,
                    sims: np.ndarray, index_sims: np.ndarray | None = None) -> pd.DataFrame:
    """One row per (query, neighbour): image_key, wnid (the query's class), key, similarity (and
    ``index_similarity``); as the authors, no substring check, no multi-label drop."""
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
    """(wnid, key) pairs whose best caption-to-caption similarity passes ``threshold`` (``>``), each
    once (the authors' ``list(set(...))``), with n_queries."""
    g = labelled.groupby(["wnid", "key"], sort=True).agg(
        similarity=("similarity", "max"), n_queries=("image_key", "size")).reset_index()
    keep = g["similarity"] >= threshold if inclusive else g["similarity"] > threshold
    return g[keep].reset_index(drop=True)


def threshold_sweep(labelled: pd.DataFrame, thresholds: Sequence[float],
                    compare: Callable[[pd.DataFrame], pd.DataFrame],
                    inclusive: bool = False) -> pd.DataFrame:
    """B18's sweep: per threshold, rows, classes and the shares of tested classes significantly
    lower / higher than ImageNet (``compare(kept)``: a ``compare_classes`` table)."""
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


def exact_similarity(queries: np.ndarray, found: np.ndarray,
                     embeddings_of: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Exact cosine of each query with each retrieved caption ([n, k], NaN where none);
    ``embeddings_of(distinct keys)`` is called once."""
    q = np.asarray(queries, dtype=np.float32)
    found = np.asarray(found, dtype=np.int64).reshape(len(q), -1)
    uniq, inv = np.unique(found[found >= 0], return_inverse=True)
    out = np.full(found.shape, np.nan, np.float32)
    if len(uniq):
        emb = np.asarray(embeddings_of(uniq), dtype=np.float32)
        rows, cols = np.nonzero(found >= 0)
        out[rows, cols] = np.einsum("ij,ij->i", q[rows], emb[inv])
    return out


def sample_retrieved(retrieved: pd.DataFrame, n_per_class: int = 100, seed: int = 0) -> pd.DataFrame:
    """Up to ``n_per_class`` seeded (class, row) pairs per class of ``retrieved_dataset``'s
    table: a row retrieved for two classes is a candidate of both, so the pair is sampled."""
    pairs = retrieved.assign(pair=retrieved["wnid"] + ":" + retrieved["key"].astype(str))
    return sample_per_class(pairs, n_per_class, seed, key="pair").drop(columns="pair")
