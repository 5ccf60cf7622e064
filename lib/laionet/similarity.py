"""Intra-class image-image similarity (paper_spec A14-A16, B10-B12, A21).

Per class, the statistic is the mean cosine similarity over the strictly lower triangle of
E·Eᵀ (every unordered pair of distinct images, the diagonal excluded). Everything here works on
unit-norm embedding matrices grouped by class (``{wnid: float32 [n, d]}``):

- ``embed_dataset``      image embeddings, cached once per dataset and encoder;
- ``sample_per_class``   seeded sampling of up to n images per class (fix of E.9);
- ``pairwise_stats``     n_images, n_pairs, mean, std per class, exact and memory-bounded;
- ``pooled_resample``    the pooled histogram values (A15: min(#pairs, 100) per class);
- ``compare_classes``    per-class delta with the paper's bounds or an image bootstrap (E.10);
- figure helpers         histograms, per-class deltas, proportions, scatter with Spearman rho.
"""

from __future__ import annotations

import hashlib
import os
import re
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from .io import atomic_path, read_json, write_json, write_parquet

Z95 = 1.96


# --------------------------------------------------------------------------------------------
# Embeddings, cached once per dataset and encoder
# --------------------------------------------------------------------------------------------

@dataclass
class ImageEmbeddings:
    """Unit-norm embeddings of one dataset, row i belonging to ``keys[i]``."""

    keys: np.ndarray
    emb: np.ndarray
    encoder: str = ""
    dataset: str = ""

    def by_class(self, labels: Mapping | pd.Series) -> dict[str, np.ndarray]:
        """Group rows by class (``labels``: image key -> wnid); a key without label is an error."""
        lab = pd.Series(labels) if not isinstance(labels, pd.Series) else labels
        wnid = pd.Series(self.keys).map(lab)
        if wnid.isna().any():
            bad = pd.Series(self.keys)[wnid.isna()].head(3).tolist()
            raise KeyError(f"{self.dataset}: {int(wnid.isna().sum())} embedded keys have no "
                           f"class label, e.g. {bad}")
        return group_by_class(self.emb, wnid.to_numpy())


def group_by_class(emb: np.ndarray, labels: Sequence[str] | np.ndarray) -> dict[str, np.ndarray]:
    """{wnid: rows of ``emb``} in sorted wnid order, rows kept in their given order."""
    labels = np.asarray(labels)
    order = np.argsort(labels, kind="stable")
    uniq, start = np.unique(labels[order], return_index=True)
    bounds = list(start) + [len(order)]
    return {str(w): emb[order[bounds[i]:bounds[i + 1]]] for i, w in enumerate(uniq)}


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def image_cache_dir(profile: str) -> Path:
    """runs/<profile>/cache/image_embeddings (shared by stages 05-09; one folder per dataset)."""
    from .paths import stage_output

    return stage_output("cache", profile) / "image_embeddings"


