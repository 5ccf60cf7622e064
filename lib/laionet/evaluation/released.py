"""The ``released`` route: the authors' per-image correctness tables -> our long results table.

The authors released ``ILSVRC2012_val.parquet`` (index = val file name, columns
``top_1_is_correct_<model>`` / ``top_5_is_correct_<model>`` holding True/False/None) and
``val_imagename2wnid.json``; their LAIONet parquets (Google Drive) carry the same columns.
Turning them into the long table lets the same aggregation and figures run without a model.
"""

from __future__ import annotations

import json
import os
import re
import string
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np
import pandas as pd

_COL = re.compile(r"^top_(1|5)_is_correct_(.+)$")
# Spec A3: these two lemmas never occur with exactly that casing in LAION-400M captions, so
# their classes got no substring match although they contain no punctuation.
PAPER_NEVER_MATCHED_LEMMAS = ("Brabancon griffon", "EntleBucher")


def released_models(columns: Iterable[str]) -> list[str]:
    """Model names of the ``top_{1,5}_is_correct_<model>`` columns, in column order."""
    seen: dict[str, set] = {}
    for c in columns:
        m = _COL.match(c)
        if m:
            seen.setdefault(m.group(2), set()).add(m.group(1))
    broken = [m for m, ks in seen.items() if ks != {"1", "5"}]
    if broken:
        raise ValueError(f"models {broken} lack a top_1 or top_5 correctness column")
    return list(seen)


def _as_nullable_bool(col: pd.Series, where: str) -> np.ndarray:
    """Object True/False/None -> pandas nullable boolean; anything else is an error."""
    bad = ~col.isna() & ~col.isin([True, False])
    if bad.any():
        raise ValueError(f"{where}: row {col.index[bad.argmax()]!r} holds {col[bad].iloc[0]!r}; "
                         "expected True, False or None")
    return col.astype("boolean").to_numpy()


def read_released(path: str | os.PathLike, dataset: str,
                  labels: str | os.PathLike | Mapping[str, str] | None = None,
                  label_column: str = "wnid", models: Iterable[str] | None = None) -> pd.DataFrame:
    """One released parquet as the long results table.

    ``labels``: an image-name -> wnid JSON file or mapping (ImageNet val); without it the
    parquet's ``label_column`` gives each row's class (LAIONet). Columns: image_key, dataset,
    model, wnid, top5 (null: not released), correct1, correct5.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"released table {path} not found")
    df = pd.read_parquet(path)
    names = released_models(df.columns)
    if models is not None:
        wanted = list(models)
        unknown = sorted(set(wanted) - set(names))
        if unknown:
            raise KeyError(f"{path}: no correctness columns for {unknown}; it has {names}")
        names = wanted
    if not names:
        raise ValueError(f"{path}: no top_1_is_correct_<model> columns")
    keys = df.index.astype(str)
    if labels is not None:
        mapping = json.loads(Path(labels).read_text()) if isinstance(labels, (str, os.PathLike)) else labels
        wnid = pd.Series(keys).map(mapping)
        if wnid.isna().any():
            raise KeyError(f"{path}: image {keys[wnid.isna().argmax()]!r} has no label in {labels}")
    elif label_column in df.columns:
        wnid = df[label_column].astype(str).reset_index(drop=True)
    else:
        raise KeyError(f"{path}: no labels given and no {label_column!r} column; pass labels= "
                       "(an image name -> wnid JSON) or label_column=")
    n = len(df)
    return pd.DataFrame({
        "image_key": np.tile(keys.to_numpy(), len(names)),
        "dataset": dataset,
        "model": np.repeat(names, n),
        "wnid": np.tile(wnid.to_numpy(dtype=object), len(names)),
        "top5": None,
        "correct1": pd.array(np.concatenate([_as_nullable_bool(df[f"top_1_is_correct_{m}"],
                                                               f"{path}:top_1_is_correct_{m}")
                                             for m in names]), dtype="boolean"),
        "correct5": pd.array(np.concatenate([_as_nullable_bool(df[f"top_5_is_correct_{m}"],
                                                               f"{path}:top_5_is_correct_{m}")
                                             for m in names]), dtype="boolean"),
    })


def read_lemma_pairs(path: str | os.PathLike) -> list[tuple[str, str]]:
    """The authors' lemma -> wnid map as released (a JSON list of [lemma, wnid] pairs)."""
    return [(lemma, wnid) for lemma, wnid in json.loads(Path(path).read_text())]


def paper_laionet_keys(lemma_pairs: Iterable[tuple[str, str]],
                       never_matched: Iterable[str] = PAPER_NEVER_MATCHED_LEMMAS) -> list[str]:
    """The 978 wnid keys of the authors' LAIONet labels dict, from their lemma map (spec A3).

    A class is a key iff one of its lemmas can match a caption: the matcher strips ASCII
    punctuation from captions but not from lemmas, so a lemma with punctuation never matches;
    ``never_matched`` lists the lemmas that never occur in LAION-400M with that exact casing.
    """
    never = set(never_matched)
    punct = set(string.punctuation)
    keys = {w for lemma, w in lemma_pairs if lemma not in never and not punct & set(lemma)}
    return sorted(keys)
