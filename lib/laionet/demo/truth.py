"""The demo world's hidden truth, joined to the pipeline's row keys (for justification plots only;
no selection ever reads it)."""

from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from laionet.method.recognised_text import SPECIAL, TEXT_COL, names_in_text


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


def text_truth(truth_dir: str | Path) -> pd.DataFrame | None:
    """key, text_in_image (the class name the world wrote into the image, else null) and
    text_is_head of every LAION row; None when the truth has no such columns (an older world)."""
    laion = Path(truth_dir) / "laion.parquet"
    cols = ["key", "text_in_image", "text_is_head"]
    if not laion.is_file() or not set(cols) <= set(pq.read_schema(laion).names):
        return None
    return pd.read_parquet(laion, columns=cols)


def text_recall(recognised: pd.DataFrame, truth: pd.DataFrame) -> pd.DataFrame:
    """How well the recognised-text step finds what the world wrote, over the rows of
    ``recognised`` (stage 03's table: key, recognized_text) that were downloaded and read:
    recall = the share of rows with a written name whose recognised text contains it
    (normalised as the flag rule does), and, on the rows without one, the share where the
    engine read some text anyway."""
    t = recognised.merge(truth, on="key", how="left")
    t = t[~t[TEXT_COL].isin(SPECIAL[1:]) & t[TEXT_COL].notna()]  # downloaded and read
    has = t["text_in_image"].notna()
    found = [names_in_text(x, [str(w).lower()]) for x, w in zip(t.loc[has, TEXT_COL],
                                                                 t.loc[has, "text_in_image"])]
    clean_text = ~t.loc[~has, TEXT_COL].eq(SPECIAL[0])
    return pd.DataFrame({
        "measure": ["rows read", "rows with a written class name", "of them found (recall)",
                    "recall", "rows without text: some text read", "share"],
        "value": [len(t), int(has.sum()), int(sum(found)), sum(found) / max(int(has.sum()), 1),
                  int(clean_text.sum()), clean_text.mean() if len(clean_text) else float("nan")]})