class ImageEmbeddingCache:
    """Append-only embeddings of one (dataset, encoder), keyed by image key (int or str).

    Layout of ``<root>/<dataset>/<encoder name>/``: ``meta.json`` (encoder, dim) and shards
    ``part-<digest>.emb.npy`` (float16, paper_spec E.14) + ``part-<digest>.keys.parquet``
    (column image_key), the keys file written last as the commit mark, both atomically. A crash
    loses at most the shard being written; reruns add only missing keys.
    """

    def __init__(self, root: str | os.PathLike, dataset: str, encoder_name: str):
        self.encoder_name = encoder_name
        self.dir = Path(root) / _safe(dataset) / _safe(encoder_name)
        self._dim: int | None = None
        meta = self.dir / "meta.json"
        if meta.is_file():
            m = read_json(meta)
            if m.get("encoder") != encoder_name:
                raise ValueError(f"{meta}: cache of encoder {m.get('encoder')!r}, not "
                                 f"{encoder_name!r}; use another cache folder")
            self._dim = int(m["dim"])
        self._shards = sorted(self.dir.glob("part-*.keys.parquet"))
        parts = [pq.read_table(p, columns=["image_key"]).column(0).to_numpy() for p in self._shards]
        keys = np.concatenate(parts) if parts else np.zeros(0, dtype=object)
        self._where = pd.DataFrame({
            "shard": np.repeat(np.arange(len(parts)), [len(p) for p in parts]),
            "row": np.concatenate([np.arange(len(p)) for p in parts]) if parts else np.zeros(0, int),
        }, index=pd.Index(keys)).loc[lambda d: ~d.index.duplicated()]

    def __len__(self) -> int:
        return len(self._where)

    def contains(self, keys: Sequence) -> np.ndarray:
        return self._where.index.get_indexer(pd.Index(list(keys))) >= 0 if len(keys) else \
            np.zeros(0, bool)

    def get(self, keys: Sequence) -> np.ndarray:
        """Unit-norm float32 rows aligned to ``keys``; every key must be cached."""
        keys = list(keys)
        pos = self._where.index.get_indexer(pd.Index(keys))
        if (pos < 0).any():
            missing = [k for k, p in zip(keys, pos) if p < 0][:5]
            raise KeyError(f"{self.dir}: {int((pos < 0).sum())} keys not cached, e.g. {missing}")
        out = np.zeros((len(keys), self._dim or 0), np.float32)
        shard = self._where["shard"].to_numpy()[pos]
        row = self._where["row"].to_numpy()[pos]
        for s in np.unique(shard):
            sel = np.flatnonzero(shard == s)
            emb = np.load(_emb_path(self._shards[s]), mmap_mode="r")
            out[sel] = emb[row[sel]]
        return _unit(out)

    def add(self, keys: Sequence, emb: np.ndarray) -> None:
        keys = list(keys)
        if not keys:
            return
        if emb.shape != (len(keys), emb.shape[1]):
            raise ValueError(f"{self.dir}: {len(keys)} keys but embeddings of shape {emb.shape}")
        if self._dim is None:
            self._dim = int(emb.shape[1])
            write_json({"encoder": self.encoder_name, "dim": self._dim, "dtype": "float16"},
                       self.dir / "meta.json")
        elif emb.shape[1] != self._dim:
            raise ValueError(f"{self.dir}: cache holds dim {self._dim}, got {emb.shape[1]}")
        digest = hashlib.sha1(repr(keys).encode()).hexdigest()[:16]
        keys_path = self.dir / f"part-{digest}.keys.parquet"
        with atomic_path(_emb_path(keys_path), suffix=".npy") as tmp, open(tmp, "wb") as f:
            np.save(f, np.asarray(emb, np.float16))  # a handle: np.save(path) would add ".npy"
        write_parquet(pa.table({"image_key": keys}), keys_path)
        self._shards.append(keys_path)
        new = pd.DataFrame({"shard": len(self._shards) - 1, "row": np.arange(len(keys))},
                           index=pd.Index(keys))
        self._where = pd.concat([self._where, new]).loc[lambda d: ~d.index.duplicated()]


def _emb_path(keys_path: Path) -> Path:
    return keys_path.with_name(keys_path.name.replace(".keys.parquet", ".emb.npy"))


def _safe(name: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9._+-]+", "_", str(name)).strip("._")
    if not safe:
        raise ValueError(f"{name!r} gives an empty cache folder name")
    return safe


