"""Intra-class image-image similarity and the one per-class comparison (A14-A16, B10-B12, A21;
E.9, E.10), over unit-norm embeddings grouped by class ({wnid: float32 [n, d]}): the statistic is
the mean cosine over the lower triangle of E·Eᵀ (every pair of distinct images)."""

import zlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd


def sample_per_class(df: pd.DataFrame, n: int = 100, seed: int = 0, key: str = "image_key",
                     label: str = "wnid", paper_first_n: bool = False) -> pd.DataFrame:
    """Up to ``n`` rows per class: the lowest priorities of a seeded hash of the key (E.9:
    reproducible, order-free, nested in n), or the first n (``paper_first_n``, as the authors, A14)."""
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
    out.attrs.update(df.attrs, sample_seed=None if paper_first_n else int(seed), sample_n=int(n),
                     sample_rule="first_n" if paper_first_n else "seeded_hash_permutation")
    return out


def pair_count(n: int | np.ndarray) -> int | np.ndarray:
    return n * (n - 1) // 2


def pair_moments(E: np.ndarray) -> tuple[int, float, float]:
    """(n_pairs, sum, sum of squares) of the lower-triangle similarities, exactly, from the smaller
    Gram matrix: memory O(min(n, d)²) however large the class."""
    E = np.asarray(E, dtype=np.float64)
    diag, s = np.einsum("ij,ij->i", E, E), E.sum(axis=0)
    gram = E @ E.T if len(E) <= E.shape[1] else E.T @ E
    total_sq = float(np.einsum("ij,ij->", gram, gram))
    return pair_count(len(E)), (float(s @ s) - diag.sum()) / 2, (total_sq - (diag**2).sum()) / 2


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


def class_rng(seed: int, wnid: str) -> np.random.Generator:
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
    """A15's pooled histogram values: per class, min(#pairs, n_values) similarities drawn with
    replacement, seeded per class (``n_values``: a number or wnid -> number)."""
    if classes is None:
        classes = n_values.keys() if isinstance(n_values, Mapping) else emb_by_class.keys()
    parts, names = [], []
    for w in sorted(classes):
        E = emb_by_class[w]
        cap = n_values[w] if isinstance(n_values, Mapping) else n_values
        k = int(min(pair_count(len(E)), cap))
        if k > 0:
            parts.append(sample_pairs(E, k, class_rng(seed, w)))
            names.append(np.full(k, w, dtype=object))
    if not parts:
        return pd.DataFrame({"wnid": pd.Series(dtype=object), "similarity": pd.Series(dtype=float)})
    return pd.DataFrame({"wnid": np.concatenate(names), "similarity": np.concatenate(parts)})


def bootstrap_means(E: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Mean pairwise similarity of ``n_boot`` resamples of the class's IMAGES (E.10), a repeated
    image never paired with itself: (wᵀGw − Σ w_i² G_ii) / (n² − Σ w_i²) for resample counts w."""
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


def value_stats(df: pd.DataFrame, col: str, class_col: str = "wnid") -> pd.DataFrame:
    """Per class: n_images, n_pairs (= n_images: one value an image), mean and std (ddof 1) of a
    per-image value (B19's image-to-synset similarity), as ``compare_classes`` takes them."""
    g = df.groupby(class_col)[col].agg(["size", "mean", "std"])
    return pd.DataFrame({"wnid": g.index, "n_images": g["size"].to_numpy(), "n_pairs":
                         g["size"].to_numpy(), "mean": g["mean"].to_numpy(), "std": g["std"].to_numpy()})


def compare_classes(a: Mapping[str, np.ndarray] | pd.DataFrame,
                    b: Mapping[str, np.ndarray] | pd.DataFrame, method: str = "bootstrap",
                    min_pairs: int = 7, n_boot: int = 1000, seed: int = 0,
                    level: float = 0.95) -> pd.DataFrame:
    """The one per-class comparison (A15, E.10; stages 05, 06, 07, 09): delta = mean_a − mean_b on
    the classes both have, ``tested`` with >= ``min_pairs`` pairs in both. ``a``, ``b``: {wnid:
    embeddings}, or per-class tables (``value_stats``; B19) with ``method="paper"``: mean ±
    1.96·std/sqrt(pairs−1), half-widths in quadrature, as the authors; ``bootstrap``: images
    resampled within each class (E.10), percentile interval of the delta."""
    if method not in CI_METHODS:
        raise ValueError(f"compare_classes: method must be one of {CI_METHODS}, not {method!r}")
    tables = isinstance(a, pd.DataFrame)
    if tables and method != "paper":
        raise ValueError("compare_classes: per-class tables take method='paper' (a bootstrap "
                         "needs the embeddings)")
    if tables:
        common = sorted(set(a["wnid"]) & set(b["wnid"]))
        sa, sb = (t.set_index("wnid").loc[common] for t in (a, b))
    else:
        common = sorted(set(a) & set(b))
        sa, sb = (pairwise_stats({w: g[w] for w in common}).set_index("wnid") for g in (a, b))
    cols = {f"{c}_{x}": s[c].to_numpy() for c in ("n_images", "n_pairs", "mean")
            for x, s in (("a", sa), ("b", sb))}  # n_images_a, n_images_b, n_pairs_a, ...
    out = pd.DataFrame({"wnid": common, **cols})
    out["delta"] = out["mean_a"] - out["mean_b"]
    out["tested"] = (out["n_pairs_a"] >= min_pairs) & (out["n_pairs_b"] >= min_pairs)
    lcb, ucb = np.full(len(out), np.nan), np.full(len(out), np.nan)
    tested = out["tested"].to_numpy()
    if method == "paper":
        h = np.hypot(*(1.96 * s["std"].to_numpy(float)
                       / np.sqrt(np.maximum(s["n_pairs"].to_numpy() - 1, 1)) for s in (sa, sb)))
        lcb[tested] = (out["delta"].to_numpy() - h)[tested]
        ucb[tested] = (out["delta"].to_numpy() + h)[tested]
    else:
        q = [50 * (1 - level), 50 * (1 + level)]
        for i in np.flatnonzero(tested):
            w, rng = common[i], class_rng(seed, common[i])
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
