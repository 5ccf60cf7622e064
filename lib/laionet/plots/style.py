"""One plotting style for every notebook; figures saved as PNG + PDF, tables as CSV + Markdown.

Every saved figure carries a title suffix naming the profile that made it (for example
"[demo world]"), so a demo figure is never mistaken for a result on real data.
"""

import os
import textwrap
from pathlib import Path

import matplotlib

matplotlib.use(os.environ.get("MPLBACKEND", "Agg"))
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from laionet.util.files import atomic_path, write_text  # noqa: E402

PROFILE_LABELS = {"demo": "demo world", "tiny": "demo world, tiny", "full": "LAION-400M"}
GROUP_COLORS = {"1k": "tab:red", "pt22k-ft1k": "goldenrod", "pt22k": "tab:green",
                "clip": "black", "demo": "tab:blue"}
DATASET_COLORS = {"LAIONet": "tab:blue", "ImageNet": "tab:red"}


def style() -> None:
    """Apply the companion's matplotlib style (call once per notebook)."""
    plt.rcParams.update({
        "figure.dpi": 110, "savefig.dpi": 150, "savefig.bbox": "tight",
        "axes.grid": True, "grid.alpha": 0.3, "axes.spines.top": False,
        "axes.spines.right": False, "font.size": 9, "axes.titlesize": 10,
        "legend.fontsize": 8, "legend.frameon": False,
    })


def panel(figsize: tuple[float, float] = (3.4, 2.5), ax=None):
    """``ax``, or the axes of a new one-panel figure of ``figsize``."""
    return ax if ax is not None else plt.subplots(figsize=figsize)[1]


def finish(ax, legend: bool = True, **props):
    """``ax.set(**props)``, a legend (unless ``legend`` is False); returns the axes' figure."""
    ax.set(**props)
    if legend:
        ax.legend()
    return ax.figure


def save_figure(fig: plt.Figure, name: str, figures_dir: str | os.PathLike, profile: str,
                title: str | None = None) -> list[Path]:
    """Save ``fig`` as <figures_dir>/<name>.png and .pdf, with the profile in the title."""
    tag = f"[{PROFILE_LABELS.get(profile, profile)}]"
    if title is not None:
        fig.suptitle(f"{title} {tag}")
    elif fig._suptitle is None:
        fig.suptitle(tag)
    elif tag not in fig._suptitle.get_text():  # keep the caller's title, append the profile once
        fig.suptitle(f"{fig._suptitle.get_text()} {tag}")
    full_title = fig._suptitle.get_text()
    # a title wider than the figure is wrapped to its width: else the saved canvas grows to the
    # title's width and a one-panel figure sits small in a wide blank page
    size = fig._suptitle.get_fontsize()
    fig._suptitle.set_text(textwrap.fill(full_title, max(20, int(fig.get_figwidth() * 72 / (0.55 * size)))))
    if fig.get_layout_engine() is None:
        fig.tight_layout()  # make room for the suptitle (subplot titles would overlap it)
    out = []
    for ext in ("png", "pdf"):
        dest = Path(figures_dir) / f"{name}.{ext}"
        with atomic_path(dest, suffix=f".{ext}") as tmp:
            # the title also goes into the file's metadata: tests and tools read it from there
            fig.savefig(tmp, format=ext, metadata={"Title": full_title})
        out.append(dest)
    return out


def save_table(df: pd.DataFrame, name: str, figures_dir: str | os.PathLike,
               float_format: str = "%.4f", index: bool = False) -> list[Path]:
    """Save ``df`` as <figures_dir>/<name>.csv and .md."""
    csv = Path(figures_dir) / f"{name}.csv"
    with atomic_path(csv, suffix=".csv") as tmp:
        df.to_csv(tmp, index=index, float_format=float_format)
    md = write_text(df.to_markdown(index=index, floatfmt=float_format.strip("%")) + "\n",
                    Path(figures_dir) / f"{name}.md")
    return [csv, md]
