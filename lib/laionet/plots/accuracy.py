"""The accuracy figures of §3.1 (spec B3, B5, B6, B7, B9).

Error bars are +-1.96 SE on both axes everywhere (the authors drew +-1 SE on the ImageNet axis
of B5 and +-1.96 SE on the LAIONet axis, spec E.10); the captions say so.
"""

from typing import Sequence

import numpy as np
import pandas as pd

from laionet.method.similarity import spearman
from laionet.plots.style import GROUP_COLORS, panel, plt

Z = 1.96
ERRBAR_NOTE = "error bars: \u00b11.96 SE (Wilson per class), cut at 0 and 1"


def _bars(acc: np.ndarray, se: np.ndarray) -> np.ndarray:
    """Asymmetric error bars of +-Z SE, cut at 0 and 1 (an accuracy interval stays in [0, 1])."""
    return np.vstack([acc - np.clip(acc - Z * se, 0, 1), np.clip(acc + Z * se, 0, 1) - acc])


def _paired_accuracy(acc: pd.DataFrame, ks: Sequence[int], fixed: tuple[str, str], across: str,
                     x: str, y: str, labels: tuple[str, str], missing: str,
                     groups: dict[str, str] | None) -> plt.Figure:
    """One panel per k: accuracy at ``across == x`` vs ``y`` (rows ``fixed``), y = x dashed; the
    legend under the panels (never over a marker), the layout constrained (the figure's title
    never over a panel's)."""
    fig, axes = plt.subplots(1, len(ks), figsize=(3.4 * len(ks), 4.0), layout="constrained")
    axes = np.atleast_1d(axes)
    handles: dict[str, object] = {}
    for ax, k in zip(axes, ks):
        sub = acc[(acc["k"] == k) & (acc[fixed[0]] == fixed[1])]
        wide = sub.pivot(index="model", columns=across, values=["accuracy", "se"]).dropna()
        if wide.empty or not {x, y} <= set(wide["accuracy"].columns):
            ax.set_title(f"Top {k}: {missing}")
            continue
        xs, ys = wide[("accuracy", x)].to_numpy(), wide[("accuracy", y)].to_numpy()
        xse, yse = wide[("se", x)].to_numpy(), wide[("se", y)].to_numpy()
        grp = wide.index.to_series().map(groups or {}).fillna("other").to_numpy()
        for g in sorted(set(grp)):
            m = grp == g
            handles[f"{g} models"] = ax.errorbar(
                xs[m], ys[m], xerr=_bars(xs[m], xse[m]), yerr=_bars(ys[m], yse[m]), fmt="o", ms=4,
                lw=0.8, color=GROUP_COLORS.get(g, "tab:gray"))
        lo = max(0.0, float(np.nanmin([np.nanmin(xs), np.nanmin(ys)])) - 0.03)
        hi = min(1.0, float(np.nanmax([np.nanmax(xs), np.nanmax(ys)])) + 0.03)
        handles["y = x"] = ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)[0]
        ax.set(xlim=(lo, hi), ylim=(lo, hi), aspect="equal", xlabel=labels[0], ylabel=labels[1],
               title=f"Top {k} accuracy")
    if handles:  # a panel has data
        fig.legend(list(handles.values()), list(handles), loc="outside lower center",
                   ncols=min(4, len(handles)), title=ERRBAR_NOTE, title_fontsize=7)
    return fig


def plot_laionet_vs_imagenet(acc: pd.DataFrame, groups: dict[str, str] | None = None,
                             weighting: str = "equal", x: str = "LAIONet", y: str = "ImageNet",
                             ks: Sequence[int] = (1, 5)) -> plt.Figure:
    """B5: x = LAIONet accuracy, y = ImageNet accuracy, one marker per model, y = x dashed."""
    return _paired_accuracy(acc, ks, ("weighting", weighting), "dataset", x, y,
                            (f"{x} accuracy ({weighting}ly weighted classes)", f"{y} accuracy"),
                            "no model with both datasets", groups)


def plot_weighted_vs_equal(acc: pd.DataFrame, dataset: str, groups: dict[str, str] | None = None,
                           ks: Sequence[int] = (1, 5)) -> plt.Figure:
    """B6: on one dataset, x = equally weighted, y = LAION-weighted accuracy."""
    return _paired_accuracy(acc, ks, ("dataset", dataset), "weighting", "equal", "laion",
                            (f"{dataset}: equally weighted classes",
                             f"{dataset}: LAION-weighted classes"), "no LAION weights", groups)


