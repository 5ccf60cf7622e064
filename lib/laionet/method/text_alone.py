"""§4.3: text alone cannot explain why an image is in ImageNet (paper_spec A18, B16, B17, E.17).

For each ImageNet-Captions caption, p = the proportion of *other* classes whose synset text is
strictly more similar to the caption than its own class's. If captions alone explained
selection, p would be ~0 for almost every caption. Denominator (the E.17 fix, the default): the
other classes compared, (classes in the set) - 1; a caption of an excluded or unknown class gets
p = NaN, counted in the report. ``paper=True`` reproduces the authors: all classes of the set
(999, the true one included) and p = 0 for captions of excluded classes.
"""

import numpy as np
import pandas as pd


def false_class_proportion(sim: np.ndarray, true_index: np.ndarray,
                           excluded: np.ndarray | None = None, paper: bool = False) -> pd.DataFrame:
    """Per caption, the share of other classes strictly more similar than its own (ties do not
    count). ``sim`` [n, C]: caption-to-class-text similarities; ``true_index`` [n]: each
    caption's class column, or -1; ``excluded`` [C]: classes left out of the comparison set.
    Columns: own_similarity (NaN without a column), n_more_similar, n_compared (the
    denominator), p (NaN for captions of excluded / unknown classes unless ``paper``)."""
    sim, true_index = np.asarray(sim), np.asarray(true_index, dtype=np.int64)
    n, n_cls = sim.shape
    if true_index.shape != (n,):
        raise ValueError(f"true_index has shape {true_index.shape}, expected ({n},)")
    if (true_index >= n_cls).any() or (true_index < -1).any():
        bad = np.flatnonzero((true_index >= n_cls) | (true_index < -1))[:5].tolist()
        raise ValueError(f"true_index out of range [-1, {n_cls}) at captions {bad}")
    keep_col = np.ones(n_cls, bool) if excluded is None else ~np.asarray(excluded, bool)
    if keep_col.shape != (n_cls,):
        raise ValueError(f"excluded has shape {keep_col.shape}, expected ({n_cls},)")
    has_col = true_index >= 0
    col = np.where(has_col, true_index, 0)
    own = np.where(has_col, sim[np.arange(n), col], np.nan)
    in_set = has_col & keep_col[col]
    # own is NaN for captions without a column: NaN comparisons are False, so they count 0.
    more = ((sim > own[:, None]) & keep_col[None, :]).sum(axis=1)
    n_set = int(keep_col.sum())
    if paper:
        n_compared = np.full(n, n_set)
        p = np.where(in_set, more / max(n_set, 1), 0.0)
    else:
        n_compared = np.where(in_set, n_set - 1, 0)
        with np.errstate(invalid="ignore", divide="ignore"):
            p = np.where(in_set & (n_compared > 0), more / n_compared, np.nan)
    return pd.DataFrame({"own_similarity": own.astype(np.float32),
                         "n_more_similar": np.where(in_set, more, 0).astype(np.int32),
                         "n_compared": n_compared.astype(np.int32), "p": p})


def false_class_table(captions: pd.DataFrame, texts: pd.Series, caption_emb: np.ndarray,
                      class_emb: np.ndarray, exclude_wnids=(), paper: bool = False,
                      block_size: int = 8192) -> pd.DataFrame:
    """A18 on ImageNet-Captions: per caption (image_key, wnid), ``false_class_proportion``
    against the classes of ``texts`` (wnid -> synset text; the rows of ``class_emb``, both sides
    L2-normalised), ``exclude_wnids`` left out of the comparison set (the authors': n03126707).
    One block of ``block_size`` captions at a time: no captions x classes matrix is kept (the
    authors stored a 443,798 x 999 table, 2.8 GB)."""
    if caption_emb.shape[1] != class_emb.shape[1]:
        raise ValueError(f"caption embeddings are {caption_emb.shape[1]}-d, class texts "
                         f"{class_emb.shape[1]}-d: embed both with the same text encoder")
    true_index = texts.index.get_indexer(captions["wnid"])
    excluded = texts.index.isin(list(exclude_wnids))
    class_t = np.ascontiguousarray(class_emb.T, dtype=np.float32)
    res = pd.concat([false_class_proportion(
        np.asarray(caption_emb[s:s + block_size], np.float32) @ class_t,
        true_index[s:s + block_size], excluded, paper)
        for s in range(0, max(len(caption_emb), 1), block_size)], ignore_index=True)
    return pd.concat([captions[["image_key", "wnid"]].reset_index(drop=True), res], axis=1)


def report(result: pd.DataFrame) -> dict:
    """Counts for the notebook: captions, those with p (and without: excluded/unknown class)."""
    valid = result["p"].notna()
    return {"n_captions": len(result), "n_with_p": int(valid.sum()),
            "n_excluded_or_unknown_class": int((~valid).sum()),
            "denominators": sorted(int(d) for d in result.loc[valid, "n_compared"].unique())}


def cdf(p: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Empirical CDF of p (NaN left out) at each grid value: share of captions with p <= x."""
    p = np.sort(np.asarray(p, dtype=np.float64)[~np.isnan(p)])
    if len(p) == 0:
        return np.full(len(grid), np.nan)
    return np.searchsorted(p, np.asarray(grid), side="right") / len(p)


def binned_proportion(own_similarity: np.ndarray, p: np.ndarray,
                      bins: int | np.ndarray = 50, z: float = 1.96) -> pd.DataFrame:
    """B17 (c): captions (NaN left out) binned by own-class similarity: left, right, center,
    n, mean_p and half_width = z * sqrt(mean (1 - mean) / n) (empty bins: n = 0, NaN mean)."""
    s, p = np.asarray(own_similarity, dtype=np.float64), np.asarray(p, dtype=np.float64)
    ok = ~(np.isnan(s) | np.isnan(p))
    s, p = s[ok], p[ok]
    edges = np.histogram_bin_edges(s, bins=bins) if np.ndim(bins) == 0 else np.asarray(bins)
    # np.histogram's convention: the last bin is closed on the right.
    idx = np.clip(np.searchsorted(edges, s, side="right") - 1, 0, len(edges) - 2)
    inside = (s >= edges[0]) & (s <= edges[-1])
    n = np.bincount(idx[inside], minlength=len(edges) - 1)
    total = np.bincount(idx[inside], weights=p[inside], minlength=len(edges) - 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = total / n
        half = z * np.sqrt(mean * (1 - mean) / n)
    return pd.DataFrame({"left": edges[:-1], "right": edges[1:],
                         "center": (edges[:-1] + edges[1:]) / 2, "n": n,
                         "mean_p": mean, "half_width": half})


def own_class_similarity(text_emb: np.ndarray, wnids, class_texts: pd.Series,
                         class_emb: np.ndarray, source: str = "") -> np.ndarray:
    """B16, LAIONet side: each caption's cosine with its class's synset text (``class_texts``'
    index gives the rows of ``class_emb``); a wnid outside it is a KeyError naming ``source``."""
    idx = class_texts.index.get_indexer(pd.Index(wnids))
    if (idx < 0).any():
        bad = sorted(set(np.asarray(wnids)[idx < 0]))[:5]
        raise KeyError(f"{source}: wnids {bad} are not in the class list; use stage 02's class "
                       "list here")
    return np.einsum("ij,ij->i", text_emb, class_emb[idx])
