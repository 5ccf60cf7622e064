"""A sweep's summary across its runs (``run_all.sh sweep NN PARAM V1 V2 ...``): a table and a
figure, made by the runner for the stages in ``SUMMARIES``.

Stage 02: each run's summary.json (LAIONet's size and classes per value). Stage 04: each run
writes its accuracy table (``accuracy.parquet``: dataset, model, k, weighting, accuracy, se,
n_classes, group); the summary puts them side by side with the change from the sweep's first
value, e.g. ``sweep 04 resolution_parity false true`` measures what resizing ImageNet val as
LAIONet was stored changes (paper_spec B5).
"""

import os
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from laionet.util.files import read_json

ACCURACY = "accuracy.parquet"


def sweep_run_files(sweep_json_path: str | os.PathLike, name: str) -> tuple[str, list]:
    """(swept parameter, [(run, path of its file ``name``)]) of a sweep's index (``sweep.json``,
    written by ``run_all.sh sweep``), in its order; FileNotFoundError for a run without the file."""
    sweep = read_json(sweep_json_path)
    runs = []
    for run in sweep["runs"]:
        path = Path(run["out_dir"]) / name
        if not path.is_file():
            raise FileNotFoundError(f"{path} (listed in {sweep_json_path}) is missing: that run "
                                    "did not finish; rerun the sweep")
        runs.append((run, path))
    return sweep["param"], runs


def accuracy_sweep(sweep_json_path: str | Path) -> pd.DataFrame:
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


def plot_accuracy_sweep(table: pd.DataFrame, param: str):
    """Top-1, equally weighted: one panel per dataset, each model's accuracy across the values."""
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


def selection_sweep(sweep_json_path: str | Path) -> pd.DataFrame:
    """One row per run of a stage-02 sweep (``run_all.sh sweep 02 threshold ...``): the swept
    value and that run's summary.json (n_laionet, n_classes_laionet, ...)."""
    param, runs = sweep_run_files(sweep_json_path, "summary.json")
    rows = [{param: run["value"], **read_json(path), "out_dir": run["out_dir"]}
            for run, path in runs]
    return pd.DataFrame(rows).sort_values(param).reset_index(drop=True)


def plot_selection_sweep(table: pd.DataFrame, param: str = "threshold"):
    """Two panels: classes kept and dataset size across a sweep's runs."""
    fig, axes = plt.subplots(1, 2, figsize=(8, 3))
    axes[0].plot(table[param], table["n_classes_laionet"], "o-")
    axes[0].axhline(table["n_classes_matched"].max(), ls=":", c="grey", label="classes matched")
    axes[0].set(xlabel=param, ylabel="classes with >= 1 image")
    axes[0].legend()
    axes[1].plot(table[param], table["n_laionet"], "o-")
    axes[1].set(xlabel=param, ylabel="LAIONet rows", yscale="log")
    fig.suptitle(f"Stage 02 sweep over {param}")
    return fig


# stage -> (table of the runs, its figure); the runner makes both after a sweep of that stage
SUMMARIES = {"02_caption_filtering": (selection_sweep, plot_selection_sweep),
             "04_evaluation": (accuracy_sweep, plot_accuracy_sweep)}
