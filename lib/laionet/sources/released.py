"""The ``released`` route: the authors' per-image correctness tables -> our long results table.

The authors released ``ILSVRC2012_val.parquet`` (index = val file name, columns
``top_1_is_correct_<model>`` / ``top_5_is_correct_<model>`` holding True/False/None) and
``val_imagename2wnid.json``; their LAIONet parquets (Google Drive) carry the same columns.
Turning them into the long table lets the same aggregation and figures run without a model."""

import hashlib
import json
import os
import re
import string
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from laionet.paper import PAPER_NEVER_MATCHED_LEMMAS
from laionet.sources.classes import class_table
from laionet.sources.laion import LAION_COLUMNS, part_files, row_key

_COL = re.compile(r"^top_(1|5)_is_correct_(.+)$")


def released_models(columns: Iterable[str], models: Iterable[str] | None = None,
                    where: object = "") -> list[str]:
    """Model names of the ``top_{1,5}_is_correct_<model>`` columns, in column order; ``models``
    (when given) must be among them and is returned as given."""
    seen: dict[str, set] = {}
    for m in filter(None, map(_COL.match, columns)):
        seen.setdefault(m.group(2), set()).add(m.group(1))
    broken = [m for m, ks in seen.items() if ks != {"1", "5"}]
    if broken:
        raise ValueError(f"models {broken} lack a top_1 or top_5 correctness column")
    if models is None:
        return list(seen)
    wanted = list(models)
    unknown = sorted(set(wanted) - set(seen))
    if unknown:
        raise KeyError(f"{where}: no correctness columns for {unknown}; it has {list(seen)}")
    return wanted


def _as_nullable_bool(col: pd.Series, where: str) -> np.ndarray:
    bad = ~col.isna() & ~col.isin([True, False])
    if bad.any():
        raise ValueError(f"{where}: row {col.index[bad.argmax()]!r} holds {col[bad].iloc[0]!r}; "
                         "expected True, False or None")
    return col.astype("boolean").to_numpy()


def read_released(path: str | os.PathLike, dataset: str,
                  labels: str | os.PathLike | Mapping[str, str] | None = None,
                  label_column: str = "wnid", models: Iterable[str] | None = None) -> pd.DataFrame:
    """One released parquet as the long results table (image_key, dataset, model, wnid, top5
    (null: not released), correct1, correct5). ``labels``: an image-name -> wnid JSON file or
    mapping (ImageNet val); without it the parquet's ``label_column`` gives each row's class."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"released table {path} not found")
    df = pd.read_parquet(path)
    names = released_models(df.columns, models, path)
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
    return read_released_frame(df.assign(wnid=wnid.to_numpy()), dataset, str(path), names)


def read_released_frame(df: pd.DataFrame, dataset: str, where: str,
                        models: Iterable[str] | None = None) -> pd.DataFrame:
    """A released table already in memory (with a ``wnid`` column) as the long results table."""
    names = released_models(df.columns, models, where)
    correct = {k: pd.array(np.concatenate(
        [_as_nullable_bool(df[f"top_{k}_is_correct_{m}"], f"{where}:top_{k}_is_correct_{m}")
         for m in names]) if names else [], dtype="boolean") for k in (1, 5)}
    return pd.DataFrame({
        "image_key": np.tile(df.index.astype(str).to_numpy(), len(names)), "dataset": dataset,
        "model": np.repeat(names, len(df)),
        "wnid": np.tile(df["wnid"].to_numpy(dtype=object), len(names)),
        "top5": None, "correct1": correct[1], "correct5": correct[5]})


def read_lemma_pairs(path: str | os.PathLike) -> list[tuple[str, str]]:
    """The authors' lemma -> wnid map as released (a JSON list of [lemma, wnid] pairs)."""
    return [(lemma, wnid) for lemma, wnid in json.loads(Path(path).read_text())]


def paper_laionet_keys(lemma_pairs: Iterable[tuple[str, str]],
                       never_matched: Iterable[str] = PAPER_NEVER_MATCHED_LEMMAS) -> list[str]:
    """The 978 wnid keys of the authors' LAIONet labels dict, from their lemma map (spec A3).
    A class is a key iff one of its lemmas can match a caption: the matcher strips ASCII
    punctuation from captions but not from lemmas, so a lemma with punctuation never matches;
    ``never_matched`` lists the lemmas that never occur in LAION-400M with that exact casing."""
    never, punct = set(never_matched), set(string.punctuation)
    return sorted({w for lemma, w in lemma_pairs if lemma not in never and not punct & set(lemma)})


