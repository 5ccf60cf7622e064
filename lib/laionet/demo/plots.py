"""Figures of the demo world (notebook 00): each builder returns a matplotlib Figure; the notebook
saves it with ``Stage.figure`` (PNG + PDF, the profile in the title)."""

import matplotlib.pyplot as plt
import pandas as pd

from laionet.demo.checks import IMAGE_SET, TEXT_SET, class_names
from laionet.demo.sampling import KINDS
from laionet.demo.world import WorldPaths

TYPICALITY_QUANTILES = (0.95, 0.75, 0.5, 0.25, 0.05)


def samples_by_typicality(world: WorldPaths, n_classes: int = 12,
                          quantiles: tuple[float, ...] = TYPICALITY_QUANTILES) -> plt.Figure:
    """A grid of readable LAION-mini class images: one row per class (the first ``n_classes``),
    one column per typicality quantile (left = most typical), each titled with its typicality."""
    laion, names = world.truth_table("laion"), class_names(world)
    shown = list(names)[:n_classes]  # labels in class-table order
    ok = laion[(laion["file_status"] == "ok") & (laion["label"] >= 0)]
    fig, axes = plt.subplots(len(shown), len(quantiles), squeeze=False,
                             figsize=(1.3 * len(quantiles), 1.3 * len(shown)))
    for i, c in enumerate(shown):
        sub = ok[ok["label"] == c].sort_values("typicality")
        for j, q in enumerate(quantiles):
            ax = axes[i, j]
            ax.axis("off")
            if len(sub):
                r = sub.iloc[min(int(q * len(sub)), len(sub) - 1)]
                ax.imshow(world.images([r["path"]])[0])
                ax.set_title(f"t={r['typicality']:.2f}", fontsize=6)
            if j == 0:
                ax.text(-8, 32, names[c], ha="right", va="center", fontsize=7)
    return fig


def class_frequencies(laion: pd.DataFrame, names: dict[int, str]) -> plt.Figure:
    """Left: LAION-mini images per class (log scale, long-tailed); right: rows per caption kind."""
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.2))
    freq = laion[laion["label"] >= 0]["label"].map(names).value_counts()
    a1.bar(range(len(freq)), freq.to_numpy(), color="tab:blue")
    a1.set_yscale("log")
    a1.set_xticks(range(len(freq)), freq.index, rotation=90, fontsize=6)
    a1.set_ylabel("LAION-mini images of the class")
    laion["kind"].value_counts().reindex(list(KINDS)).plot.bar(ax=a2, color="tab:gray")
    a2.set_ylabel("rows")
    return fig


def typicality_histogram(sets: pd.DataFrame) -> plt.Figure:
    """Typicality densities of text-selected LAION images and image-selected ImageNet-mini."""
    fig, ax = plt.subplots(figsize=(5, 3))
    for s, color in ((TEXT_SET, "tab:blue"), (IMAGE_SET, "tab:red")):
        ax.hist(sets.loc[sets["set"] == s, "typicality"], bins=30, range=(0, 1), density=True,
                alpha=0.5, color=color, label=s)
    ax.set_xlabel("typicality (hidden truth)")
    ax.legend()
    return fig
