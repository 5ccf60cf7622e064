"""§4.2: an image-to-selection link (A17, B14, B15, B19, C.5). A LAION row is kept when its caption
(text similarity > t) *and* its image (image similarity > i) are similar to its synset text;
lowering t while raising i at a fixed dataset size trades the text link for an image link:
datasets D, C, B, A (strongest to weakest image link), compared with ImageNet. Tables have one
row per LAION row (``wnid``, ``similarity``, ``image_similarity``). E.10: the authors *built*
datasets with ``>`` but *counted* the frontier with ``>=``: ``inclusive`` chooses (ties only)."""

import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from laionet.method.selection import batches, concat_frames, nsfw_mask
from laionet.method.similarity import (class_rng, compare_classes, pairwise_stats,
                                       pooled_resample, summarize_comparison)
from laionet.paper import B19_N_PER_CLASS, PAPER_I_REF, PAPER_PICKS, PAPER_T_REF

TEXT_COL = "similarity"          # stage 02's caption-to-synset-text similarity
IMAGE_COL = "image_similarity"   # this stage's image-to-synset-text similarity
CLASS_COL = "wnid"


def image_to_synset_similarity(image_emb: np.ndarray, class_text_emb: np.ndarray,
                               class_index: np.ndarray, chunk: int = 65_536) -> np.ndarray:
    """Cosine of each image with its own class's synset text (E.13): row-wise (``class_index``:
    each row's class), no n x n logits and no logit scale, ``chunk`` rows at a time."""
    image_emb, class_index = np.asarray(image_emb), np.asarray(class_index)
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
        raise KeyError(f"table lacks column(s) {missing}; it has {list(df.columns)}")


def select(df: pd.DataFrame, t: float, i: float, inclusive: bool = False) -> pd.DataFrame:
    """Rows with text similarity (>|>=) t and image similarity (>|>=) i. NaN always fails."""
    _columns(df, TEXT_COL, IMAGE_COL)
    return df[passes(df[TEXT_COL].to_numpy(), t, inclusive)
              & passes(df[IMAGE_COL].to_numpy(), i, inclusive)]


def reference_count(df: pd.DataFrame, t_ref: float = PAPER_T_REF, i_ref: float = PAPER_I_REF,
                    inclusive: bool = False, unit: str = "rows") -> int:
    """Size of the reference dataset (text t_ref, image i_ref): rows, or classes with >= 1 row.
    The paper's N_ref is 0.82 / 0.20 counted with ``>=`` (``inclusive=True``)."""
    kept = select(df, t_ref, i_ref, inclusive)
    if unit == "rows":
        return len(kept)
    if unit == "classes":
        _columns(df, CLASS_COL)
        return int(kept[CLASS_COL].nunique())
    raise ValueError(f"unit must be 'rows' or 'classes', got {unit!r}")


def threshold_for_count(values: np.ndarray, target: int, inclusive: bool = False,
                        assume_sorted: bool = False) -> tuple[float, int]:
    """(threshold, count) whose kept count #{v (>|>=) threshold} is closest to ``target``, exactly:
    one of the tie boundaries around the ``target``-th largest value (a tie to the larger set)."""
    a = np.asarray(values, dtype=np.float64)
    if not assume_sorted:
        a = np.sort(a[~np.isnan(a)])
    m = len(a)
    if m and target < 0:
        raise ValueError(f"target must be >= 0, got {target}")
    if m == 0 or target == 0:
        return float("inf"), 0
    below_min = float(np.nextafter(a[0], -np.inf))
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
    return v[starts[sizes >= r] + r - 1]


def _frontier(df: pd.DataFrame, text_thresholds: Sequence[float], target: int, unit: str,
              inclusive: bool, min_rows_per_class: int = 1) -> pd.DataFrame:
    _columns(df, TEXT_COL, IMAGE_COL, CLASS_COL)
    text = df[TEXT_COL].to_numpy(dtype=np.float64)
    image = df[IMAGE_COL].to_numpy(dtype=np.float64)
    codes, _ = pd.factorize(df[CLASS_COL], sort=True)
    valid = ~np.isnan(image) & (codes >= 0)
    # Sort once by image similarity; each text threshold is then a mask on the sorted order.
    order = np.argsort(image[valid], kind="stable")
    text_s, image_s, codes_s = text[valid][order], image[valid][order], codes[valid][order]
    rows = []
    for t in text_thresholds:
        mask = passes(text_s, t, inclusive)
        stat = image_s[mask] if unit == "rows" else np.sort(
            _class_order_statistic(codes_s[mask], image_s[mask], min_rows_per_class))
        thr, _ = threshold_for_count(stat, target, inclusive, assume_sorted=True)
        kept = mask & passes(image_s, thr, inclusive)
        n_cls = np.bincount(codes_s[kept], minlength=codes.max() + 1 if len(codes) else 0)
        rows.append({"text_threshold": float(t), "image_threshold": thr,
                     "n_rows": int(kept.sum()),
                     "n_classes": int((n_cls >= min_rows_per_class).sum()),
                     "target": int(target), "unit": unit, "inclusive": bool(inclusive)})
    return pd.DataFrame(rows)