# The authors' released LAIONet parquets (Google Drive; paper_spec D, "External"): index = their
# global LAION index (part * 1e8 + row of the original 32-part LAION-400M files), columns URL,
# TEXT, the LAION metadata, name_def_wnid (the row's class as its exact synset text),
# text_to_name_def_wnid_similarity_<encoder>, recognized_text, wnid_is_in_recognized_text and
# top_{1,5}_is_correct_<model>.

OCR_FLAG = "wnid_is_in_recognized_text"
NAME_DEF = "name_def_wnid"


def name_def_wnids(texts: pd.Series, classes: str = "imagenet1k",
                   authors_class_list: bool = False) -> pd.Series:
    """The wnid of each exact ``name_def`` synset text (the authors' ``name_def_wnid`` column;
    ``class_table``'s golden strings, A2); a text of no class is an error naming it and its row."""
    table = class_table(classes, authors_class_list=authors_class_list)
    lookup = dict(zip(table["name_def"], table["wnid"]))
    wnid = texts.map(lookup)
    bad = wnid.isna() & texts.notna()
    if bad.any():
        raise ValueError(f"{int(bad.sum())} row(s) hold a {NAME_DEF} text of no class of {classes!r}, "
                         f"e.g. row {texts.index[bad.argmax()]!r}: {texts[bad].iloc[0]!r}")
    return wnid


