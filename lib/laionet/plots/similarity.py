"""Figures of the intra-class similarity stages (05-07, 09)."""

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from laionet.method.similarity import spearman, summarize_comparison
from laionet.plots.style import DATASET_COLORS, finish, panel, plt
from laionet.sources.imagenet import IMAGENETV2_VERSIONS


def histogram_figure(samples: Mapping[str, np.ndarray], bins: int = 70,
                     xlim: tuple[float, float] = (0.0, 0.99), colors: Mapping[str, str] | None = None,
                     xlabel: str = "intra-class image-image similarity"):
    """Overlaid density histograms (A15: 70 bins, alpha 0.3; LAIONet blue, ImageNet red)."""
    colors = {**DATASET_COLORS, **(colors or {})}
    ax = panel((4.6, 3.0))
    edges = np.linspace(*xlim, bins + 1)
    for label, values in samples.items():
        ax.hist(np.asarray(values), bins=edges, density=True, alpha=0.3, label=label,
                color=colors.get(label))
    return finish(ax, xlim=xlim, xlabel=xlabel, ylabel="pdf")


def delta_figure(cmp: pd.DataFrame, label_a: str = "LAIONet", label_b: str = "ImageNet"):
    """Sorted per-class delta with each class's OWN interval (not independently sorted bands,
    fix of E.10), zero line and the counts of significantly lower / higher classes."""
    t = cmp[cmp["tested"]].sort_values("delta", kind="stable").reset_index(drop=True)
    s = summarize_comparison(cmp)
    x = np.arange(len(t))
    ax = panel((4.2, 2.8))
    ax.fill_between(x, t["lcb"], t["ucb"], color="tab:gray", alpha=0.35, lw=0,
                    label=f"per-class {int(100 * cmp.attrs.get('level', 0.95))}% CI "
                          f"({cmp.attrs.get('method', '')})")
    ax.plot(x, t["delta"], color="black", lw=1, label="Δ (sorted)")
    for side, color in (("lower", "tab:blue"), ("higher", "tab:red")):
        m = t[f"significantly_{side}"]
        ax.scatter(x[m], t.loc[m, "delta"], s=4, color=color, zorder=3,
                   label=f"{label_a} {side}: {s[f'n_{side}']}/{s['n_tested']}")
    ax.axhline(0, ls="--", color="gray", lw=0.8)
    ax.set(xlabel="class (sorted by Δ)", ylabel=f"Δ similarity ({label_a} − {label_b})")
    ax.legend(loc="upper left")
    return ax.figure


def proportions_figure(table: pd.DataFrame, x: str, label_a: str = "LAIONet",
                       label_b: str = "ImageNet", kind: str = "bar", ax=None):
    """Share of classes significantly lower (blue) / higher (red) per row of ``table`` (columns
    ``x``, share_lower, share_higher): bars per encoder (App. H) or lines vs a number (§4.1)."""
    ax = panel((3.6, 2.6), ax)
    lo, hi = f"{label_a} < {label_b}", f"{label_a} > {label_b}"
    if kind == "bar":
        pos = np.arange(len(table))
        ax.bar(pos - 0.2, table["share_lower"], 0.4, color="tab:blue", label=lo)
        ax.bar(pos + 0.2, table["share_higher"], 0.4, color="tab:red", label=hi)
        ax.set_xticks(pos, table[x].astype(str), rotation=20, ha="right")
    else:
        ax.plot(table[x], table["share_lower"], "o-", color="tab:blue", label=lo)
        ax.plot(table[x], table["share_higher"], "s-", color="tab:green", label=hi)
        ax.set_xlabel(x.replace("_", " "))
    return finish(ax, ylabel="proportion of classes", ylim=(0, 1))


