"""Stage 03's figures: how the download went, and what came back."""

from typing import Sequence

import pandas as pd

from laionet.plots.style import plt


def plot_success(report: dict[str, pd.DataFrame]) -> plt.Figure:
    """Success rate per class vs overall; rows per kind of failure (``jobs.download.report``)."""
    per_class, kinds = report["per_class"], report["error_kinds"]
    fig, ax = plt.subplots(1, 2, figsize=(10, 3))
    ax[0].bar(per_class["wnid"], per_class["success_rate"], color="tab:blue")
    ax[0].axhline(report["overall"]["success_rate"][0], c="k", ls="--", label="overall")
    ax[0].set(ylabel="success rate", xlabel="class (most rows first)", ylim=(0, 1.05))
    ax[0].tick_params(axis="x", labelrotation=90, labelsize=6)
    ax[0].legend()
    ax[1].barh(kinds["error_kind"], kinds["rows"], color="tab:red")
    ax[1].set(xlabel="rows", title="why downloads failed")
    return fig


def plot_examples(images: Sequence[tuple[int, str, "Image.Image"]]) -> plt.Figure | None:
    """One row of images titled by class (``jobs.download.example_images``), or None."""
    if not images:
        return None
    fig, axes = plt.subplots(1, len(images), figsize=(1.6 * len(images), 1.9), squeeze=False)
    for a, (_, wnid, im) in zip(axes[0], images):
        a.imshow(im)
        a.set_title(wnid, fontsize=7)
        a.axis("off")
    return fig
