"""Figures of stage 09 (ImageNet recreated by text search, B18/B20)."""

from collections.abc import Mapping

import numpy as np
import pandas as pd

from laionet.method.similarity import common_resample_sizes, pooled_resample
from laionet.plots.similarity import histogram_figure
from laionet.plots.style import finish, plt


def pooled_histogram(a: Mapping[str, np.ndarray], b: Mapping[str, np.ndarray], label_a: str,
                     label_b: str = "ImageNet", seed: int = 0):
    """Intra-class similarity of two datasets, each class resampled to the same number of pairs."""
    sizes = common_resample_sizes(a, b)
    return histogram_figure({label_a: pooled_resample(a, sizes, seed)["similarity"],
                             label_b: pooled_resample(b, sizes, seed)["similarity"]},
                            colors={label_a: "tab:blue"})


def sweep_figure(sweep: pd.DataFrame, threshold: float):
    """B18 c/d: classes included and the shares of classes significantly lower / higher than
    ImageNet along the caption-to-caption threshold sweep (the chosen threshold dashed)."""
    fig, axes = plt.subplots(1, 2, figsize=(6.8, 2.5))
    axes[0].plot(sweep["threshold"], sweep["n_classes"], "o-", ms=3, color="black")
    axes[0].set(xlabel="caption-to-caption similarity threshold", ylabel="classes included")
    for side, sign, color in (("lower", "<", "tab:blue"), ("higher", ">", "tab:red")):
        axes[1].plot(sweep["threshold"], sweep[f"share_{side}"], "o-", ms=3, color=color,
                     label=f"LAION {sign} ImageNet")
    for ax in axes:
        ax.axvline(threshold, color="gray", ls="--")
    finish(axes[1], xlabel="caption-to-caption similarity threshold", ylabel="share of classes",
           ylim=(0, 1))
    return fig