def frontier_fixed_size(df: pd.DataFrame, text_thresholds: Sequence[float], n_ref: int,
                        inclusive: bool = False) -> pd.DataFrame:
    """A17: per text threshold, the image threshold keeping the row count closest to n_ref (the
    exact order statistic, not the authors' golden-section search)."""
    return _frontier(df, text_thresholds, n_ref, "rows", inclusive)


def frontier_fixed_classes(df: pd.DataFrame, text_thresholds: Sequence[float], n_classes_ref: int,
                           inclusive: bool = False, min_rows_per_class: int = 1) -> pd.DataFrame:
    """A17's second frontier: the image threshold keeping the number of classes (with >=
    ``min_rows_per_class`` rows) closest to n_classes_ref."""
    return _frontier(df, text_thresholds, n_classes_ref, "classes", inclusive, min_rows_per_class)


def pick_rows(frontier: pd.DataFrame, picks: dict[str, float] | Sequence[int],
              names: Sequence[str] = ("D", "C", "B", "A"), atol: float = 1e-6) -> pd.DataFrame:
    """The frontier rows of the named datasets: ``picks`` maps name -> text threshold, or lists
    frontier positions (one per name; grid-independent, so the demo's own grid works)."""
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
                   names: Sequence[str] = ("D", "C", "B", "A"), inclusive: bool = False
                   ) -> pd.DataFrame:
    """Datasets A-D as one long table (a row can be in several), filtered with ``>`` on both
    similarities as the authors (A17 step 4)."""
    chosen = pick_rows(frontier, picks, names)
    out = pd.concat([select(df, r.text_threshold, r.image_threshold, inclusive).assign(
        dataset=r.dataset, text_threshold=r.text_threshold, image_threshold=r.image_threshold)
        for r in chosen.itertuples(index=False)], ignore_index=True)
    out["dataset"] = pd.Categorical(out["dataset"], categories=list(chosen["dataset"]))
    return out


def datasets_summary(datasets: pd.DataFrame) -> pd.DataFrame:
    """Per dataset: thresholds, #rows and #classes (the A17 'chosen datasets' table)."""
    return datasets.groupby("dataset", observed=True).agg(
        text_threshold=("text_threshold", "first"), image_threshold=("image_threshold", "first"),
        n_rows=(CLASS_COL, "size"), n_classes=(CLASS_COL, "nunique")).reset_index()


