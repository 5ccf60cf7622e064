"""Stage 04 across the runs of a sweep (``run_all.sh sweep 04 PARAM V1 V2 ...``).

Each run writes its accuracy table (``accuracy.parquet``: dataset, model, k, weighting,
accuracy, se, n_classes, group); the summary puts them side by side with the change from the
sweep's first value, e.g. ``sweep 04 resolution_parity false true`` measures what resizing
ImageNet val as LAIONet was stored changes (paper_spec B5).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..io import sweep_run_files

ACCURACY = "accuracy.parquet"


def summarize_sweep(sweep_json_path: str | Path) -> pd.DataFrame:
    """One row per (run, dataset, model, k, weighting): the swept value, the accuracy and its
    change from the first run's (``change``), in the sweep's order of values."""
    param, runs = sweep_run_files(sweep_json_path, ACCURACY)
    table = pd.concat([pd.read_parquet(path).assign(**{param: str(run["value"]), "run": i})
                       for i, (run, path) in enumerate(runs)], ignore_index=True)
    keys = ["dataset", "model", "k", "weighting"]
    first = table[table["run"] == 0].set_index(keys)["accuracy"].rename("first")
    table = table.join(first, on=keys)
    table["change"] = table["accuracy"] - table.pop("first")
    cols = [param, "run", *keys, "accuracy", "change", "se", "n_classes", "group"]
    return table[[c for c in cols if c in table]].sort_values(["run", *keys]).reset_index(drop=True)


def plot_sweep(table: pd.DataFrame, param: str):
    """Top-1, equally weighted: one panel per dataset, each model's accuracy across the values."""
    import matplotlib.pyplot as plt

    t = table[(table["k"] == 1) & (table["weighting"] == "equal")]
    datasets = list(dict.fromkeys(t["dataset"]))
    values = list(dict.fromkeys(t.sort_values("run")[param]))
    fig, axes = plt.subplots(1, len(datasets), figsize=(4 * len(datasets), 3), squeeze=False)
    for ax, ds in zip(axes[0], datasets):
        for model, g in t[t["dataset"] == ds].groupby("model", sort=True):
            g = g.set_index(param).reindex(values)
            ax.plot(range(len(values)), g["accuracy"], "o-", label=model)
        ax.set(title=ds, xlabel=param, ylabel="top-1 accuracy (equal weights)",
               xticks=range(len(values)), xticklabels=values)
    axes[0][-1].legend(fontsize=7)
    fig.suptitle(f"Stage 04 sweep over {param}")
    fig.tight_layout()
    return fig
