"""Figures of stage 01 (synset matching) from its products."""

import numpy as np
import pandas as pd

from laionet.jobs.match_parts import STATUSES
from laionet.plots.style import finish, panel, plt


def class_coverage(class_counts: pd.DataFrame) -> plt.Figure:
    """Classes per status: matched, or why no caption can match them."""
    status = class_counts["status"].value_counts().reindex(list(STATUSES)).dropna().astype(int)
    ax = panel((6.5, 2.6))
    ax.barh(status.index[::-1], status.values[::-1],
            color=["tab:blue" if s == "matched" else "tab:gray" for s in status.index[::-1]])
    for i, v in enumerate(status.values[::-1]):
        ax.text(v, i, f" {v}", va="center")
    return finish(ax, False, xlabel="classes")


def matches_per_class(class_counts: pd.DataFrame) -> plt.Figure:
    """Matching captions per class by rank (log scale): all, and the single-label ones."""
    cc = class_counts.sort_values("n_rows", ascending=False).reset_index(drop=True)
    rank = np.arange(1, len(cc) + 1)
    ax = panel((6.5, 3.2))
    ax.plot(rank, cc["n_rows"].clip(lower=0.8), label="all matching captions")
    ax.plot(rank, cc["n_single_label"].clip(lower=0.8), label="single-label captions")
    return finish(ax, yscale="log", xlabel="class rank", ylabel="captions")


def lemma_counts(counts: pd.DataFrame, top: int = 25) -> plt.Figure:
    """The ``top`` most frequent lemmas; how many lemmas of a class ever match (stage 01)."""
    best = counts.sort_values("n_rows", ascending=False).head(top)
    fig, axes = plt.subplots(1, 2, figsize=(9, 4.2))
    axes[0].barh(best["lemma"][::-1], best["n_rows"][::-1].clip(lower=0.8))
    axes[0].set(xscale="log", xlabel="captions containing the lemma")
    hits = counts.assign(hit=counts["n_rows"] > 0).groupby("wnid")["hit"].sum()
    axes[1].hist(hits, bins=np.arange(hits.max() + 2) - 0.5)
    axes[1].set(xlabel="lemmas of a class that match at least once", ylabel="classes")
    return fig


def multi_label(share: float, classes_per_caption: pd.Series) -> plt.Figure:
    """Single- vs multi-label share of matching captions; captions per number of classes matched."""
    fig, axes = plt.subplots(1, 2, figsize=(8, 3))
    axes[0].bar(["single-label", "multi-label"], [1 - share, share], color=["tab:blue", "tab:orange"])
    axes[0].set_ylabel("share of matching captions")
    counts = classes_per_caption.sort_index()
    axes[1].bar(counts.index.astype(str), counts.values)
    axes[1].set(yscale="log", xlabel="classes matched by one caption", ylabel="captions")
    return fig