def share_at_or_below(comparisons: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """A17 (c)/(d): per dataset, the share of its classes at or below the reference, from its
    ``compare_classes`` table vs the reference (delta <= 0)."""
    out = pd.DataFrame({"dataset": list(comparisons),
                        "n_classes": [len(c) for c in comparisons.values()],
                        "n_at_or_below": [int((c["delta"] <= 0).sum()) for c in comparisons.values()]})
    out["share_at_or_below"] = out["n_at_or_below"] / out["n_classes"]
    return out


def _check_mode(mode: str) -> None:
    if mode not in ("absolute", "quantile"):
        raise ValueError(f"threshold_mode must be 'absolute' or 'quantile', got {mode!r}")


def text_thresholds(text_similarity: np.ndarray, mode: str, t_ref: float,
                    t_min: float) -> tuple[float, float]:
    """(t_ref, t_min) as similarities: the given values (``absolute``), or those quantiles of the
    SFW candidates' ``text_similarity`` (``quantile``: encoders whose scale differs from CLIP's)."""
    _check_mode(mode)
    if mode == "absolute":
        return float(t_ref), float(t_min)
    values = np.asarray(text_similarity)  # its own dtype: float32 similarities give float32 quantiles
    return float(np.quantile(values, t_ref)), float(np.quantile(values, t_min))


def large_subset(candidates, nsfw_rule: str, mode: str, t_ref: float, t_min: float,
                 inclusive: bool = False) -> tuple[pd.DataFrame, int, float, float]:
    """A17 step 1 over stage 02's candidates (a frame or a table on disk): (the SFW rows above
    t_min, the number of SFW candidates, t_ref, t_min as similarities), streamed."""
    _check_mode(mode)

    def sfw(d: pd.DataFrame) -> np.ndarray:
        return nsfw_mask(d["NSFW"], nsfw_rule) & d[TEXT_COL].notna().to_numpy()

    quantile = mode == "quantile"  # the similarities are held only to take their quantiles
    sims = [d[TEXT_COL].to_numpy() if quantile else np.zeros(len(d), bool)
            for d in batches(candidates, ["NSFW", TEXT_COL], filter=sfw)]
    n_sfw = sum(len(x) for x in sims)
    t_ref_v, t_min_v = text_thresholds(np.concatenate(sims or [np.zeros(0, np.float32)]), mode,
                                       t_ref, t_min)
    del sims
    large = concat_frames(batches(
        candidates, filter=lambda d: sfw(d) & passes(d[TEXT_COL].to_numpy(), t_min_v, inclusive)))
    return large.reset_index(drop=True), n_sfw, t_ref_v, t_min_v


def image_threshold(df: pd.DataFrame, mode: str, i_ref: float, t_ref: float) -> float:
    """The reference image threshold as a similarity; ``quantile``: the ``i_ref`` quantile of
    the image similarity of the rows with text similarity >= ``t_ref``."""
    _check_mode(mode)
    if mode == "absolute":
        return float(i_ref)
    _columns(df, TEXT_COL, IMAGE_COL)
    ref = df.loc[passes(df[TEXT_COL].to_numpy(), t_ref, True), IMAGE_COL].to_numpy()
    if len(ref) == 0:
        raise ValueError(f"no row has text similarity >= t_ref={t_ref:.4f}: lower t_ref")
    return float(np.quantile(ref, i_ref))


@dataclass
class DatasetsVsReference:
    """B15's tables over encoders (``compare_datasets``), and the first encoder's pooled values."""

    per_class: pd.DataFrame
    shares: pd.DataFrame
    avg: pd.DataFrame
    pooled: dict[str, np.ndarray]
    classes: list[str]


def compare_datasets(by_encoder: Mapping[str, tuple[Mapping[str, Mapping[str, np.ndarray]],
                                                    Mapping[str, np.ndarray]]],
                     seed: int = 0, n_values: int = 100,
                     reference_name: str = "ImageNet") -> DatasetsVsReference:
    """B15: per encoder (name -> (datasets A-D as {name: {wnid: embeddings}}, the reference's)),
    each dataset vs the reference (``compare_classes``) on the classes all have (>= 2 images):
    per-class stats, shares at or below, ``n_values`` pooled pair similarities per class."""
    per_class, shares, avg, first = [], [], [], None
    for enc, (by_dataset, reference) in by_encoder.items():
        usable = [{w for w, E in b.items() if len(E) >= 2} for b in by_dataset.values()]
        common = sorted(set(reference).intersection(*usable)) if usable else []
        sub = {name: {w: b[w] for w in common} for name, b in {**by_dataset,
                                                             reference_name: reference}.items()}
        ref = sub.pop(reference_name)
        pooled = {name: pooled_resample(b, n_values, seed)["similarity"].to_numpy()
                  for name, b in {**sub, reference_name: ref}.items()} if common else {}
        first = first or (pooled, common)
        if not common:  # e.g. absolute thresholds on an encoder whose scale they do not fit
            sizes = {name: sum(len(E) for E in b.values()) for name, b in by_dataset.items()}
            warnings.warn(f"{enc}: no class has >= 2 images in every dataset and in "
                          f"{reference_name} (images per dataset: {sizes or 'no dataset'}): nothing "
                          "to compare. An empty dataset usually means its thresholds select nothing "
                          "on this encoder: lower them or use threshold_mode: quantile", stacklevel=2)
            continue
        per_class.append(pd.concat([pairwise_stats(b).assign(dataset=name, encoder=enc)
                                    for name, b in sub.items()], ignore_index=True))
        shares.append(share_at_or_below({name: compare_classes(b, ref, method="paper")
                                         for name, b in sub.items()}
                                        ).assign(encoder=enc, n_common=len(common)))
        avg.append(pd.DataFrame({"encoder": enc, "dataset": list(pooled), "avg_similarity":
                                 [float(np.mean(v)) for v in pooled.values()]}))

    def table(frames: list, columns: str) -> pd.DataFrame:
        return (pd.concat(frames, ignore_index=True) if frames
                else pd.DataFrame(columns=columns.split()))

    return DatasetsVsReference(
        table(per_class, "wnid n_images n_pairs mean std dataset encoder"),
        table(shares, "dataset n_classes n_at_or_below share_at_or_below encoder n_common"),
        table(avg, "encoder dataset avg_similarity"), *(first or ({}, [])))


def coverage(rows: pd.DataFrame, text_thresholds: Sequence[float],
             embed: Callable[[pd.DataFrame], Mapping[str, np.ndarray]],
             reference: Mapping[str, np.ndarray], seed: int = 0, inclusive: bool = False,
             n_values: int = 100) -> pd.DataFrame:
    """Text-only selection at each threshold: rows, classes, average pooled similarity and share
    at or below the reference (``embed(kept)``: {wnid: embeddings}; classes with >= 2 images)."""
    _columns(rows, TEXT_COL, CLASS_COL)
    ref_avg = float(pooled_resample(reference, n_values, seed)["similarity"].mean())
    out = []
    for t in text_thresholds:
        kept = rows[passes(rows[TEXT_COL].to_numpy(), t, inclusive)]
        by = {w: E for w, E in embed(kept).items() if len(E) >= 2}
        share = share_at_or_below({t: compare_classes(by, reference, method="paper")})
        out.append({"text_threshold": float(t), "n_rows": len(kept),
                    "n_classes": kept[CLASS_COL].nunique(),
                    "avg_similarity": float(pooled_resample(by, n_values, seed)["similarity"].mean()),
                    "share_at_or_below": float(share["share_at_or_below"].iloc[0])})
    table = pd.DataFrame(out)
    table.attrs["reference_avg_similarity"] = ref_avg
    return table


def trend(avg: pd.DataFrame, shares: pd.DataFrame, summary: pd.DataFrame) -> dict:
    """The D -> A check (one encoder): per dataset its average similarity, share at or below and
    image threshold, and whether the strongest image link is more homogeneous than the weakest."""
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
                      comparison: pd.DataFrame | None = None) -> dict:
    """B19: image-to-synset similarity of LAIONet vs ImageNet (per-class means, overall means) and
    the per-class comparison's counts (A20)."""
    m = pd.DataFrame({"LAIONet": laionet.groupby(CLASS_COL)[IMAGE_COL].mean(),
                      "ImageNet": imagenet.groupby(CLASS_COL)[IMAGE_COL].mean()}).dropna()
    out = {"n_classes": len(m), "share_laionet_higher": float((m["LAIONet"] > m["ImageNet"]).mean()),
           "mean_laionet": float(laionet[IMAGE_COL].mean()),
           "mean_imagenet": float(imagenet[IMAGE_COL].mean())}
    if comparison is not None:
        out["delta_test"] = summarize_comparison(comparison)
    return out