def scatter_figure(x: Sequence[float], y: Sequence[float], xlabel: str, ylabel: str,
                   logx: bool = False, ax=None):
    """Per-class scatter with Spearman's rho (and p, n) in the title."""
    ax = panel((3.4, 2.6), ax)
    rho, p, n = spearman(x, y)
    ax.scatter(x, y, s=8, alpha=0.6, color="tab:blue")
    if logx:
        ax.set_xscale("log")
    return finish(ax, False, xlabel=xlabel, ylabel=ylabel,
                  title=f"Spearman ρ = {rho:.3f} (p = {p:.2g}, n = {n})")


def recall_vs_delta_figure(table: pd.DataFrame):
    """B7: per model, LAIONet recall@1 vs the class's Δ intra-class similarity (one panel per
    model; ``table`` from ``laionet.jobs.intra_class.recall_vs_delta``)."""
    models = sorted(table["model"].unique())
    fig, axes = plt.subplots(1, max(len(models), 1), figsize=(3.0 * max(len(models), 1), 2.6),
                             squeeze=False)
    for ax, m in zip(axes[0], models):
        t = table[table["model"] == m]
        scatter_figure(t["delta"], t["recall"], "Δ intra-class similarity (LAIONet − ImageNet)",
                       "LAIONet recall@1", ax=ax)
        ax.set_title(f"{m}\n{ax.get_title()}", fontsize=8)
    return fig


def release_proportions_figure(props: pd.DataFrame, references: Sequence[str] = ("LAIONet", "ImageNet")):
    """§4.1 / B12: per reference, the share of classes significantly lower / higher than each
    ImageNetV2 release vs its selection frequency (``selection_frequency.release_tables``)."""
    fig, axes = plt.subplots(1, len(references), figsize=(3.6 * len(references), 2.7), sharey=True,
                             squeeze=False)
    for ax, ref in zip(axes[0], references):
        proportions_figure(props[props["reference"] == ref], "selection_frequency", label_a=ref,
                           label_b="V2", kind="line", ax=ax)
        ax.set_xlabel("MTurk selection frequency")
    return fig


def selection_frequency_curve_figure(curve: pd.DataFrame, encoder: str):
    """Mean intra-class similarity of the V2 images with selection frequency ≥ t (95 % band of
    the class mean), with LAIONet's and ImageNet's on the same classes."""
    ax = panel((3.6, 2.6))
    ax.errorbar(curve["threshold"], curve["mean_similarity"], yerr=1.96 * curve["se"], fmt="o-",
                color="black", capsize=2, label="ImageNetV2 images with sf ≥ t")
    for name, color in (("LAIONet", "tab:blue"), ("ImageNet", "tab:red")):
        ax.plot(curve["threshold"], curve[f"{name.lower()}_mean_same_classes"], "--", color=color,
                label=name)
    return finish(ax, xlabel="selection-frequency threshold t",
                  ylabel=f"mean intra-class similarity ({encoder})")


def release_accuracy_figure(wide: pd.DataFrame, ks: Sequence[int] = (1, 5)):
    """B13: each model's top-k accuracy on each ImageNetV2 release vs on LAIONet (equally
    weighted; ``wide`` from ``selection_frequency.accuracy_wide``), the diagonal dashed."""
    colors = {"top-images": "tab:red", "threshold0.7": "goldenrod", "matched-frequency": "tab:green"}
    fig, axes = plt.subplots(1, len(ks), figsize=(3.3 * len(ks), 2.8), squeeze=False)
    for ax, k in zip(axes[0], ks):
        wk = wide[wide["k"] == k]
        for name, col in colors.items():
            v = IMAGENETV2_VERSIONS[name]
            ax.scatter(wk["LAIONet"], wk[f"ImageNetV2-{v.letter}"], color=col, s=14,
                       label=f"V2-{v.letter} ({v.selection_frequency})")
        values = wk.drop(columns=["model", "k"]).to_numpy(dtype=float)
        hi = 0.95 * np.nanmax(values) if len(wk) else 1
        lo = np.nanmin(values) if len(wk) else 0
        ax.plot([lo, hi], [lo, hi], "--", color="gray")
        finish(ax, xlabel=f"LAIONet top-{k} (equally weighted)", ylabel=f"ImageNetV2 top-{k}")
    return fig