def read_released_laionet(path: str | os.PathLike, classes: str = "imagenet1k",
                          drop_recognized_text: bool = True,
                          models: Iterable[str] | None = None, authors_class_list: bool = False
                          ) -> tuple[pd.DataFrame, pd.Series, dict]:
    """The authors' LAIONet parquet as (results table, class of every row, counts: n_rows,
    n_recognized_text (dropped), n_evaluated). Each row's class comes from a ``wnid`` column
    when there is one, else from ``name_def_wnid`` (its exact synset text). As in every accuracy
    evaluation of the paper (A12), rows with ``wnid_is_in_recognized_text == True`` (the class
    name written on the image) are dropped from the results (``drop_recognized_text=False`` keeps
    them); the class frequencies (LAION weights) count every row, before that drop (A12)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"released LAIONet {path} not found (the authors' LAIONet parquet, "
                                "with top_1_is_correct_<model> columns)")
    df = pd.read_parquet(path)
    if "wnid" in df.columns:
        wnid = df["wnid"].astype(str)
    elif NAME_DEF in df.columns:
        wnid = name_def_wnids(df[NAME_DEF], classes, authors_class_list)
    else:
        raise KeyError(f"{path}: neither a 'wnid' nor a {NAME_DEF!r} column gives the rows' classes")
    keep = np.ones(len(df), dtype=bool)
    if drop_recognized_text and OCR_FLAG in df.columns:
        keep = ~df[OCR_FLAG].eq(True).to_numpy()
    results = read_released_frame(df.loc[keep].assign(wnid=wnid[keep].to_numpy()), "LAIONet",
                                  str(path), models)
    return results, wnid.reset_index(drop=True).rename("wnid"), {
        "n_rows": len(df), "n_recognized_text": int((~keep).sum()), "n_evaluated": int(keep.sum())}



def caption_hash(texts) -> np.ndarray:
    """sha1 of each caption's exact UTF-8 bytes (hex, 40 chars); a null caption hashes as the
    empty marker ``"<null>"`` so that null matches only null."""
    vals = texts.to_pylist() if hasattr(texts, "to_pylist") else list(texts)
    return np.asarray([hashlib.sha1(("<null>" if t is None else "\x00" + t).encode("utf-8"))
                       .hexdigest() for t in vals], dtype=object)


def join_released_laionet(released: pd.DataFrame, laion_parts, classes: str = "imagenet1k",
                          similarity_column: str | None = None,
                          batch_rows: int = 1_000_000) -> tuple[pd.DataFrame, dict]:
    """The authors' LAIONet rows as *your* LAIONet: each row found in your LAION copy
    (``laion_parts``: a glob or list of parquet parts) by its URL **and** its caption's hash.
    Returns (laionet, report). ``laionet`` has stage 02's LAIONet columns (key = your
    ``part * 1e8 + row``, part, row, wnid, TEXT, URL, NSFW, HEIGHT, WIDTH, similarity) plus
    ``authors_index`` (the released index, kept for reference only) and the OCR flag when
    released; it can be given to stage 03 (``laionet_path``) and 04. Parts are read one at a
    time, URL and TEXT in batches of ``batch_rows`` rows (memory: one batch, plus the part's
    small NSFW/HEIGHT/WIDTH columns for the hits). ``report``: n_released,
    n_joined, n_caption_differs (the URL is in your copy but with another caption: not joined),
    n_url_absent, n_duplicate (the same URL + caption more than once in your copy: the first
    by (part, row) is used), n_released_duplicate (released rows repeating an earlier row's URL
    and caption: joined once) and examples (authors' indices) of the rows not joined. Rows are
    joined by URL and caption hash, never by the authors' global index (it points into the
    original 32 part files; a mirror or Re-LAION-400M numbers and orders rows differently)."""
    rel = released.copy()
    if "wnid" not in rel.columns:
        rel["wnid"] = name_def_wnids(rel[NAME_DEF], classes).to_numpy()
    missing = [c for c in ("URL", "TEXT") if c not in rel.columns]
    if missing:
        raise KeyError(f"released LAIONet lacks {missing}: the join needs URL and TEXT")
    rel["authors_index"] = rel.index.to_numpy()
    rel = rel.reset_index(drop=True)
    rel["_h"] = caption_hash(rel["TEXT"])
    dup_rel = rel.duplicated(["URL", "_h"]).to_numpy()  # one image, one row of your LAIONet
    rel = rel[~dup_rel].reset_index(drop=True)
    urls = pa.array(rel["URL"].dropna().unique().tolist(), pa.string())
    found, url_seen = [], set()
    for part, f in sorted(part_files(laion_parts).items()):
        pf = pq.ParquetFile(f)
        small = [c for c in LAION_COLUMNS if c not in ("URL", "TEXT") and c in pf.schema_arrow.names]
        hits_part, offset = [], 0
        for batch in pf.iter_batches(batch_size=batch_rows, columns=["URL", "TEXT"]):
            mask = pc.fill_null(pc.is_in(batch.column("URL"), value_set=urls), False)
            idx = np.flatnonzero(mask.to_numpy(zero_copy_only=False))
            if len(idx):
                sub = batch.take(pa.array(idx))
                url_seen.update(sub.column("URL").to_pylist())
                hit = pd.DataFrame({"URL": sub.column("URL").to_pylist(),
                                    "TEXT": sub.column("TEXT").to_pylist(),
                                    "_h": caption_hash(sub.column("TEXT")), "part": part,
                                    "row": idx + offset})
                hits_part.append(hit.merge(rel[["URL", "_h"]].drop_duplicates(), on=["URL", "_h"]))
            offset += batch.num_rows
        hp = pd.concat(hits_part, ignore_index=True) if hits_part else ()
        if len(hp):  # the small LAION columns of the hits, by row position
            extra = pq.read_table(f, columns=small).take(pa.array(hp["row"].to_numpy()))
            found.append(pd.concat([hp, extra.to_pandas()], axis=1))
    hits = (pd.concat(found, ignore_index=True) if found
            else pd.DataFrame(columns=["URL", "_h", "part", "row", *LAION_COLUMNS]))
    hits = hits.sort_values(["part", "row"], kind="stable")
    n_dup = int(hits.duplicated(["URL", "_h"]).sum())
    hits = hits.drop_duplicates(["URL", "_h"])
    keep_rel = [c for c in ("authors_index", "URL", "_h", "wnid", OCR_FLAG) if c in rel.columns]
    sim = similarity_column or next((c for c in rel.columns
                                     if c.startswith("text_to_name_def_wnid_similarity")), None)
    if sim:
        keep_rel.append(sim)
    joined = rel[keep_rel].merge(hits, on=["URL", "_h"], how="inner")
    ok = rel.set_index(["URL", "_h"]).index.isin(joined.set_index(["URL", "_h"]).index)
    differs = ~ok & rel["URL"].isin(url_seen).to_numpy()
    absent = ~ok & ~differs
    out = pd.DataFrame({
        "key": row_key(joined["part"].to_numpy(np.int64), joined["row"].to_numpy(np.int64)),
        "part": joined["part"].astype("int64"), "row": joined["row"].astype("int64"),
        "wnid": joined["wnid"].astype(str)})
    for c in LAION_COLUMNS:
        out[c] = joined[c].to_numpy() if c in joined.columns else None
    out["similarity"] = joined[sim].to_numpy(np.float64) if sim else np.nan
    out["authors_index"] = joined["authors_index"].to_numpy()
    if OCR_FLAG in joined.columns:
        out[OCR_FLAG] = joined[OCR_FLAG].to_numpy()
    out = out.sort_values("key", kind="stable").reset_index(drop=True)
    report = {"n_released": int(len(rel) + dup_rel.sum()), "n_released_duplicate": int(dup_rel.sum()),
              "n_joined": len(out), "n_caption_differs": int(differs.sum()),
              "n_url_absent": int(absent.sum()), "n_duplicate": n_dup,
              "caption_differs_examples": rel.loc[differs, "authors_index"].head(5).tolist(),
              "url_absent_examples": rel.loc[absent, "authors_index"].head(5).tolist()}
    return out, report