def lemma_gallery_rows(candidates, wnid: str, lemma: str, n_bins: int = 4,
                       per_bin: int = 5, seed: int = 0) -> pd.DataFrame:
    """B2's image grid: class ``wnid``'s candidate rows matching ``lemma`` (the paper: puma for
    cougar), up to ``per_bin`` drawn in each of ``n_bins`` bins of their text similarity."""
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


def relevance_resample(laionet: pd.DataFrame, imagenet: pd.DataFrame,
                       n_per_class: int = B19_N_PER_CLASS, seed: int = 0) -> pd.DataFrame:
    """B19's histogram sample (A20): ``n_per_class`` LAIONet values per class both have, drawn with
    replacement (the authors' 45,900 = 918 x 50), seeded per class."""
    common = sorted(set(laionet[CLASS_COL]) & set(imagenet[CLASS_COL]))
    by = laionet.groupby(CLASS_COL)[IMAGE_COL]
    parts = [pd.DataFrame({CLASS_COL: w, IMAGE_COL: class_rng(seed, w).choice(
        by.get_group(w).to_numpy(), n_per_class, replace=True)}) for w in common]
    return (pd.concat(parts, ignore_index=True) if parts
            else pd.DataFrame({CLASS_COL: [], IMAGE_COL: []}))
