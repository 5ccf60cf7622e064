"""Choosing a caption threshold for an encoder other than the paper's CLIP ViT-B/32 (A6, A9).

Two rules, both exact on the candidate table (sort once, search):
- ``class_share_threshold``: the highest threshold that still keeps the paper's share of the
  matched classes (0.82 kept 915 of 978 classes with CLIP);
- ``precision_curve``: where a ground truth exists (the demo world's, ``truth_curve``), the share
  of rows above each threshold that truly show their class, and the share of true rows kept.
"""

from collections.abc import Sequence

import numpy as np
import pandas as pd

from laionet.method.selection import (above, batches, concat_frames, nsfw_mask, sfw_stats,
                                      threshold_curves)
from laionet.paper import PAPER_CLASS_SHARE


def class_share_threshold(candidates, n_matched: int, nsfw_rule: str = "paper",
                          stats: dict | None = None, share: float = PAPER_CLASS_SHARE,
                          n_grid: int = 400) -> dict | None:
    """The highest threshold on a fine grid keeping >= ``share`` of ``n_matched`` classes (the
    paper's: of the classes with any lemma match), the rows it keeps and their share of the
    single-label SFW rows; None when none does. ``stats``: ``sfw_stats``, if already computed."""
    stats = stats or sfw_stats(candidates, nsfw_rule)
    if not stats["n"]:
        return None
    grid = np.linspace(float(stats["min"]), float(stats["max"]), n_grid)
    curves = threshold_curves(candidates, grid, nsfw_rule=nsfw_rule)
    keeps = curves[curves["n_classes"] >= share * n_matched]
    if keeps.empty:
        return None
    last = keeps.iloc[-1]
    return {"threshold": float(last["threshold"]), "n_rows": int(last["n_rows"]),
            "row_share": float(last["n_rows"]) / stats["n_sfw"], "class_share": share}


def precision_curve(similarity: Sequence[float], correct: Sequence[bool],
                    thresholds: Sequence[float]) -> pd.DataFrame:
    """threshold, precision (NaN where no row is above), recall_of_true_rows, n_rows of the rows
    with similarity > threshold, from suffix sums over the rows sorted by similarity."""
    sim, ok = np.asarray(similarity, dtype=np.float64), np.asarray(correct, dtype=bool)
    order = np.argsort(sim, kind="stable")
    suffix = np.concatenate([np.cumsum(ok[order][::-1])[::-1], [0]])  # correct rows in s[i:]
    t = np.asarray(thresholds, dtype=np.float64)
    pos = np.searchsorted(sim[order], t, "right")  # first row strictly above t
    n_above, correct_above = len(sim) - pos, suffix[pos]
    return pd.DataFrame({"threshold": t, "precision": np.where(
        n_above > 0, correct_above / np.maximum(n_above, 1), np.nan),
        "recall_of_true_rows": correct_above / max(int(ok.sum()), 1), "n_rows": n_above})


def truth_curve(candidates, truth: pd.DataFrame, thresholds: Sequence[float], threshold: float,
                nsfw_rule: str = "paper") -> tuple[pd.DataFrame, pd.DataFrame]:
    """Where a ground truth exists (the demo world's: key, kind, true_wnid): the
    ``precision_curve`` of the candidates passing the NSFW rule (a row is correct when its image
    shows its class), and per caption kind the share ``threshold`` keeps. Small worlds only."""
    ok = concat_frames(batches(candidates, ["key", "wnid", "NSFW", "similarity"],
                               filter=lambda d: nsfw_mask(d["NSFW"], nsfw_rule)))
    rows = ok.merge(truth, on="key", how="left")
    kept = rows.assign(kept=above(rows["similarity"], threshold)).groupby("kind")["kept"]
    return (precision_curve(rows["similarity"], rows["true_wnid"].eq(rows["wnid"]), thresholds),
            kept.agg(["mean", "size"]).rename(columns={"mean": "share kept", "size": "rows"}))