def embed_dataset(encoder: Any, items: Iterable, cache_dir: str | os.PathLike, dataset_name: str,
                  keys: Sequence | None = None, batch_size: int = 64, shard_size: int = 2048,
                  progress: bool = True) -> ImageEmbeddings:
    """Embeddings of a dataset's images, computed once per (dataset, encoder) and cached.

    ``items`` yields ``(key, PIL image)`` or ``(key, wnid, PIL image)`` (``iter_images``,
    ``download.iter_downloaded``). The cache (:class:`ImageEmbeddingCache` under
    ``cache_dir``) gets a shard every ``shard_size`` images, so an interrupted run resumes and
    a rerun embeds nothing. When ``keys`` (the full key list) is given and all are cached,
    ``items`` is not read at all; a lazy ``iter_images`` iterator also skips decoding cached
    files. Returns unit-norm float32 rows aligned to ``keys`` (or to the order of ``items``).
    """
    import torch
    from tqdm.auto import tqdm

    cache = ImageEmbeddingCache(cache_dir, dataset_name, encoder.name)
    if keys is not None:
        keys = list(keys)
        if len(set(keys)) != len(keys):
            raise ValueError(f"embed_dataset({dataset_name}): duplicate keys")
        if cache.contains(keys).all():
            return ImageEmbeddings(np.asarray(keys), cache.get(keys), encoder.name, dataset_name)
    order: list | None = None  # the item order, when items is a lazy iter_images
    cached_unread: set = set()
    if hasattr(items, "skip_keys"):  # lazy iter_images: do not even decode cached images
        order = [k for k in items.df["image_key"].tolist() if k not in items.skip_keys]
        cached_unread = {k for k, c in zip(order, cache.contains(order)) if c}
        items.skip_keys |= cached_unread
    seen: list = []
    pending: list = []  # keys embedded but not yet in a shard, with their rows in pend_emb
    pend_emb: list[np.ndarray] = []
    batch_keys: list = []
    batch: list = []
    queued: set = set()

    def flush_batch() -> None:
        if batch:
            pend_emb.append(encoder.embed_images(torch.stack(batch)))
            pending.extend(batch_keys)
            batch.clear()
            batch_keys.clear()

    def flush_shard() -> None:
        flush_batch()
        if pending:
            cache.add(pending, np.concatenate(pend_emb))
            pending.clear()
            pend_emb.clear()

    total = len(items) if hasattr(items, "__len__") else None
    with tqdm(total=total, desc=f"embed {dataset_name}", disable=not progress, unit="img") as bar:
        for item in items:
            key, image = item[0], item[-1]
            seen.append(key)
            bar.update(1)
            if key in queued or cache.contains([key])[0]:
                continue
            queued.add(key)
            batch.append(encoder.preprocess(image))
            batch_keys.append(key)
            if len(batch) >= batch_size:
                flush_batch()
            if len(pending) >= shard_size:
                flush_shard()
        flush_shard()
    if keys is not None:
        out_keys = keys
    elif order is not None:
        read = cached_unread | set(seen)
        out_keys = [k for k in order if k in read]
    else:
        out_keys = list(dict.fromkeys(seen))
    found = cache.contains(out_keys)
    if not found.all():
        missing = [k for k, f in zip(out_keys, found) if not f][:5]
        raise KeyError(f"embed_dataset({dataset_name}): {int((~found).sum())} requested keys "
                       f"were not among the images read, e.g. {missing} (skipped or undecodable "
                       "upstream?)")
    emb = cache.get(out_keys) if out_keys else np.zeros((0, cache._dim or 0), np.float32)
    return ImageEmbeddings(np.asarray(out_keys), emb, encoder.name, dataset_name)


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


def spearman(x: Sequence[float], y: Sequence[float]) -> tuple[float, float, int]:
    """(rho, p-value, n) over the pairs where both values are finite."""
    from scipy.stats import spearmanr

    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 3:
        return float("nan"), float("nan"), int(ok.sum())
    res = spearmanr(x[ok], y[ok])
    return float(res.statistic), float(res.pvalue), int(ok.sum())


# --------------------------------------------------------------------------------------------
# Figures (saved by the notebooks through laionet.figures.save_figure)
# --------------------------------------------------------------------------------------------

def histogram_figure(samples: Mapping[str, np.ndarray], bins: int = 70,
                     xlim: tuple[float, float] = (0.0, 0.99), colors: Mapping[str, str] | None = None,
                     xlabel: str = "intra-class image-image similarity"):
    """Overlaid density histograms (A15: 70 bins, alpha 0.3; LAIONet blue, ImageNet red)."""
    import matplotlib.pyplot as plt

    from .figures import DATASET_COLORS

    colors = {**DATASET_COLORS, **(colors or {})}
    fig, ax = plt.subplots(figsize=(3.4, 2.5))
    edges = np.linspace(*xlim, bins + 1)
    for label, values in samples.items():
        ax.hist(np.asarray(values), bins=edges, density=True, alpha=0.3, label=label,
                color=colors.get(label))
    ax.set(xlim=xlim, xlabel=xlabel, ylabel="pdf")
    ax.legend()
    return fig


