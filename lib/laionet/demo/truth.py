"""The demo world's hidden truth, joined to the pipeline's row keys (for justification plots only;
no selection ever reads it)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd


def caption_truth(truth_dir: str | Path) -> pd.DataFrame | None:
    """key, kind (how the caption was made), label and true_wnid (the class the image shows;
    NaN for no class) of every LAION row; None when ``truth_dir`` holds no truth tables."""
    truth_dir = Path(truth_dir)
    laion, classes = truth_dir / "laion.parquet", truth_dir / "classes.parquet"
    if not (laion.is_file() and classes.is_file()):
        return None
    rows = pd.read_parquet(laion, columns=["key", "label", "kind"])
    names = pd.read_parquet(classes, columns=["wnid", "label"]).rename(columns={"wnid": "true_wnid"})
    return rows.merge(names, on="label", how="left")
