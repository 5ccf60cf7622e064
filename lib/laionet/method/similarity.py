"""Intra-class image-image similarity statistics (paper_spec A14-A16, B10-B12, A21).

Per class, the statistic is the mean cosine similarity over the strictly lower triangle of
E·Eᵀ (every unordered pair of distinct images, the diagonal excluded). Everything here works on
unit-norm embedding matrices grouped by class (``{wnid: float32 [n, d]}``, made by
``laionet.jobs.image_embeddings``; figures are in ``laionet.plots.similarity``):

- ``sample_per_class``   seeded sampling of up to n images per class (fix of E.9);
- ``pairwise_stats``     n_images, n_pairs, mean, std per class, exact and memory-bounded;
- ``pooled_resample``    the pooled histogram values (A15: min(#pairs, 100) per class);
- ``compare_classes``    per-class delta with the paper's bounds or an image bootstrap (E.10);
- ``compare_datasets``   all of the above for two datasets: stats, comparison, summary, pooled.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

Z95 = 1.96

# --------------------------------------------------------------------------------------------
# Seeded sampling (fix of paper_spec E.9)
# --------------------------------------------------------------------------------------------

def sample_per_class(df: pd.DataFrame, n: int = 100, seed: int = 0, key: str = "image_key",
                     label: str = "wnid", paper_first_n: bool = False) -> pd.DataFrame:
    """Up to ``n`` rows per class, chosen by a seeded permutation that ignores input order.

    Each key gets a pseudo-random priority from a seeded 64-bit hash of the key; a class keeps
    its ``n`` lowest priorities (ties broken by key). The sample is reproducible, changes with
    the seed, does not depend on row order or on the other classes, and is nested in n (the
    100-sample is inside the 200-sample). ``paper_first_n=True`` keeps the first n rows of each
    class in the given order, as the authors did (A14). The result is sorted by (label, key)
    and records the seed in ``attrs``.
    """
    for col in (key, label):
        if col not in df.columns:
            raise ValueError(f"sample_per_class: no column {col!r} (columns: {list(df.columns)})")
    if df[key].duplicated().any():
        raise ValueError(f"sample_per_class: column {key!r} has duplicates, e.g. "
                         f"{df.loc[df[key].duplicated(), key].head(3).tolist()}")
    if paper_first_n:
        out = df.groupby(label, sort=False).head(n)
    else:
        prio = pd.util.hash_array(df[key].astype(str).to_numpy(dtype=object),
                                  hash_key=f"{int(seed) & 0xFFFFFFFF:016x}", categorize=False)
        ranked = df.assign(_prio=prio).sort_values([label, "_prio", key], kind="stable")
        out = ranked[ranked.groupby(label, sort=False).cumcount().to_numpy() < n]
        out = out.drop(columns="_prio")
    out = out.sort_values([label, key], kind="stable").reset_index(drop=True)
    out.attrs.update(df.attrs)
    out.attrs.update(sample_seed=None if paper_first_n else int(seed), sample_n=int(n),
                     sample_rule="first_n" if paper_first_n else "seeded_hash_permutation")
    return out


# --------------------------------------------------------------------------------------------
# Pairwise statistics
# --------------------------------------------------------------------------------------------

def pair_count(n: int | np.ndarray) -> int | np.ndarray:
    return n * (n - 1) // 2


def pairwise_values(E: np.ndarray) -> np.ndarray:
    """All lower-triangle similarities of one class (n(n-1)/2 values; for small n and tests)."""
    i, j = np.tril_indices(len(E), k=-1)
    return np.einsum("ij,ij->i", E[i], E[j])


def pair_moments(E: np.ndarray) -> tuple[int, float, float]:
    """(n_pairs, sum, sum of squares) of the lower-triangle similarities of E·Eᵀ, exactly.

    Computed from whichever Gram matrix is smaller (n x n or d x d, float64): with
    ‖ΣE‖² = Σ_ij s_ij and ‖EᵀE‖²_F = Σ_ij s_ij², memory stays O(min(n, d)²) however large
    the class.
    """
    E = np.asarray(E, dtype=np.float64)
    n = len(E)
    diag = np.einsum("ij,ij->i", E, E)
    s = E.sum(axis=0)
    total = float(s @ s)
    gram = E @ E.T if n <= E.shape[1] else E.T @ E
    total_sq = float(np.einsum("ij,ij->", gram, gram))
    return pair_count(n), (total - diag.sum()) / 2.0, (total_sq - (diag ** 2).sum()) / 2.0


def pairwise_stats(emb_by_class: Mapping[str, np.ndarray]) -> pd.DataFrame:
    """Per class: wnid, n_images, n_pairs, mean and std (population, as np.std) of the
    lower-triangle similarities. Classes with fewer than 2 images get n_pairs 0 and NaN."""
    rows = []
    for wnid, E in emb_by_class.items():
        n_pairs, s, ss = pair_moments(E) if len(E) >= 2 else (0, np.nan, np.nan)
        mean = s / n_pairs if n_pairs else np.nan
        var = ss / n_pairs - mean ** 2 if n_pairs else np.nan
        rows.append((wnid, len(E), n_pairs, mean, np.sqrt(max(var, 0.0)) if n_pairs else np.nan))
    return pd.DataFrame(rows, columns=["wnid", "n_images", "n_pairs", "mean", "std"]).astype(
        {"n_images": "int64", "n_pairs": "int64"})


def _class_rng(seed: int, wnid: str) -> np.random.Generator:
    """A generator per (seed, class): a class's draws do not depend on which others exist."""
    return np.random.default_rng([int(seed), zlib.crc32(str(wnid).encode())])


