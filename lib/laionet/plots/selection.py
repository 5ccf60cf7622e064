"""Figures of stage 02 (B1-B3 and the demo's threshold calibration)."""

import numpy as np
import pandas as pd

from laionet.plots.style import finish, panel, plt


def similarity_threshold_figure(histogram, curves: pd.DataFrame, threshold: float):
    """B1: the similarity histogram, classes with >= 1 row and dataset size vs the threshold."""
    fig, ax = plt.subplots(1, 3, figsize=(11, 3))
    ax[0].stairs(histogram[0], histogram[1], fill=True, color="tab:blue")
    ax[0].axvline(threshold, c="k", ls="--", label=f"threshold {threshold}")
    finish(ax[0], xlabel="text-to-synset similarity", ylabel="rows")
    for a, col, label in ((ax[1], "n_classes", "classes with >= 1 row"), (ax[2], "n_rows", "dataset size")):
        a.plot(curves["threshold"], curves[col])
        a.axvline(threshold, c="k", ls="--")
        a.set(xlabel="threshold", ylabel=label)
    ax[2].set_yscale("log")
    return fig


def calibration_figure(curve: pd.DataFrame, threshold: float):
    """Precision and recall of true rows against the threshold (demo truth)."""
    ax = panel((5, 3))
    ax.plot(curve["threshold"], curve["precision"], label="precision (truth)")
    ax.plot(curve["threshold"], curve["recall_of_true_rows"], label="recall of true rows")
    ax.axvline(threshold, c="k", ls="--", label=f"threshold {threshold}")
    return finish(ax, xlabel="threshold", ylabel="share")


def lemma_histograms_figure(long: pd.DataFrame, per_lemma: pd.Series, threshold: float):
    """B2: one similarity histogram per lemma of a class that matched at least one row."""
    shown = [lem for lem in per_lemma.index if per_lemma[lem] > 0]
    n = max(len(shown), 1)
    fig, axes = plt.subplots(1, n, figsize=(2.6 * n, 2.6), sharex=True, squeeze=False)
    bins = np.linspace(np.nanmin(long["similarity"]), np.nanmax(long["similarity"]), 25)
    for a, lem in zip(axes[0], shown):
        a.hist(long.loc[long["lemma"] == lem, "similarity"], bins=bins, color="tab:blue")
        a.axvline(threshold, c="k", ls="--")
        a.set(title=f"{lem} ({per_lemma[lem]})", xlabel="similarity")
    return fig


def class_frequency_figure(freq: pd.DataFrame):
    """B3: relative frequency of LAIONet's classes by rank, log scale."""
    ax = panel((6, 3))
    ax.plot(np.arange(1, len(freq) + 1), freq["rel_freq"], ".-")
    return finish(ax, False, xlabel="class rank", ylabel="relative frequency", yscale="log")


def summary_table(summary: dict) -> pd.DataFrame:
    """A summary dict as a two-column table (quantity, value), in its order."""
    return pd.DataFrame({"quantity": list(summary), "value": list(summary.values())}).astype(str)
