"""Figures of stage 07 (the image-to-selection link, B14/B15/B19 and the extensions)."""

from collections.abc import Mapping

import numpy as np
import pandas as pd

from laionet.plots.similarity import histogram_figure
from laionet.plots.style import finish, panel, plt

#: Colours of datasets D (strongest image link), B and A in the B15a histogram.
DATASET_COLORS = {"A": "tab:blue", "B": "tab:green", "D": "tab:red"}


def lemma_gallery_figure(rows: pd.DataFrame, images: Mapping[int, object], threshold: float):
    """B2 (right): the lemma's images, one row per similarity bin, labelled green above the
    threshold, red below, orange across (cells of undownloaded images stay empty)."""
    bins = sorted(rows["bin"].unique()) if len(rows) else []
    ncols = max([int((rows["bin"] == b).sum()) for b in bins] or [1])
    fig, axes = plt.subplots(max(len(bins), 1), ncols, figsize=(1.3 * ncols + 0.8, 1.3 * max(len(bins), 1)),
                             squeeze=False)
    for ax in axes.ravel():
        ax.set_xticks([]), ax.set_yticks([])
        for s in ax.spines.values():
            s.set_visible(False)
    for i, b in enumerate(reversed(bins)):  # highest similarity on top
        g = rows[rows["bin"] == b]
        lo, hi = float(g["bin_lo"].iloc[0]), float(g["bin_hi"].iloc[0])
        color = "tab:green" if lo > threshold else "tab:red" if hi <= threshold else "tab:orange"
        axes[i, 0].set_ylabel(f"[{lo:.2f}, {hi:.2f}]", fontsize=7, color=color)
        for j, key in enumerate(g["key"]):
            if int(key) in images:
                axes[i, j].imshow(images[int(key)])
    return fig


def frontier_figure(fixed_size: pd.DataFrame, fixed_classes: pd.DataFrame):
    """B14: image threshold vs text threshold along the two frontiers."""
    ax = panel()
    for f, fmt, label in ((fixed_size, "o-", "fixed #samples"),
                          (fixed_classes, "s--", "fixed #classes")):
        ax.plot(f["text_threshold"], f["image_threshold"], fmt, ms=3, label=label)
    return finish(ax, xlabel="text-to-synset similarity threshold",
                  ylabel="image-to-synset threshold")


def datasets_histogram(pooled: Mapping[str, np.ndarray], show: tuple[str, ...] = ("A", "B", "D")):
    """B15a: pooled intra-class similarity of datasets A, B and D."""
    return histogram_figure({k: pooled[k] for k in show if k in pooled}, colors=DATASET_COLORS)


def average_similarity_figure(avg: pd.DataFrame, reference: str = "ImageNet"):
    """B15b: average intra-class similarity per dataset (one encoder's), the reference dashed."""
    ax = panel()
    lai = avg[avg["dataset"] != reference]
    ax.plot(lai["dataset"], lai["avg_similarity"], "o-", color="tab:blue", label="LAIONet variants")
    ax.axhline(float(avg.loc[avg["dataset"] == reference, "avg_similarity"].iloc[0]),
               color="tab:red", ls="--", label=f"{reference} avg. sim.")
    return finish(ax, xlabel="dataset (stronger image link to the left)",
                  ylabel="avg. intra-class similarity")


def shares_figure(shares: pd.DataFrame, first_encoder: str):
    """B15c/d: share of classes at or below ImageNet per dataset: first encoder, every encoder."""
    fig, axes = plt.subplots(1, 2, figsize=(6.8, 2.5), sharey=True)
    s0 = shares[shares["encoder"] == first_encoder]
    axes[0].plot(s0["dataset"].astype(str), s0["share_at_or_below"], "o-", color="tab:blue")
    for name, s in shares.groupby("encoder", sort=False):
        axes[1].plot(s["dataset"].astype(str), s["share_at_or_below"], "o-", label=name)
    for ax in axes:
        ax.axhline(0.5, color="gray", ls="--")
        ax.set(xlabel="dataset", ylim=(0, 1))
    axes[0].set(ylabel="share of classes at or below ImageNet", title=first_encoder)
    axes[1].set(title="all encoders")
    axes[1].legend(fontsize=6)
    return fig


def relevance_figure(laionet: np.ndarray, imagenet: np.ndarray):
    """B19: image-to-synset similarity of LAIONet and ImageNet images (60 bins over both)."""
    lo = float(min(np.min(laionet), np.min(imagenet)))
    hi = float(max(np.max(laionet), np.max(imagenet)))
    return histogram_figure({"LAIONet": np.asarray(laionet), "ImageNet": np.asarray(imagenet)},
                            bins=60, xlim=(lo, hi), xlabel="image-to-synset-text similarity")


def coverage_figure(coverage: pd.DataFrame, reference_avg: float | None = None):
    """Extension: classes covered vs avg. intra-class similarity per text threshold, ref. dashed."""
    ax = panel((3.6, 2.6))
    ax.plot(coverage["n_classes"], coverage["avg_similarity"], "o-", color="tab:blue")
    for r in coverage.itertuples():
        ax.annotate(f"{r.text_threshold:.2f}", (r.n_classes, r.avg_similarity), fontsize=6,
                    xytext=(2, 2), textcoords="offset points")
    ref = coverage.attrs["reference_avg_similarity"] if reference_avg is None else reference_avg
    ax.axhline(float(ref), color="tab:red", ls="--", label="ImageNet")
    return finish(ax, xlabel="classes covered", ylabel="avg. intra-class similarity")


def recall_figure(recall: pd.DataFrame):
    """Extension: per-class zero-shot recall@1, LAIONet vs ImageNet, with the diagonal."""
    ax = panel((3.2, 3.0))
    ax.scatter(recall["ImageNet"], recall["LAIONet"], s=8, alpha=0.6)
    ax.plot([0, 1], [0, 1], "k--", lw=0.8)
    return finish(ax, False, xlabel="ImageNet recall@1", ylabel="LAIONet recall@1",
                  xlim=(0, 1.02), ylim=(0, 1.02))
