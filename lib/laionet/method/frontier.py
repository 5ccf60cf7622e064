"""§4.2: introduce an image-to-selection link (paper_spec A17, B14, B15, C.5).

A LAION row is kept when its caption is similar to its synset text (text similarity > t) *and*
its image is similar to the same synset text (image similarity > i). Lowering t while raising i
trades the text link for an image link at a fixed dataset size; the resulting datasets D, C, B,
A (strongest to weakest image link) are compared with ImageNet for intra-class similarity.

Everything here takes plain arrays / DataFrames (one row per LAION row, columns named by the
caller), so it is testable on hand-built tables and runs unchanged on 21M rows.

Comparison rule (spec E.10): the authors *built* datasets with strict ``>`` on both columns but
*counted* the reference and the frontier with ``>=`` in their notebook. Every function takes
``inclusive``: ``False`` (default) is the dataset-creation rule ``>``, ``True`` the notebook's
``>=``. With continuous similarities the two differ only on ties.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from laionet.method.selection import batches, concat_frames, nsfw_mask
from laionet.paper import (B19_MIN_IMAGES, B19_N_PER_CLASS, PAPER_I_REF, PAPER_PICKS, PAPER_T_REF)
from laionet.method.similarity import Z95, _class_rng, pairwise_stats, pooled_resample, summarize_comparison
from laionet.method.accuracy import per_class_recall

TEXT_COL = "similarity"          # stage 02's caption-to-synset-text similarity
IMAGE_COL = "image_similarity"   # this stage's image-to-synset-text similarity
CLASS_COL = "wnid"



def image_to_synset_similarity(image_emb: np.ndarray, class_text_emb: np.ndarray,
                               class_index: np.ndarray, chunk: int = 65_536) -> np.ndarray:
    """Cosine similarity of each image with its own class's synset text (row-wise, spec E.13).

    ``image_emb`` [n, d] and ``class_text_emb`` [C, d] must be L2-normalised (as every
    ``laionet.models`` output is); ``class_index`` [n] gives each row's class row in
    ``class_text_emb``. Unlike the authors' code no n x n logit matrix is formed and no logit
    scale is assumed; memory is bounded by ``chunk`` rows.
    """
    image_emb = np.asarray(image_emb)
    class_index = np.asarray(class_index)
    if image_emb.ndim != 2 or class_text_emb.ndim != 2 or image_emb.shape[1] != class_text_emb.shape[1]:
        raise ValueError(f"embedding shapes do not match: images {image_emb.shape}, "
                         f"class texts {class_text_emb.shape}; use the same encoder's two towers")
    if class_index.shape != (len(image_emb),):
        raise ValueError(f"class_index has shape {class_index.shape}, expected ({len(image_emb)},)")
    bad = (class_index < 0) | (class_index >= len(class_text_emb))
    if bad.any():
        raise ValueError(f"class_index out of range at rows {np.flatnonzero(bad)[:5].tolist()}: "
                         "every row needs a class present in the class table")
    out = np.empty(len(image_emb), dtype=np.float32)
    for s in range(0, len(image_emb), chunk):
        e = slice(s, s + chunk)
        out[e] = np.einsum("ij,ij->i", image_emb[e], class_text_emb[class_index[e]])
    return out


def passes(values: np.ndarray, threshold: float, inclusive: bool = False) -> np.ndarray:
    """values > threshold (``inclusive``: >=); NaN always fails."""
    return values >= threshold if inclusive else values > threshold


def _columns(df: pd.DataFrame, *cols: str) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise KeyError(f"table lacks column(s) {missing}; it has {list(df.columns)} "
                       "(pass text_col=/image_col=/class_col= to name yours)")


def select(df: pd.DataFrame, t: float, i: float, inclusive: bool = False,
           text_col: str = TEXT_COL, image_col: str = IMAGE_COL) -> pd.DataFrame:
    """Rows with text similarity (>|>=) t and image similarity (>|>=) i. NaN always fails."""
    _columns(df, text_col, image_col)
    mask = (passes(df[text_col].to_numpy(), t, inclusive)
            & passes(df[image_col].to_numpy(), i, inclusive))
    return df[mask]


def reference_count(df: pd.DataFrame, t_ref: float = PAPER_T_REF, i_ref: float = PAPER_I_REF,
                    inclusive: bool = False, unit: str = "rows", text_col: str = TEXT_COL,
                    image_col: str = IMAGE_COL, class_col: str = CLASS_COL) -> int:
    """Size of the reference dataset (text t_ref, image i_ref): rows, or classes with >= 1 row.

    The paper's N_ref is 0.82 / 0.20 counted with ``>=`` (``inclusive=True``).
    """
    kept = select(df, t_ref, i_ref, inclusive, text_col, image_col)
    if unit == "rows":
        return len(kept)
    if unit == "classes":
        _columns(df, class_col)
        return int(kept[class_col].nunique())
    raise ValueError(f"unit must be 'rows' or 'classes', got {unit!r}")


def threshold_for_count(values: np.ndarray, target: int, inclusive: bool = False,
                        assume_sorted: bool = False) -> tuple[float, int]:
    """The threshold whose kept count #{v (>|>=) threshold} is closest to ``target``.

    Exact: the achievable counts are the tie boundaries of the sorted values, so the answer is
    one of the two boundaries around the ``target``-th largest value (ties between them go to
    the larger dataset). The returned threshold reproduces the count under the same rule; for
    ``>`` with every value kept it is the float just below the minimum. Returns
    (threshold, count); (+inf, 0) when there are no values.
    """
    a = np.asarray(values, dtype=np.float64)
    if not assume_sorted:
        a = np.sort(a[~np.isnan(a)])
    m = len(a)
    if m == 0:
        return float("inf"), 0
    if target < 0:
        raise ValueError(f"target must be >= 0, got {target}")
    below_min = float(np.nextafter(a[0], -np.inf))
    if target == 0:
        return float("inf"), 0
    if target >= m:
        return (float(a[0]), m) if inclusive else (below_min, m)
    if inclusive:
        # threshold a[m-target] (the target-th largest) keeps >= target rows (ties included);
        # the next distinct value up keeps fewer.
        v = a[m - target]
        hi = (float(v), m - int(np.searchsorted(a, v, "left")))
        up = int(np.searchsorted(a, v, "right"))
        lo = (float(a[up]), m - up) if up < m else (float("inf"), 0)
    else:
        # threshold a[m-target-1] keeps <= target rows; the next distinct value down keeps more.
        v = a[m - target - 1]
        lo = (float(v), m - int(np.searchsorted(a, v, "right")))
        down = int(np.searchsorted(a, v, "left"))
        hi = (float(a[down - 1]), m - down) if down > 0 else (below_min, m)
    return hi if abs(hi[1] - target) <= abs(target - lo[1]) else lo


def _class_order_statistic(classes: np.ndarray, values: np.ndarray, r: int) -> np.ndarray:
    """Per class, the r-th largest value (classes with fewer than r values are left out)."""
    order = np.lexsort((-values, classes))
    c, v = classes[order], values[order]
    starts = np.flatnonzero(np.r_[True, c[1:] != c[:-1]])
    sizes = np.diff(np.r_[starts, len(c)])
    ok = sizes >= r
    return v[starts[ok] + r - 1]


def _frontier(df: pd.DataFrame, text_thresholds: Sequence[float], target: int, unit: str,
              inclusive: bool, text_col: str, image_col: str, class_col: str,
              min_rows_per_class: int = 1) -> pd.DataFrame:
    _columns(df, text_col, image_col, class_col)
    text = df[text_col].to_numpy(dtype=np.float64)
    image = df[image_col].to_numpy(dtype=np.float64)
    codes, _ = pd.factorize(df[class_col], sort=True)
    valid = ~np.isnan(image) & (codes >= 0)
    # Sort once by image similarity; each text threshold is then a mask on the sorted order.
    order = np.argsort(image[valid], kind="stable")
    text_s, image_s, codes_s = text[valid][order], image[valid][order], codes[valid][order]
    rows = []
    for t in text_thresholds:
        mask = passes(text_s, t, inclusive)
        if unit == "rows":
            thr, _ = threshold_for_count(image_s[mask], target, inclusive, assume_sorted=True)
        else:
            stat = np.sort(_class_order_statistic(codes_s[mask], image_s[mask], min_rows_per_class))
            thr, _ = threshold_for_count(stat, target, inclusive, assume_sorted=True)
        kept = mask & passes(image_s, thr, inclusive)
        n_cls = np.bincount(codes_s[kept], minlength=codes.max() + 1 if len(codes) else 0)
        rows.append({"text_threshold": float(t), "image_threshold": thr,
                     "n_rows": int(kept.sum()),
                     "n_classes": int((n_cls >= min_rows_per_class).sum()),
                     "target": int(target), "unit": unit, "inclusive": bool(inclusive)})
    return pd.DataFrame(rows)


def frontier_fixed_size(df: pd.DataFrame, text_thresholds: Sequence[float], n_ref: int,
                        inclusive: bool = False, text_col: str = TEXT_COL,
                        image_col: str = IMAGE_COL, class_col: str = CLASS_COL) -> pd.DataFrame:
    """For each text threshold t, the image threshold i(t) keeping the row count closest to n_ref.

    Replaces the authors' golden-section search (bracket 0.2-1.0) by the exact order statistic.
    Columns: text_threshold, image_threshold, n_rows, n_classes, target, unit, inclusive.
    """
    return _frontier(df, text_thresholds, n_ref, "rows", inclusive, text_col, image_col, class_col)


def frontier_fixed_classes(df: pd.DataFrame, text_thresholds: Sequence[float], n_classes_ref: int,
                           inclusive: bool = False, min_rows_per_class: int = 1,
                           text_col: str = TEXT_COL, image_col: str = IMAGE_COL,
                           class_col: str = CLASS_COL) -> pd.DataFrame:
    """The second frontier of A17: i(t) keeping the number of classes closest to n_classes_ref.

    A class counts when it keeps at least ``min_rows_per_class`` rows, i.e. when its
    ``min_rows_per_class``-th largest image similarity passes i; so this is the same order
    statistic problem over per-class values.
    """
    return _frontier(df, text_thresholds, n_classes_ref, "classes", inclusive, text_col,
                     image_col, class_col, min_rows_per_class)


def pick_rows(frontier: pd.DataFrame, picks: dict[str, float] | Sequence[int],
              names: Sequence[str] = ("D", "C", "B", "A"), atol: float = 1e-6) -> pd.DataFrame:
    """The frontier rows of the named datasets: ``picks`` maps name -> text threshold, or is a
    list of frontier positions (one per name; grid-independent, so the demo's own grid works).
    """
    if isinstance(picks, dict):
        chosen = {}
        for name, t in picks.items():
            hit = np.flatnonzero(np.isclose(frontier["text_threshold"], t, atol=atol, rtol=0))
            if len(hit) == 0:
                raise ValueError(f"dataset {name}: text threshold {t} is not on the frontier grid "
                                 f"{frontier['text_threshold'].round(4).tolist()}")
            chosen[name] = hit[0]
    else:
        picks = list(picks)
        if len(picks) != len(names):
            raise ValueError(f"{len(picks)} picks for {len(names)} names {list(names)}")
        if max(picks) >= len(frontier) or min(picks) < -len(frontier):
            raise ValueError(f"pick positions {picks} outside the frontier's {len(frontier)} rows")
        chosen = dict(zip(names, picks))
    out = frontier.iloc[list(chosen.values())].copy()
    out.insert(0, "dataset", list(chosen))
    return out.reset_index(drop=True)


def build_datasets(df: pd.DataFrame, frontier: pd.DataFrame,
                   picks: dict[str, float] | Sequence[int] = PAPER_PICKS,
                   names: Sequence[str] = ("D", "C", "B", "A"), inclusive: bool = False,
                   text_col: str = TEXT_COL, image_col: str = IMAGE_COL) -> pd.DataFrame:
    """The datasets A-D as one long table: every kept row of ``df`` plus ``dataset``,
    ``text_threshold`` and ``image_threshold`` columns (a row can be in several datasets).

    The authors filtered with ``>`` on both columns (A17 step 4): ``inclusive=False``.
    """
    chosen = pick_rows(frontier, picks, names)
    parts = []
    for rec in chosen.itertuples(index=False):
        sub = select(df, rec.text_threshold, rec.image_threshold, inclusive, text_col, image_col)
        parts.append(sub.assign(dataset=rec.dataset, text_threshold=rec.text_threshold,
                                image_threshold=rec.image_threshold))
    out = pd.concat(parts, ignore_index=True)
    out["dataset"] = pd.Categorical(out["dataset"], categories=list(chosen["dataset"]))
    return out


def datasets_summary(datasets: pd.DataFrame, class_col: str = CLASS_COL) -> pd.DataFrame:
    """Per dataset: thresholds, #rows and #classes (the A17 'chosen datasets' table)."""
    g = datasets.groupby("dataset", observed=True)
    return g.agg(text_threshold=("text_threshold", "first"),
                 image_threshold=("image_threshold", "first"),
                 n_rows=(class_col, "size"), n_classes=(class_col, "nunique")).reset_index()


def share_at_or_below(class_means: pd.DataFrame, reference_means: pd.Series,
                      classes: Sequence[str] | None = None) -> pd.DataFrame:
    """A17 (c)/(d): per dataset, the share of classes whose mean intra-class similarity is
    <= the reference's (ImageNet) mean for the same class.

    ``class_means``: long table (dataset, wnid, mean); ``reference_means``: Series wnid -> mean.
    ``classes`` restricts to a common class set (the paper used the classes present in every
    dataset x encoder); by default each dataset uses its classes shared with the reference.
    Columns: dataset, n_classes, n_at_or_below, share_at_or_below.
    """
    _columns(class_means, "dataset", "wnid", "mean")
    ref = reference_means.rename("reference_mean")
    m = class_means.join(ref, on="wnid", how="inner")
    if classes is not None:
        m = m[m["wnid"].isin(set(classes))]
    m = m.assign(at_or_below=m["mean"] <= m["reference_mean"])
    out = m.groupby("dataset", observed=True, sort=False).agg(n_classes=("wnid", "size"),
                                                  n_at_or_below=("at_or_below", "sum"))
    out["share_at_or_below"] = out["n_at_or_below"] / out["n_classes"]
    return out.reset_index()


def common_classes(*class_sets: Sequence[str]) -> list[str]:
    """Sorted intersection of several class lists (the paper's 887 common classes)."""
    sets = [set(s) for s in class_sets]
    return sorted(set.intersection(*sets)) if sets else []


# --------------------------------------------------------------------------------------------
# Threshold modes: the reference point as similarities, or as quantiles of the data
# --------------------------------------------------------------------------------------------

THRESHOLD_MODES = ("absolute", "quantile")


def _check_mode(mode: str) -> None:
    if mode not in THRESHOLD_MODES:
        raise ValueError(f"threshold_mode must be 'absolute' or 'quantile', got {mode!r}")


def sfw_candidates(candidates: pd.DataFrame, nsfw_rule: str = "paper") -> pd.DataFrame:
    """Stage 02's candidates that pass its NSFW rule and have a text similarity (A17's pool)."""
    _columns(candidates, "NSFW", TEXT_COL)
    return candidates[nsfw_mask(candidates["NSFW"], nsfw_rule)
                      & candidates[TEXT_COL].notna().to_numpy()]


def text_thresholds(text_similarity: np.ndarray, mode: str, t_ref: float,
                    t_min: float) -> tuple[float, float]:
    """The reference and lowest text thresholds (t_ref, t_min) as similarities.

    ``absolute``: the given values. ``quantile``: those quantiles of ``text_similarity`` (the
    SFW candidates' caption-to-synset similarity), for encoders whose scale differs from CLIP's.
    """
    _check_mode(mode)
    if mode == "absolute":
        return float(t_ref), float(t_min)
    values = np.asarray(text_similarity)  # its own dtype: float32 similarities give float32 quantiles
    return float(np.quantile(values, t_ref)), float(np.quantile(values, t_min))


def large_subset(candidates, nsfw_rule: str, mode: str, t_ref: float, t_min: float,
                 inclusive: bool = False) -> tuple[pd.DataFrame, int, float, float]:
    """A17 step 1 over stage 02's candidates (a frame or a table on disk, ``selection.batches``): the
    SFW rows whose text similarity passes t_min, the number of SFW candidates with a similarity,
    and the thresholds (t_ref, t_min) as similarities (``text_thresholds``).

    Only the large subset is held (what is downloaded), never the candidates: ``absolute`` reads
    them once; ``quantile`` first reads the SFW similarities alone (one float32 a row) for the
    quantiles. Equal to ``sfw_candidates`` + ``text_thresholds`` + ``passes`` on the whole table.
    """
    _check_mode(mode)

    def sfw(d: pd.DataFrame) -> np.ndarray:
        return nsfw_mask(d["NSFW"], nsfw_rule) & d[TEXT_COL].notna().to_numpy()

    if mode == "quantile":
        values = np.concatenate([d[TEXT_COL].to_numpy() for d in batches(
            candidates, ["NSFW", TEXT_COL], filter=sfw)] or [np.zeros(0, np.float32)])
        n_sfw = len(values)
        t_ref_v, t_min_v = text_thresholds(values, mode, t_ref, t_min)
        del values
    else:
        n_sfw = 0
        for d in batches(candidates, ["NSFW", TEXT_COL], filter=sfw):
            n_sfw += len(d)
        t_ref_v, t_min_v = text_thresholds(np.zeros(0), mode, t_ref, t_min)
    large = concat_frames(batches(
        candidates, filter=lambda d: sfw(d) & passes(d[TEXT_COL].to_numpy(), t_min_v, inclusive)))
    return large.reset_index(drop=True), n_sfw, t_ref_v, t_min_v


def image_threshold(df: pd.DataFrame, mode: str, i_ref: float, t_ref: float,
                    text_col: str = TEXT_COL, image_col: str = IMAGE_COL) -> float:
    """The reference image threshold as a similarity. ``quantile``: the ``i_ref`` quantile of
    the image similarity of the rows whose text similarity is >= ``t_ref`` (the reference's
    text side), so the reference keeps about 1 - i_ref of its text-selected rows."""
    _check_mode(mode)
    if mode == "absolute":
        return float(i_ref)
    _columns(df, text_col, image_col)
    ref = df.loc[passes(df[text_col].to_numpy(), t_ref, True), image_col].to_numpy()
    if len(ref) == 0:
        raise ValueError(f"no row has text similarity >= t_ref={t_ref:.4f}: lower t_ref")
    return float(np.quantile(ref, i_ref))


# --------------------------------------------------------------------------------------------
# Datasets A-D vs ImageNet: intra-class similarity on the classes all of them have (B15)
# --------------------------------------------------------------------------------------------

@dataclass
class VariantComparison:
    """Intra-class similarity of the datasets A-D and a reference on their common classes.

    ``per_class``: pairwise_stats rows (wnid, n, mean, ...) plus ``dataset``; ``shares``: the
    share of classes at or below the reference per dataset; ``pooled``: dataset (and the
    reference) -> pooled resampled pair similarities; ``classes``: the common classes.
    """

    per_class: pd.DataFrame
    shares: pd.DataFrame
    pooled: dict[str, np.ndarray]
    classes: list[str]

    def averages(self) -> pd.DataFrame:
        """dataset, avg_similarity (mean of the pooled values), in ``pooled`` order."""
        return pd.DataFrame({"dataset": list(self.pooled),
                             "avg_similarity": [float(np.mean(v)) for v in self.pooled.values()]})


def compare_variants(by_dataset: Mapping[str, Mapping[str, np.ndarray]],
                     reference: Mapping[str, np.ndarray], seed: int = 0, n_values: int = 100,
                     reference_name: str = "ImageNet") -> VariantComparison:
    """The datasets A-D (name -> {wnid: embeddings}) vs the reference on the classes every dataset has
    with >= 2 images and the reference has: per-class means, share at or below the reference
    (A17 c/d), and ``n_values`` pooled pair similarities per class for the histograms."""

    common = (common_classes(reference, *[{w for w, E in b.items() if len(E) >= 2}
                                          for b in by_dataset.values()]) if by_dataset else [])
    if not common:  # e.g. absolute thresholds on an encoder whose scale they do not fit
        sizes = {name: sum(len(E) for E in b.values()) for name, b in by_dataset.items()}
        warnings.warn(f"compare_variants: no class has >= 2 images in every dataset and in "
                      f"{reference_name} (images per dataset: {sizes or 'no dataset'}): nothing to "
                      "compare. An empty dataset usually means its thresholds select nothing on "
                      "this encoder: lower them or use threshold_mode: quantile", stacklevel=2)
        return VariantComparison(pd.DataFrame(columns=["wnid", "n_images", "n_pairs", "mean",
                                                       "std", "dataset"]),
                                 pd.DataFrame(columns=["dataset", "n_classes", "n_at_or_below",
                                               "share_at_or_below"]), {}, [])
    ref_stats = pairwise_stats({w: reference[w] for w in common}).set_index("wnid")["mean"]
    per_class = pd.concat([pairwise_stats({w: b[w] for w in common}).assign(dataset=name)
                           for name, b in by_dataset.items()], ignore_index=True)
    shares = share_at_or_below(per_class, ref_stats)
    pooled = {name: pooled_resample(b, n_values, seed, classes=common)["similarity"].to_numpy()
              for name, b in {**by_dataset, reference_name: reference}.items()}
    return VariantComparison(per_class, shares, pooled, common)


def combine(results: Mapping[str, VariantComparison]) -> tuple[pd.DataFrame, pd.DataFrame,
                                                                  pd.DataFrame]:
    """One table each over encoders (encoder name -> ``compare_variants`` result):
    per-class statistics, shares at or below the reference (with ``n_common``) and the
    average similarity per dataset (encoder, dataset, avg_similarity)."""
    # encoders that compared nothing add no rows; when none did, their empty tables (with the
    # columns) are the result
    results = {e: r for e, r in results.items() if r.classes} or dict(results)
    per_class = pd.concat([r.per_class.assign(encoder=e) for e, r in results.items()],
                          ignore_index=True)
    shares = pd.concat([r.shares.assign(encoder=e, n_common=len(r.classes))
                        for e, r in results.items()], ignore_index=True)
    avg = pd.concat([r.averages().assign(encoder=e)[["encoder", "dataset", "avg_similarity"]]
                     for e, r in results.items()], ignore_index=True)
    return per_class, shares, avg


def coverage(rows: pd.DataFrame, text_thresholds: Sequence[float],
             embed: Callable[[pd.DataFrame], Mapping[str, np.ndarray]],
             reference: Mapping[str, np.ndarray], seed: int = 0, inclusive: bool = False,
             n_values: int = 100, text_col: str = TEXT_COL,
             class_col: str = CLASS_COL) -> pd.DataFrame:
    """Text-only selection at each threshold (no image bar): how many classes survive and how
    homogeneous they are. ``embed(kept rows)`` gives {wnid: embeddings} (e.g. a
    ``image_embeddings.ClassSampler``); classes with >= 2 images count.

    Columns: text_threshold, n_rows, n_classes, avg_similarity (pooled ``n_values`` pairs per
    class), share_at_or_below (the reference's class means); ``attrs["reference_avg_similarity"]``
    is the reference's average the same way.
    """

    _columns(rows, text_col, class_col)
    ref_stats = pairwise_stats(reference).set_index("wnid")["mean"]
    ref_avg = float(pooled_resample(reference, n_values, seed)["similarity"].mean())
    out = []
    for t in text_thresholds:
        kept = rows[passes(rows[text_col].to_numpy(), t, inclusive)]
        by = {w: E for w, E in embed(kept).items() if len(E) >= 2}
        share = share_at_or_below(pairwise_stats(by).assign(dataset=f"{t:.4f}"), ref_stats)
        out.append({"text_threshold": float(t), "n_rows": len(kept),
                    "n_classes": kept[class_col].nunique(),
                    "avg_similarity": float(pooled_resample(by, n_values, seed)["similarity"].mean()),
                    "share_at_or_below": float(share["share_at_or_below"].iloc[0]) if len(share)
                    else np.nan})
    table = pd.DataFrame(out)
    table.attrs["reference_avg_similarity"] = ref_avg
    return table


def trend(avg: pd.DataFrame, shares: pd.DataFrame, summary: pd.DataFrame) -> dict:
    """The D -> A check: average similarity, share at or below ImageNet and image threshold per
    dataset in ``summary`` order (one encoder's ``avg`` and ``shares``), and whether the
    strongest image link (first) is more homogeneous than the weakest (last)."""
    order = list(summary["dataset"])
    if not len(avg) or not order:  # no dataset to compare (empty selections): nothing to check
        return {"avg_similarity": {}, "share_at_or_below": {}, "image_threshold": {},
                "homogeneity_decreases": None}
    sim = avg.set_index("dataset").loc[order, "avg_similarity"]
    return {"avg_similarity": sim.round(4).to_dict(),
            "share_at_or_below": shares.set_index("dataset").loc[order, "share_at_or_below"]
            .round(3).to_dict(),
            "image_threshold": summary.set_index("dataset")["image_threshold"].round(4).to_dict(),
            "homogeneity_decreases": bool(sim.iloc[0] > sim.iloc[-1])}


def relevance_summary(laionet: pd.DataFrame, imagenet: pd.DataFrame,
                      col: str = IMAGE_COL, class_col: str = CLASS_COL,
                      comparison: pd.DataFrame | None = None) -> dict:
    """B19: image-to-synset similarity of LAIONet vs ImageNet rows: per-class means compared on
    the classes both have, the overall means and, given ``relevance_comparison``'s table, its
    counts of classes significantly lower / higher."""

    m = pd.DataFrame({"LAIONet": laionet.groupby(class_col)[col].mean(),
                      "ImageNet": imagenet.groupby(class_col)[col].mean()}).dropna()
    out = {"n_classes": len(m), "share_laionet_higher": float((m["LAIONet"] > m["ImageNet"]).mean()),
           "mean_laionet": float(laionet[col].mean()), "mean_imagenet": float(imagenet[col].mean())}
    if comparison is not None:
        out["delta_test"] = summarize_comparison(comparison)
    return out


def lemma_gallery_rows(candidates, wnid: str, lemma: str, n_bins: int = 4,
                       per_bin: int = 5, seed: int = 0) -> pd.DataFrame:
    """B2's image grid: the candidate rows of class ``wnid`` that matched ``lemma`` (the paper:
    puma for cougar), in ``n_bins`` equal-width bins of their text-to-synset similarity, up to
    ``per_bin`` rows of each drawn with ``seed``. Columns key, wnid, URL, similarity, bin,
    bin_lo, bin_hi, by bin then similarity; empty when the lemma has no rows. ``candidates``: a
    frame, or stage 02's candidates file / folder, of which only class ``wnid``'s rows are read,
    batch by batch."""
    cols = ["key", "wnid", "URL", "lemmas", "similarity"]
    candidates = concat_frames(batches(
        candidates, cols, filter=lambda d: (d["wnid"] == wnid).to_numpy()), cols)
    has = candidates["lemmas"].map(lambda ls: ls is not None and lemma in list(ls))
    rows = candidates[candidates["wnid"].eq(wnid) & has & candidates["similarity"].notna()]
    cols = ["key", "wnid", "URL", "similarity", "bin", "bin_lo", "bin_hi"]
    if not len(rows):
        return pd.DataFrame(columns=cols)
    edges = np.linspace(rows["similarity"].min(), rows["similarity"].max(), n_bins + 1)
    b = np.clip(np.searchsorted(edges, rows["similarity"].to_numpy(), "right") - 1, 0, n_bins - 1)
    rows = rows.assign(bin=b, bin_lo=edges[b], bin_hi=edges[b + 1])
    picked = pd.concat([g.sample(min(per_bin, len(g)), random_state=seed)
                        for _, g in rows.groupby("bin")])
    return picked.sort_values(["bin", "similarity"])[cols].reset_index(drop=True)




def relevance_resample(laionet: pd.DataFrame, imagenet: pd.DataFrame, n_per_class: int =
                       B19_N_PER_CLASS, seed: int = 0, col: str = IMAGE_COL,
                       class_col: str = CLASS_COL) -> pd.DataFrame:
    """B19's histogram sample (A20): for every class both have, ``n_per_class`` LAIONet values
    drawn with replacement (the authors' 45,900 = 918 x 50), seeded per class; ImageNet's rows
    stay as they are. Columns wnid and ``col``, classes in sorted order."""

    common = sorted(set(laionet[class_col]) & set(imagenet[class_col]))
    by = laionet.groupby(class_col)[col]
    parts = [pd.DataFrame({class_col: w, col: _class_rng(seed, w).choice(
        by.get_group(w).to_numpy(), n_per_class, replace=True)}) for w in common]
    return (pd.concat(parts, ignore_index=True) if parts
            else pd.DataFrame({class_col: [], col: []}))


def relevance_comparison(laionet: pd.DataFrame, imagenet: pd.DataFrame,
                         min_images: int = B19_MIN_IMAGES, col: str = IMAGE_COL,
                         class_col: str = CLASS_COL) -> pd.DataFrame:
    """B19's per-class delta test (A20): per class and dataset the mean image-to-synset
    similarity ± 1.96·std/sqrt(n − 1), delta = LAIONet − ImageNet with the half-widths in
    quadrature, on the classes both have; ``tested``: >= ``min_images`` on each side. Columns as
    ``similarity.compare_classes`` (``n_pairs_*`` = the image counts), so its summary and
    delta figure apply."""

    g = {name: df.groupby(class_col)[col].agg(["size", "mean", "std"])
         for name, df in (("a", laionet), ("b", imagenet))}
    common = sorted(set(g["a"].index) & set(g["b"].index))
    a, b = g["a"].reindex(common), g["b"].reindex(common)
    out = pd.DataFrame({"wnid": common, "n_images_a": a["size"].to_numpy(),
                        "n_images_b": b["size"].to_numpy()})
    out["n_pairs_a"], out["n_pairs_b"] = out["n_images_a"], out["n_images_b"]
    out["mean_a"], out["mean_b"] = a["mean"].to_numpy(), b["mean"].to_numpy()
    out["delta"] = out["mean_a"] - out["mean_b"]
    out["tested"] = (out["n_images_a"] >= min_images) & (out["n_images_b"] >= min_images)
    h = np.hypot(*(Z95 * s["std"].to_numpy(float) / np.sqrt(np.maximum(s["size"].to_numpy() - 1, 1))
                   for s in (a, b)))
    t = out["tested"].to_numpy()
    out["lcb"] = np.where(t, out["delta"] - h, np.nan)
    out["ucb"] = np.where(t, out["delta"] + h, np.nan)
    out["significantly_lower"] = t & (out["ucb"] < 0)
    out["significantly_higher"] = t & (out["lcb"] > 0)
    out.attrs.update(method="paper", min_pairs=min_images, level=0.95)
    return out


def zero_shot_recall(eval_dir, model: str) -> tuple[pd.DataFrame | None, str]:
    """Per-class recall@1 of stage 04's ``model`` on LAIONet and ImageNet (wnid x dataset), or
    (None, why) when stage 04's results or the model are not there."""
    from pathlib import Path

    files = [Path(eval_dir) / f"results_{d}.parquet" for d in ("laionet", "imagenet")] if eval_dir else []
    if not model or not files or not all(f.is_file() for f in files):
        return None, (f"skipped: zero_shot_model={model!r}, stage 04 results present: "
                      f"{[f.is_file() for f in files]}")
    res = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
    res = res[res["model"] == model]
    if res.empty:
        return None, (f"stage 04 has no model {model!r}: set its zero_shot_encoder, or "
                      "zero_shot_model here to one of its models")
    rec = per_class_recall(res, 1).pivot(index="wnid", columns="dataset", values="recall").dropna()
    return rec, (f"{len(rec)} classes; LAIONet recall lower in "
                 f"{(rec['LAIONet'] < rec['ImageNet']).mean():.1%}")
