"""Glue for notebook 04: image records of each dataset, predictors from notebook parameters, and
the per-dataset results files (evaluated once, reused while the manifest matches)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterator, Sequence

import pandas as pd
import pyarrow.parquet as pq

from ..io import write_parquet
from .inference import Predictor, classifier_predictor, evaluate, zero_shot_predictor

SUCCESS = "success"


def laionet_records(download_dir: str | os.PathLike) -> tuple[Iterator[tuple], int, int]:
    """(records, total, n_missing) of the downloaded LAIONet: every manifest row once; rows that
    did not download are yielded with source None (excluded from accuracy, never dropped)."""
    from ..download import iter_downloaded, load_manifest

    man = load_manifest(download_dir)
    ok = man["status"].eq(SUCCESS).to_numpy()
    failed = man.loc[~ok, ["key", "wnid"]]

    def gen():
        for key, wnid, im in iter_downloaded(download_dir):
            yield str(key), wnid, im
        for key, wnid in failed.itertuples(index=False):
            yield str(key), wnid, None

    return gen(), len(man), int((~ok).sum())


def imagenet_records(val: pd.DataFrame) -> tuple[Iterator[tuple], int]:
    """(records, total) of an ImageNet-style table (image_key, path, wnid)."""
    return ((k, w, p) for k, w, p in val[["image_key", "wnid", "path"]].itertuples(index=False)), len(val)


def build_predictors(classifiers, universe: Sequence[str] | None, zero_shot: dict | None = None,
                     device: str = "cpu") -> list[Predictor]:
    """Classifier predictors (+ one zero-shot predictor when ``zero_shot`` holds name,
    image_encoder, text_embeddings, class_wnids, paper_nan_as_wrong)."""
    preds = [classifier_predictor(c, universe=universe, device=device) for c in classifiers]
    if zero_shot:
        preds.append(zero_shot_predictor(**zero_shot))
    return preds


def evaluate_to_file(records, total: int, predictors: Sequence[Predictor], dataset: str,
                     dest: str | os.PathLike, batch_size: int = 64) -> tuple[pd.DataFrame, list]:
    """Evaluate and write ``dest`` atomically; returns (results, decode errors)."""
    errors: list = []
    table = evaluate(records, predictors, dataset, batch_size=batch_size, total=total,
                     errors=errors)
    write_parquet(table, dest)
    return table.to_pandas(), errors


def read_results(paths: Sequence[str | os.PathLike]) -> pd.DataFrame:
    """Concatenate results files (correctness as nullable booleans)."""
    frames = [pq.read_table(p).to_pandas() for p in paths]
    df = pd.concat(frames, ignore_index=True)
    for c in ("correct1", "correct5"):
        df[c] = df[c].astype("boolean")
    return df


def class_keys(class_counts_path: str | os.PathLike | None, laionet: pd.DataFrame) -> list[str]:
    """The LAIONet "keys" ImageNet is projected onto: classes with any substring match (stage 01
    class_counts, n_rows > 0), as in the authors' labels dict; else LAIONet's own classes."""
    if class_counts_path and Path(class_counts_path).is_file():
        cc = pd.read_parquet(class_counts_path)
        if "n_rows" in cc.columns:
            return sorted(cc.loc[cc["n_rows"] > 0, "wnid"].astype(str))
    return sorted(laionet["wnid"].astype(str).unique())


def images_of(download_dir: str | os.PathLike, keys: Sequence[Any]) -> dict[str, Any]:
    """Downloaded LAIONet images by key (for galleries)."""
    from ..download import iter_downloaded

    return {str(k): im for k, _, im in iter_downloaded(download_dir, keys=[int(k) for k in keys])}
