"""Figures of stage 08 (text alone, B16/B17)."""

import numpy as np
import pandas as pd

from laionet.method.text_alone import cdf
from laionet.plots.style import DATASET_COLORS, finish, panel, plt


def similarity_figure(laionet: np.ndarray, imagenet_captions: np.ndarray):
    """B16: caption-to-synset similarity densities, LAIONet (20 bins) vs ImageNet-Captions (50)."""
    own = np.asarray(imagenet_captions, dtype=np.float64)
    own = own[~np.isnan(own)]
    ax = panel()
    ax.hist(laionet, bins=20, density=True, alpha=0.4, color=DATASET_COLORS["LAIONet"],
            label="LAIONet")
    ax.hist(own, bins=50, density=True, alpha=0.4, color=DATASET_COLORS["ImageNet"],
            label="ImageNet-Captions")
    return finish(ax, xlim=(min(0, float(own.min())), 1), xlabel="text-to-synset similarity",
                  ylabel="pdf")


def false_class_figure(p: np.ndarray, binned: pd.DataFrame, p_at: float = 0.05):
    """B17: (a) the CDF of p, guide lines at ``p_at``; (c) mean p +- 95% band per own-similarity
    bin (``binned_proportion``), the share of captions per bin in red (right axis)."""
    grid = np.linspace(0, 1, 1001)
    curve = cdf(p, grid)
    share = float(cdf(p, [p_at])[0])
    fig, axes = plt.subplots(1, 2, figsize=(6.8, 2.6))
    axes[0].step(grid, curve, where="post", color="black")
    axes[0].axvline(p_at, color="gray", ls="--")
    axes[0].axhline(share, color="gray", ls="--")
    axes[0].set(xlim=(-0.01, 0.4), ylim=(max(0.0, min(0.7, float(curve[0]) - 0.05)), 1.0),
                xlabel="proportion of false classes more similar", ylabel="CDF",
                title=f"{share:.1%} of captions at p <= {p_at}")
    b = binned[binned["n"] > 0]
    axes[1].plot(b["center"], b["mean_p"], color="black")
    axes[1].fill_between(b["center"], b["mean_p"] - b["half_width"], b["mean_p"] + b["half_width"],
                         color="black", alpha=0.2)
    ax2 = axes[1].twinx()
    ax2.plot(b["center"], b["n"] / b["n"].sum(), color="tab:red", lw=0.8)
    ax2.set(ylabel="share of captions", yticks=[])
    axes[1].set(xlabel="caption-to-own-synset similarity", ylabel="mean proportion +- 95% CI")
    return fig