def plot_relative_frequency(freq: pd.Series, heads: dict[str, str] | None = None,
                            top: int = 500, every: int = 25) -> plt.Figure:
    """B3: relative frequency of the ``top`` most frequent LAIONet classes (log), 1/top dashed."""
    f = freq.sort_values(ascending=False).head(top)
    n = len(f)
    ax = panel((7, 3))
    ax.bar(np.arange(n), f.to_numpy(), width=1.0, color="tab:blue")
    ax.axhline(1 / max(n, 1), color="tab:red", ls="--", lw=1, label=f"uniform (1/{n})")
    ax.set_yscale("log")
    ticks = np.arange(0, n, max(1, min(every, n // 10 or 1)))
    ax.set_xticks(ticks)
    ax.set_xticklabels([(heads or {}).get(w, w) for w in f.index[ticks]], rotation=60,
                       ha="right", fontsize=7)
    ax.set_ylabel("relative frequency in LAIONet")
    ax.legend()
    ax.figure.tight_layout()
    return ax.figure


def plot_recall_vs_frequency(recalls: pd.DataFrame, freq: pd.Series, models: Sequence[str],
                             dataset: str = "LAIONet", k: int = 1,
                             min_images: int = 10) -> plt.Figure:
    """B7: per model, per-class recall@k vs relative LAIONet frequency (log), Spearman's rho."""
    models = list(models)
    fig, axes = plt.subplots(1, len(models), figsize=(2.8 * len(models), 2.9), squeeze=False)
    for ax, m in zip(axes[0], models):
        sub = recalls[(recalls["model"] == m) & (recalls["dataset"] == dataset)
                      & (recalls["k"] == k) & (recalls["n"] >= min_images)]
        fx = sub["wnid"].map(freq).to_numpy(dtype=float)
        ok = np.isfinite(fx) & (fx > 0)
        ax.scatter(fx[ok], sub["recall"].to_numpy()[ok], s=10, alpha=0.5)
        ax.set_xscale("log")
        rho = spearman(fx[ok], sub["recall"].to_numpy()[ok])[0]
        ax.set_title(f"{m}\nSpearman \u03c1 = {rho:.2f} ({ok.sum()} classes)", fontsize=8)
        ax.set_xlabel("relative frequency")
    axes[0][0].set_ylabel(f"{dataset} recall@{k}")
    fig.tight_layout()
    return fig


def plot_gap_distribution(gaps: pd.DataFrame, model: str, k: int = 5,
                          heads: dict[str, str] | None = None, annotate: int = 5) -> plt.Figure:
    """B9 (left): per-class recall gaps (LAIONet - ImageNet), 30 bins, the largest named."""
    ax = panel((5, 3))
    ax.hist(gaps["gap"], bins=30, color="tab:blue", alpha=0.8)
    ax.axvline(0, color="k", lw=0.8)
    for i, r in enumerate(gaps.head(annotate).itertuples()):
        ax.annotate((heads or {}).get(r.wnid, r.wnid), (r.gap, 0), xytext=(0, 12 + 10 * (i % 3)),
                    textcoords="offset points", fontsize=7, rotation=45,
                    arrowprops=dict(arrowstyle="-", lw=0.5))
    ax.set(xlabel=f"recall@{k} on LAIONet \u2212 recall@{k} on ImageNet ({model})",
           ylabel="classes")
    ax.figure.tight_layout()
    return ax.figure


def plot_gallery(images: Sequence, correct: Sequence[bool], titles: Sequence[str] | None = None,
                 ncols: int = 5, border: int = 4) -> plt.Figure:
    """B9 (right): images with green (correct) / red (wrong) borders."""
    nrows = max(1, int(np.ceil(len(images) / ncols)))
    fig, axes = plt.subplots(nrows, ncols, figsize=(1.6 * ncols, 1.7 * nrows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for i, (im, ok) in enumerate(zip(images, correct)):
        arr = np.asarray(im.convert("RGB"))
        framed = np.empty((arr.shape[0] + 2 * border, arr.shape[1] + 2 * border, 3), np.uint8)
        framed[:] = np.array([40, 160, 60] if ok else [200, 40, 40], dtype=np.uint8)
        framed[border:-border, border:-border] = arr
        axes.ravel()[i].imshow(framed)
        if titles is not None:
            axes.ravel()[i].set_title(titles[i], fontsize=6)
    fig.tight_layout()
    return fig