def sample_pairs(E: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """``k`` similarities drawn uniformly with replacement from the class's lower triangle,
    without building it: linear pair index t -> (i, j) with i > j, t = i(i-1)/2 + j."""
    n_pairs = pair_count(len(E))
    t = rng.integers(0, n_pairs, size=k)
    i = np.floor((1 + np.sqrt(1 + 8 * t.astype(np.float64))) / 2).astype(np.int64)
    i -= (i * (i - 1) // 2) > t  # guard against float rounding at row starts
    i += ((i + 1) * i // 2) <= t
    j = t - i * (i - 1) // 2
    return np.einsum("ij,ij->i", E[i], E[j])


def common_resample_sizes(*datasets: Mapping[str, np.ndarray], cap: int = 100) -> dict[str, int]:
    """Per class present in every dataset: min(#pairs in each, cap) (A16's shared n)."""
    common = set.intersection(*(set(d) for d in datasets)) if datasets else set()
    return {w: int(min(cap, *(pair_count(len(d[w])) for d in datasets))) for w in sorted(common)}


def pooled_resample(emb_by_class: Mapping[str, np.ndarray], n_values: int | Mapping[str, int] = 100,
                    seed: int = 0, classes: Iterable[str] | None = None) -> pd.DataFrame:
    """Pooled histogram values (A15): per class, min(#pairs, n_values) similarities drawn with
    replacement (``n_values`` may be a per-class mapping, e.g. ``common_resample_sizes``).
    Returns DataFrame(wnid, similarity); seeded per class."""
    if classes is None:
        classes = n_values.keys() if isinstance(n_values, Mapping) else emb_by_class.keys()
    parts, names = [], []
    for w in sorted(classes):
        E = emb_by_class[w]
        cap = n_values[w] if isinstance(n_values, Mapping) else n_values
        k = int(min(pair_count(len(E)), cap))
        if k > 0:
            parts.append(sample_pairs(E, k, _class_rng(seed, w)))
            names.append(np.full(k, w, dtype=object))
    if not parts:
        return pd.DataFrame({"wnid": pd.Series(dtype=object), "similarity": pd.Series(dtype=float)})
    return pd.DataFrame({"wnid": np.concatenate(names), "similarity": np.concatenate(parts)})


# --------------------------------------------------------------------------------------------
# Per-class comparison
# --------------------------------------------------------------------------------------------

def bootstrap_means(E: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Mean pairwise similarity of ``n_boot`` resamples of the class's IMAGES (with replacement).

    With resample counts w, the mean over pairs of distinct drawn images is
    (wᵀGw − Σ w_i² G_ii) / (n² − Σ w_i²): a repeated image is not paired with itself. Vectorised
    over resamples (one matrix product per class).
    """
    E = np.asarray(E, dtype=np.float64)
    n = len(E)
    W = rng.multinomial(n, np.full(n, 1.0 / n), size=n_boot).astype(np.float64)
    diag = np.einsum("ij,ij->i", E, E)
    if n <= E.shape[1]:
        quad = np.einsum("bi,bi->b", W @ (E @ E.T), W)
    else:
        proj = W @ E
        quad = np.einsum("bd,bd->b", proj, proj)
    w2 = W * W
    den = n * n - w2.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (quad - w2 @ diag) / den, np.nan)


CI_METHODS = ("bootstrap", "paper")


def compare_classes(a: Mapping[str, np.ndarray], b: Mapping[str, np.ndarray],
                    method: str = "bootstrap", min_pairs: int = 7, n_boot: int = 1000,
                    seed: int = 0, level: float = 0.95) -> pd.DataFrame:
    """Per-class delta = mean_a − mean_b of intra-class similarity with a confidence interval.

    Classes present in both; ``tested`` marks those with ≥ ``min_pairs`` pairs in both (A15: 7).
    ``method="paper"``: mean ± 1.96·std/sqrt(pairs−1) per dataset, half-widths in quadrature
    (pairs treated as independent, as the authors did). ``method="bootstrap"`` (default, the
    better choice, E.10): resample images within each class of each dataset, recompute the mean
    pairwise similarity, percentile interval of the delta. Columns: wnid, n_images_a/b,
    n_pairs_a/b, mean_a/b, delta, lcb, ucb, tested, significantly_lower (ucb < 0),
    significantly_higher (lcb > 0).
    """
    if method not in CI_METHODS:
        raise ValueError(f"compare_classes: method must be one of {CI_METHODS}, not {method!r}")
    common = sorted(set(a) & set(b))
    sa = pairwise_stats({w: a[w] for w in common}).set_index("wnid")
    sb = pairwise_stats({w: b[w] for w in common}).set_index("wnid")
    out = pd.DataFrame({"wnid": common,
                        "n_images_a": sa["n_images"].to_numpy(), "n_images_b": sb["n_images"].to_numpy(),
                        "n_pairs_a": sa["n_pairs"].to_numpy(), "n_pairs_b": sb["n_pairs"].to_numpy(),
                        "mean_a": sa["mean"].to_numpy(), "mean_b": sb["mean"].to_numpy()})
    out["delta"] = out["mean_a"] - out["mean_b"]
    out["tested"] = (out["n_pairs_a"] >= min_pairs) & (out["n_pairs_b"] >= min_pairs)
    lcb = np.full(len(out), np.nan)
    ucb = np.full(len(out), np.nan)
    tested = out["tested"].to_numpy()
    if method == "paper":
        ha = Z95 * sa["std"].to_numpy() / np.sqrt(np.maximum(out["n_pairs_a"].to_numpy() - 1, 1))
        hb = Z95 * sb["std"].to_numpy() / np.sqrt(np.maximum(out["n_pairs_b"].to_numpy() - 1, 1))
        h = np.hypot(ha, hb)
        lcb[tested] = (out["delta"].to_numpy() - h)[tested]
        ucb[tested] = (out["delta"].to_numpy() + h)[tested]
    else:
        q = [50 * (1 - level), 50 * (1 + level)]
        for i in np.flatnonzero(tested):
            w = common[i]
            rng = _class_rng(seed, w)
            d = bootstrap_means(a[w], n_boot, rng) - bootstrap_means(b[w], n_boot, rng)
            lcb[i], ucb[i] = np.nanpercentile(d, q)
    out["lcb"], out["ucb"] = lcb, ucb
    out["significantly_lower"] = tested & (ucb < 0)
    out["significantly_higher"] = tested & (lcb > 0)
    out.attrs.update(method=method, min_pairs=min_pairs, n_boot=n_boot if method == "bootstrap"
                     else None, seed=seed, level=level)
    return out


def summarize_comparison(cmp: pd.DataFrame) -> dict[str, Any]:
    """Counts and shares over tested classes: lower (UCB < 0), higher (LCB > 0), delta < 0."""
    t = cmp[cmp["tested"]]
    n = len(t)
    share = (lambda k: k / n) if n else (lambda k: float("nan"))
    n_low, n_high = int(t["significantly_lower"].sum()), int(t["significantly_higher"].sum())
    return {"n_common": int(len(cmp)), "n_tested": n, "n_lower": n_low, "n_higher": n_high,
            "share_lower": share(n_low), "share_higher": share(n_high),
            "share_delta_negative": share(int((t["delta"] < 0).sum())),
            "mean_delta": float(t["delta"].mean()) if n else float("nan"),
            "method": cmp.attrs.get("method", "")}


@dataclass
class DatasetComparison:
    """Two datasets compared class by class (``compare_datasets``): per-class pairwise stats of
    each (column ``dataset``), the per-class delta of a − b with intervals, its summary and the
    pooled histogram values of each on their common classes (column ``dataset``)."""

    stats: pd.DataFrame
    comparison: pd.DataFrame
    summary: dict[str, Any]
    pooled: pd.DataFrame


def compare_datasets(a: Mapping[str, np.ndarray], b: Mapping[str, np.ndarray],
                     names: tuple[str, str] = ("LAIONet", "ImageNet"), method: str = "bootstrap",
                     min_pairs: int = 7, n_boot: int = 1000, seed: int = 0,
                     n_values: int = 100) -> DatasetComparison:
    """Stage 05's comparison of two datasets' class embeddings: ``pairwise_stats`` of each,
    ``compare_classes`` (a − b), ``summarize_comparison`` and ``pooled_resample`` (up to
    ``n_values`` pairs per class, on the classes both have)."""
    groups = dict(zip(names, (a, b)))
    stats = pd.concat([pairwise_stats(g).assign(dataset=d) for d, g in groups.items()],
                      ignore_index=True)
    cmp = compare_classes(a, b, method=method, min_pairs=min_pairs, n_boot=n_boot, seed=seed)
    common = sorted(set(a) & set(b))
    pooled = pd.concat([pooled_resample(g, n_values, seed, classes=common).assign(dataset=d)
                        for d, g in groups.items()], ignore_index=True)
    return DatasetComparison(stats, cmp, summarize_comparison(cmp), pooled)


def spearman(x: Sequence[float], y: Sequence[float]) -> tuple[float, float, int]:
    """(rho, p-value, n) over the pairs where both values are finite."""
    from scipy.stats import spearmanr

    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 3:
        return float("nan"), float("nan"), int(ok.sum())
    res = spearmanr(x[ok], y[ok])
    return float(res.statistic), float(res.pvalue), int(ok.sum())


def group_by_class(emb: np.ndarray, labels: Sequence[str] | np.ndarray) -> dict[str, np.ndarray]:
    """{wnid: rows of ``emb``} in sorted wnid order, rows kept in their given order."""
    labels = np.asarray(labels)
    order = np.argsort(labels, kind="stable")
    uniq, start = np.unique(labels[order], return_index=True)
    bounds = list(start) + [len(order)]
    return {str(w): emb[order[bounds[i]:bounds[i + 1]]] for i, w in enumerate(uniq)}