def delta_figure(cmp: pd.DataFrame, label_a: str = "LAIONet", label_b: str = "ImageNet"):
    """Sorted per-class delta with each class's OWN interval (not independently sorted bands,
    fix of E.10), zero line and the counts of significantly lower / higher classes."""
    import matplotlib.pyplot as plt

    t = cmp[cmp["tested"]].sort_values("delta", kind="stable").reset_index(drop=True)
    s = summarize_comparison(cmp)
    x = np.arange(len(t))
    fig, ax = plt.subplots(figsize=(4.2, 2.8))
    ax.fill_between(x, t["lcb"], t["ucb"], color="tab:gray", alpha=0.35, lw=0,
                    label=f"per-class {int(100 * cmp.attrs.get('level', 0.95))}% CI "
                          f"({cmp.attrs.get('method', '')})")
    ax.plot(x, t["delta"], color="black", lw=1, label="Δ (sorted)")
    ax.scatter(x[t["significantly_lower"]], t.loc[t["significantly_lower"], "delta"], s=4,
               color="tab:blue", label=f"{label_a} lower: {s['n_lower']}/{s['n_tested']}", zorder=3)
    ax.scatter(x[t["significantly_higher"]], t.loc[t["significantly_higher"], "delta"], s=4,
               color="tab:red", label=f"{label_a} higher: {s['n_higher']}/{s['n_tested']}", zorder=3)
    ax.axhline(0, ls="--", color="gray", lw=0.8)
    ax.set(xlabel="class (sorted by Δ)", ylabel=f"Δ similarity ({label_a} − {label_b})")
    ax.legend(loc="upper left")
    return fig


def proportions_figure(table: pd.DataFrame, x: str, label_a: str = "LAIONet",
                       label_b: str = "ImageNet", kind: str = "bar", ax=None):
    """Share of classes significantly lower (blue) / higher (red) per row of ``table`` (columns
    ``x``, share_lower, share_higher): bars per encoder (App. H) or lines vs a number (§4.1)."""
    import matplotlib.pyplot as plt

    fig = None
    if ax is None:
        fig, ax = plt.subplots(figsize=(3.6, 2.6))
    lo, hi = f"{label_a} < {label_b}", f"{label_a} > {label_b}"
    if kind == "bar":
        pos = np.arange(len(table))
        ax.bar(pos - 0.2, table["share_lower"], 0.4, color="tab:blue", label=lo)
        ax.bar(pos + 0.2, table["share_higher"], 0.4, color="tab:red", label=hi)
        ax.set_xticks(pos, table[x].astype(str), rotation=20, ha="right")
    else:
        ax.plot(table[x], table["share_lower"], "o-", color="tab:blue", label=lo)
        ax.plot(table[x], table["share_higher"], "s-", color="tab:green", label=hi)
        ax.set_xlabel(x.replace("_", " "))
    ax.set(ylabel="proportion of classes", ylim=(0, 1))
    ax.legend()
    return fig if fig is not None else ax.figure


def scatter_figure(x: Sequence[float], y: Sequence[float], xlabel: str, ylabel: str,
                   logx: bool = False, ax=None):
    """Per-class scatter with Spearman's rho (and p, n) in the title."""
    import matplotlib.pyplot as plt

    fig = None
    if ax is None:
        fig, ax = plt.subplots(figsize=(3.4, 2.6))
    rho, p, n = spearman(x, y)
    ax.scatter(x, y, s=8, alpha=0.6, color="tab:blue")
    if logx:
        ax.set_xscale("log")
    ax.set(xlabel=xlabel, ylabel=ylabel, title=f"Spearman ρ = {rho:.3f} (p = {p:.2g}, n = {n})")
    return fig if fig is not None else ax.figure


def encoder_label(spec: str) -> str:
    """A short display name of an image-encoder spec: 'open_clip ViT-B-32', 'timm convnext_base',
    'demo tower' (checkpoint paths left out)."""
    kind, _, rest = spec.partition(":")
    if kind == "demo-tower":
        return "demo tower"
    arch = rest.split(":", 1)[0]
    return f"{kind} {arch}" if arch else kind
