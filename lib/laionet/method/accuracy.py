"""The paper's accuracy aggregations (spec A12), on the long per-image results table.

Input: one row per (image, model): ``dataset, model, wnid`` (true class), ``correct1``,
``correct5`` (bool, null = image not evaluated). Everything is a pandas groupby.

Definitions (exact, as in the authors' ``utils/calc_utils.py``):
- recall_y = #True / n_y over the rows of class y with a non-null value; classes with n_y = 0
  are skipped;
- se_y = (Wilson 95 % CI upper - lower) / 2 / 1.96;
- equally weighted accuracy = mean_y recall_y, SE = sqrt(sum se_y^2) / #classes;
- LAION-weighted accuracy = sum w_y recall_y / sum w_y over the classes with a recall, where
  w_y is the LAIONet class frequency; SE = sqrt(sum (w_y se_y)^2) / sum w_y.
"""

from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
from statsmodels.stats.proportion import proportion_confint

from laionet.paper import PAPER_GAP_MODEL, PAPER_RECALL_MODELS

KS = (1, 5)


def wilson_interval(n_correct, n, alpha: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """The Wilson interval (lo, hi) of a proportion n_correct / n."""
    lo, hi = proportion_confint(np.asarray(n_correct), np.asarray(n), alpha=alpha, method="wilson")
    return np.asarray(lo, dtype=float), np.asarray(hi, dtype=float)


def wilson_se(n_correct, n, alpha: float = 0.05) -> np.ndarray:
    """Per-class standard error: half the Wilson interval width divided by 1.96 (A12)."""
    lo, hi = wilson_interval(n_correct, n, alpha)
    return (hi - lo) / 2 / 1.96


def per_class_recall(results: pd.DataFrame, k: int = 1,
                     keys: Iterable[str] | None = None) -> pd.DataFrame:
    """Recall@k per (dataset, model, class) over the rows with a non-null ``correct<k>``;
    ``keys`` restricts the classes (the paper's ImageNet "projection" onto the LAIONet keys).
    Columns dataset, model, wnid, k, n, n_correct, recall, se."""
    col = f"correct{k}"
    missing = [c for c in ("dataset", "model", "wnid", col) if c not in results.columns]
    if missing:
        raise KeyError(f"per_class_recall: missing column(s) {missing}; it has "
                       f"{list(results.columns)}. Expected the long results table of "
                       "laionet.evaluation (one row per image and model).")
    df = results[["dataset", "model", "wnid", col]]
    if keys is not None:
        df = df[df["wnid"].isin(pd.Index(list(keys)))]
    df = df[df[col].notna()]
    hit = df[col].astype(bool).astype(np.int64)
    g = hit.groupby([df["dataset"], df["model"], df["wnid"]], sort=True, observed=True)
    out = pd.DataFrame({"n": g.size(), "n_correct": g.sum()}).reset_index()
    out["recall"] = out["n_correct"] / out["n"]
    out["se"] = wilson_se(out["n_correct"].to_numpy(), out["n"].to_numpy())
    out.insert(3, "k", k)
    return out


def equally_weighted(recalls: pd.DataFrame) -> pd.DataFrame:
    """Mean per-class recall per (dataset, model, k), with SE sqrt(sum se^2) / #classes."""
    g = recalls.assign(se2=recalls["se"] ** 2).groupby(["dataset", "model", "k"], sort=True)
    out = g.agg(accuracy=("recall", "mean"), se2=("se2", "sum"), n_classes=("wnid", "size"))
    out["se"] = np.sqrt(out.pop("se2")) / out["n_classes"]
    return out.reset_index().assign(weighting="equal")


def laion_weighted(recalls: pd.DataFrame, class_freq: Mapping[str, float] | pd.Series) -> pd.DataFrame:
    """Recall weighted by LAIONet class frequency, renormalised over the classes present; classes
    absent from ``class_freq`` weigh 0 (as in the paper), all-zero weights give NaN."""
    w = pd.Series(class_freq, dtype=float)
    df = recalls.assign(w=recalls["wnid"].map(w).fillna(0.0).to_numpy())
    df = df.assign(wr=df["w"] * df["recall"], wse2=(df["w"] * df["se"]) ** 2)
    g = df.groupby(["dataset", "model", "k"], sort=True)
    out = g.agg(wsum=("w", "sum"), wr=("wr", "sum"), wse2=("wse2", "sum"),
                n_classes=("w", lambda s: int((s > 0).sum())))
    wsum = out["wsum"].where(out["wsum"] > 0)
    out["accuracy"] = out["wr"] / wsum
    out["se"] = np.sqrt(out["wse2"]) / wsum
    return out[["accuracy", "se", "n_classes"]].reset_index().assign(weighting="laion")


def class_frequency(wnids: pd.Series | Iterable[str]) -> pd.Series:
    """Relative frequency of each class in LAIONet (count / total), sorted descending."""
    counts = pd.Series(list(wnids) if not isinstance(wnids, pd.Series) else wnids).value_counts()
    return (counts / counts.sum()).rename("relative_frequency").rename_axis("wnid")


def accuracy_table(results: pd.DataFrame, class_freq: Mapping[str, float] | pd.Series | None = None,
                   projections: Mapping[str, Iterable[str]] | None = None,
                   intersection: bool = False, ks: Iterable[int] = KS) -> pd.DataFrame:
    """Accuracy and se of every (dataset, model, k, weighting), as in the paper's plots; see
    ``per_class_recalls`` for ``projections`` and ``intersection`` (fix of E.6; paper: off)."""
    recalls = per_class_recalls(results, projections=projections, intersection=intersection, ks=ks)
    parts = [equally_weighted(recalls)]
    if class_freq is not None:
        parts.append(laion_weighted(recalls, class_freq))
    return pd.concat(parts, ignore_index=True)[["dataset", "model", "k", "weighting", "accuracy",
                                                "se", "n_classes"]]


def per_class_recalls(results: pd.DataFrame, projections: Mapping[str, Iterable[str]] | None = None,
                      intersection: bool = False, ks: Iterable[int] = KS) -> pd.DataFrame:
    """per_class_recall for every k, each dataset restricted to ``projections[dataset]`` (paper:
    ImageNet onto the LAIONet keys); ``intersection``: per (model, k) only the classes with a
    recall in every dataset of that model."""
    frames = []
    for dataset, rows in results.groupby("dataset", sort=True):
        keys = (projections or {}).get(dataset)
        frames += [per_class_recall(rows, k, keys=keys) for k in ks]
    recalls = pd.concat(frames, ignore_index=True)
    if not intersection:
        return recalls
    n_ds = recalls.groupby(["model", "k"])["dataset"].transform("nunique")
    n_have = recalls.groupby(["model", "k", "wnid"])["dataset"].transform("nunique")
    return recalls[n_have == n_ds].reset_index(drop=True)


def drops_table(acc: pd.DataFrame, high: str = "ImageNet", low: str = "LAIONet") -> pd.DataFrame:
    """Per model and k: accuracy on both datasets and the drop ``high - low`` (per weighting)."""
    wide = acc.pivot_table(index=["model", "k", "weighting"], columns="dataset",
                           values=["accuracy", "se", "n_classes"], aggfunc="first")
    wide.columns = [f"{v}_{d}" for v, d in wide.columns]
    wide = wide.reset_index()
    if f"accuracy_{high}" in wide and f"accuracy_{low}" in wide:
        wide["drop"] = wide[f"accuracy_{high}"] - wide[f"accuracy_{low}"]
        # Independent samples: the SE of a difference adds in quadrature.
        wide["drop_se"] = np.hypot(wide[f"se_{high}"], wide[f"se_{low}"])
    return wide


def _per_class(recalls: pd.DataFrame, model: str, k: int, min_images: int, values) -> pd.DataFrame:
    """One model's recalls at k (classes with >= min_images) as class x dataset, complete rows."""
    sub = recalls[(recalls["model"] == model) & (recalls["k"] == k) & (recalls["n"] >= min_images)]
    return sub.pivot(index="wnid", columns="dataset", values=values).dropna()


def class_gaps(recalls: pd.DataFrame, model: str, k: int = 5, high: str = "ImageNet",
               low: str = "LAIONet", min_images: int = 10) -> pd.DataFrame:
    """Per-class recall gap ``low - high`` for one model (classes with >= min_images on both)."""
    wide = _per_class(recalls, model, k, min_images, "recall")
    if high not in wide or low not in wide:
        return pd.DataFrame(columns=["wnid", low, high, "gap"])
    wide["gap"] = wide[low] - wide[high]
    return wide[[low, high, "gap"]].sort_values("gap").reset_index()


def per_class_significance(recalls: pd.DataFrame, model: str, ks: Iterable[int] = KS,
                           high: str = "ImageNet", low: str = "LAIONet",
                           min_images: int = 1) -> pd.DataFrame:
    """B4 (A13's per-class table): per k, on the classes both datasets evaluated (>= ``min_images``
    each), how many have ``low``'s recall significantly lower / higher than ``high``'s (A13 gives
    the counts, not the test: here delta ± 1.96·sqrt(se_low² + se_high²), Wilson SEs of A12,
    below / above 0), and the share with a positive difference."""
    rows = []
    for k in ks:
        wide = _per_class(recalls, model, k, min_images, ["recall", "se"])
        n = len(wide)
        if n and {high, low} <= set(wide["recall"].columns):
            d = wide["recall"][low] - wide["recall"][high]
            h = 1.96 * np.hypot(wide["se"][low], wide["se"][high])
            lower, higher, pos = int((d + h < 0).sum()), int((d - h > 0).sum()), float((d > 0).mean())
        else:
            n, lower, higher, pos = 0, 0, 0, float("nan")
        rows.append({"model": model, "k": k, "n_classes": n, "n_lower": lower,
                     "share_lower": lower / n if n else float("nan"), "n_higher": higher,
                     "share_higher": higher / n if n else float("nan"),
                     "share_delta_positive": pos})
    return pd.DataFrame(rows)


@dataclass
class Summary:
    """Stage 04's aggregation, ImageNet projected onto the LAIONet keys: LAIONet class frequencies
    (None without LAIONet rows), accuracies and drops (+ each model's group), recalls."""

    freq: pd.Series | None
    acc: pd.DataFrame
    drops: pd.DataFrame
    recalls: pd.DataFrame


def summarize(results: pd.DataFrame, laionet_wnids: pd.Series | Sequence[str], keys: Iterable[str],
              groups: Mapping[str, str] | None = None, intersection: bool = False) -> Summary:
    """The paper's accuracies (spec A12) of a results table: LAION weights from the class of
    every LAIONet row (``laionet_wnids``), ImageNet projected onto ``keys``; ``intersection``
    restricts both datasets to the classes present in both (fix of E.6)."""
    freq = class_frequency(laionet_wnids) if len(laionet_wnids) else None
    projections = {"ImageNet": list(keys)}
    acc = accuracy_table(results, class_freq=freq, projections=projections,
                         intersection=intersection)
    recalls = per_class_recalls(results, projections=projections, intersection=intersection)
    acc["group"] = acc["model"].map(dict(groups or {}))
    drops = drops_table(acc)
    drops["group"] = drops["model"].map(dict(groups or {}))
    return Summary(freq, acc, drops, recalls)


def result_counts(results: pd.DataFrame) -> pd.DataFrame:
    """Rows and evaluated rows (non-null top-1) per dataset and model."""
    return results.groupby(["dataset", "model"])["correct1"].agg(rows="size", evaluated="count")


def describe(summary: Summary, results: pd.DataFrame, keys: Sequence[str]) -> str:
    """Markdown: how many classes each side has, then each model's drop from ImageNet to
    LAIONet (equally weighted classes) with its 95 % interval."""
    with_images = summary.recalls.groupby("dataset")["wnid"].nunique()
    text = (f"ImageNet keys: {len(keys)}; ImageNet classes with images: "
            f"{with_images.get('ImageNet', 0)}; LAIONet classes with images: "
            f"{with_images.get('LAIONet', 0)}.")
    d = summary.drops
    eq = d[(d["weighting"] == "equal") & d["drop"].notna()] if "drop" in d else d[:0]
    if not len(eq):
        return text
    n = results.groupby("dataset")["image_key"].nunique()
    lines = [f"- **{r.model}** top-{r.k}: ImageNet {r.accuracy_ImageNet:.3f} \u2192 LAIONet "
             f"{r.accuracy_LAIONet:.3f}, drop {r.drop:+.3f} \u00b1 {1.96 * r.drop_se:.3f} (95 %)"
             for r in eq.itertuples()]
    return (f"{text}\n\nDrop from ImageNet ({n['ImageNet']} images) to LAIONet ({n['LAIONet']} "
            "images), equally weighted classes:\n\n" + "\n".join(lines))


def pick_models(acc: pd.DataFrame, wanted: Sequence[str] = PAPER_RECALL_MODELS,
                n: int = 4) -> list[str]:
    """The models of ``wanted`` (blanks dropped) that ``acc`` evaluated, in ``wanted``'s order;
    when none was (the demo world's own models), the first ``n`` models of ``acc``."""
    have = list(dict.fromkeys(acc["model"]))
    return [m for m in wanted if m and m in have] or have[:n]


def pick_gap_model(acc: pd.DataFrame, wanted: str = PAPER_GAP_MODEL,
                   recall_models: Sequence[str] = ()) -> str:
    """``wanted`` when ``acc`` evaluated it (the paper: vit-base-patch16-224), else the first of
    ``recall_models``, else the first model of ``acc``."""
    have = list(dict.fromkeys(acc["model"]))
    if wanted and wanted in have:
        return wanted
    return next(iter(recall_models), have[0] if have else wanted)
