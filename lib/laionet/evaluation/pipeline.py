"""Stage 04's two routes to the per-image results, and its products.

- ``run_inference``: every classifier (and the zero-shot encoder) on the downloaded LAIONet and
  on ImageNet val, decoding each image once;
- ``released_evaluation``: the authors' released correctness tables instead (no model runs).

Both write the stage's products into its folder (``PRODUCTS``: one results file per dataset,
``groups.json`` with each model's group, ``coverage.json`` with each model's label-map coverage
of the LAIONet classes) and return an ``Evaluation``, what the aggregation and figures need.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ..io import write_json, write_parquet
from .inference import (RESULT_SCHEMA, Predictor, classifier_predictor, evaluate,
                        zero_shot_predictor)

SUCCESS = "success"
RESULT_FILES = {"LAIONet": "results_laionet.parquet", "ImageNet": "results_imagenet.parquet"}
GROUPS, COVERAGE = "groups.json", "coverage.json"
PRODUCTS = (*RESULT_FILES.values(), GROUPS, COVERAGE)
# released route, with released_laion_parts set: the authors' rows as your LAIONet
JOINED_LAIONET, JOIN_REPORT = "released_laionet_joined.parquet", "released_join.json"


@dataclass
class Evaluation:
    """What stage 04 evaluated: ``results`` (the long per-image table of both datasets),
    ``laionet_wnids`` (the class of every LAIONet row: the class frequencies; empty when the
    released route has no LAIONet table), ``keys`` (the classes ImageNet is projected onto),
    ``groups`` (model -> group), ``coverage`` (model -> label-map coverage of the LAIONet
    classes; empty on the released route) and ``heads`` (wnid -> readable class name)."""

    results: pd.DataFrame
    laionet_wnids: pd.Series
    keys: list[str]
    groups: dict[str, str]
    coverage: dict[str, dict] = field(default_factory=dict)
    heads: dict[str, str] = field(default_factory=dict)


def _write_meta(out: Path, groups: dict, coverage: dict) -> None:
    write_json(groups, out / GROUPS)
    write_json(coverage, out / COVERAGE)


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


def imagenet_records(val: pd.DataFrame, resize: dict | None = None) -> tuple[Iterator[tuple], int]:
    """(records, total) of an ImageNet-style table (image_key, path, wnid). ``resize``: the
    settings of LAIONet's download (``download.download_settings``): each file is first resized
    and re-encoded as that download stored LAIONet's images (resolution parity); None: the files
    as they are, at full size (the paper)."""
    rows = val[["image_key", "wnid", "path"]].itertuples(index=False)
    if resize is None:
        return ((k, w, p) for k, w, p in rows), len(val)
    from ..download import resize_like_download

    return ((k, w, resize_like_download(Path(p).read_bytes(), resize)) for k, w, p in rows), len(val)


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


def _timed(timings: Callable | None, name: str):
    return timings(name) if timings is not None else contextlib.nullcontext()


def run_inference(out: str | os.PathLike, *, classes: str, classifiers: str,
                  authors_class_list: bool = False, head_source: str = "wordnet",
                  download_dir: str | os.PathLike,
                  laionet_path: str | os.PathLike, imagenet_val_dir: str | os.PathLike,
                  imagenet_devkit_dir: str | os.PathLike | None = None,
                  class_counts_path: str | os.PathLike | None = None, universe: str | None = None,
                  zero_shot_encoder: str | None = None, zero_shot_text_encoder: str = "minilm",
                  zero_shot_name: str = "zero-shot", paper_nan_as_wrong: bool = False,
                  resolution_parity: bool = False, batch_size: int = 64, device: str = "cpu",
                  timings: Callable | None = None) -> Evaluation:
    """The inference route: load ``classifiers`` (``laionet.evaluation.read_classifier_specs``),
    restrict their outputs to ``universe`` (a label space or wnid file; default: the class
    list), add the zero-shot predictor (``zero_shot_encoder`` with the class texts ``name_def``
    embedded by ``zero_shot_text_encoder``) when one is given, evaluate every LAIONet row of
    ``download_dir`` and every ImageNet val image (with ``resolution_parity``, resized and
    re-encoded first with the download's own settings; default: at full size, the paper), write
    the products into ``out`` and return them (a row not downloaded is a missing row).
    ``timings`` is a ``Stage.timings``-like callable."""
    from ..classes import class_table
    from ..datasets import read_imagenet_val
    from .classifiers import read_classifier_specs
    from .labels import label_map_coverage, label_space_wnids

    out = Path(out)
    laionet = pd.read_parquet(laionet_path, columns=["key", "wnid"])
    specs = read_classifier_specs(classifiers)
    groups = {c.name: c.group for c in specs}
    table = class_table(classes, authors_class_list=authors_class_list, head_source=head_source)
    label_universe = label_space_wnids(universe) if universe else list(table["wnid"])
    zero_shot = None
    if zero_shot_encoder:
        from ..encoders import load_image_encoder, load_text_encoder

        zero_shot = dict(name=zero_shot_name, image_encoder=load_image_encoder(zero_shot_encoder),
                         text_embeddings=load_text_encoder(zero_shot_text_encoder)
                         .embed_texts(list(table["name_def"])),
                         class_wnids=list(table["wnid"]), paper_nan_as_wrong=paper_nan_as_wrong)
        groups[zero_shot_name] = "clip"
    predictors = build_predictors(specs, label_universe, zero_shot, device=device)
    for p in predictors:
        print(f"{p.name}: {p.info.get('n_mapped', len(p.output_wnids))} mapped outputs, "
              f"preprocessing group {hash(p.transform_key) & 0xffff:04x}")
    val = read_imagenet_val(imagenet_val_dir, imagenet_devkit_dir)
    with _timed(timings, "evaluate_laionet"):
        recs, n, n_missing = laionet_records(download_dir)
        print(f"LAIONet: {n} rows, {n_missing} not downloaded (kept as missing)")
        _, err_l = evaluate_to_file(recs, n, predictors, "LAIONet", out / RESULT_FILES["LAIONet"],
                                    batch_size)
    with _timed(timings, "evaluate_imagenet"):
        from ..download import download_settings

        recs, n = imagenet_records(val, download_settings(download_dir) if resolution_parity
                                   else None)
        _, err_i = evaluate_to_file(recs, n, predictors, "ImageNet", out / RESULT_FILES["ImageNet"],
                                    batch_size)
    for name, errs in (("LAIONet", err_l), ("ImageNet", err_i)):
        if errs:
            print(f"{name}: {len(errs)} undecodable image(s), e.g. {errs[:3]}")
    coverage = {p.name: {k: v for k, v in label_map_coverage(
        p.output_wnids, laionet["wnid"].unique()).items() if k != "missing"} for p in predictors}
    _write_meta(out, groups, coverage)
    return Evaluation(read_results([out / f for f in RESULT_FILES.values()]), laionet["wnid"],
                      class_keys(class_counts_path, laionet), groups, coverage,
                      dict(zip(table["wnid"], table["head"])))


def released_evaluation(out: str | os.PathLike, val_parquet: str | os.PathLike,
                        imagename2wnid: str | os.PathLike | None,
                        laionet_parquet: str | os.PathLike | None = None,
                        lemma_map: str | os.PathLike | None = None, classes: str = "imagenet1k",
                        drop_recognized_text: bool = True,
                        authors_class_list: bool = False) -> Evaluation:
    """The released route: the authors' ImageNet val table (labels from ``imagename2wnid``) and,
    when given, their LAIONet parquet (``laionet.evaluation.released.read_released_laionet``:
    classes from ``name_def_wnid``, rows whose class name is written on the image dropped as in
    A12, LAION weights from every row) as our results; the ImageNet keys are their 978 LAIONet
    keys derived from ``lemma_map`` when given, else the LAIONet table's classes (without one:
    every ImageNet class, no projection). Writes the same products as ``run_inference`` (an
    empty LAIONet results file when there is no table; no coverage: no label maps are involved)."""
    from .classifiers import paper_models
    from .released import paper_laionet_keys, read_lemma_pairs, read_released, read_released_laionet

    out = Path(out)
    parts = {"ImageNet": read_released(val_parquet, "ImageNet", labels=imagename2wnid)}
    laionet = pd.Series([], dtype=object, name="wnid")
    if laionet_parquet:
        parts["LAIONet"], laionet, counts = read_released_laionet(
            laionet_parquet, classes=classes, drop_recognized_text=drop_recognized_text,
            authors_class_list=authors_class_list)
        print(f"released LAIONet: {counts['n_rows']:,} rows, {counts['n_recognized_text']:,} with "
              f"their class name on the image dropped, {counts['n_evaluated']:,} evaluated")
    results = pd.concat(list(parts.values()), ignore_index=True)
    for dataset, name in RESULT_FILES.items():
        frame = parts.get(dataset, results.iloc[:0])
        write_parquet(pa.Table.from_pandas(frame, schema=RESULT_SCHEMA, preserve_index=False),
                      out / name)
    pm = paper_models()
    groups = dict(zip(pm["paper_name"], pm["group"]))
    _write_meta(out, groups, {})
    dataset = "LAIONet" if laionet_parquet else "ImageNet"  # no LAIONet table: no projection
    keys = (paper_laionet_keys(read_lemma_pairs(lemma_map)) if lemma_map
            else sorted(results.loc[results["dataset"] == dataset, "wnid"].unique()))
    return Evaluation(results, laionet, keys, groups)


def join_released_to_laion(out: str | os.PathLike, laionet_parquet: str | os.PathLike,
                           laion_parts: str, classes: str = "imagenet1k") -> dict:
    """The authors' LAIONet rows joined to your LAION copy by URL + caption hash
    (``released.join_released_laionet``), written as ``released_laionet_joined.parquet`` (stage
    02's LAIONet columns, your keys) with the join report ``released_join.json``; returns the
    report."""
    from .released import join_released_laionet

    out = Path(out)
    joined, report = join_released_laionet(pd.read_parquet(laionet_parquet), laion_parts,
                                           classes=classes)
    write_parquet(joined, out / JOINED_LAIONET)
    write_json(report, out / JOIN_REPORT)
    return report


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


# B9's gallery skips images the model calls "web site" or "book jacket" (spec A21)
GALLERY_SKIP_PREDICTED = ("n06359193", "n07248320")


def gallery(results: pd.DataFrame, model: str, wnid: str, download_dir: str | os.PathLike | None,
            n: int = 10, skip_predicted: Sequence[str] = GALLERY_SKIP_PREDICTED
            ) -> tuple[list, list[bool], list[str]]:
    """(images, correct@5, image keys) of up to ``n`` evaluated LAIONet images of class ``wnid``
    for ``model``, in results order, leaving out images whose top-1 prediction is one of
    ``skip_predicted`` (the paper: web site, book jacket); empty without a download (the
    released route)."""
    rows = results[(results["dataset"] == "LAIONet") & (results["model"] == model)
                   & (results["wnid"] == wnid) & results["correct5"].notna()]
    if len(skip_predicted) and len(rows) and "top5" in rows:
        skip = set(skip_predicted)
        top1 = rows["top5"].map(lambda t: t[0] if t is not None and len(t) else None)
        rows = rows[~top1.isin(skip)]
    rows = rows.head(n)
    downloaded = download_dir is not None and (Path(download_dir) / "manifest.parquet").is_file()
    if not len(rows) or not downloaded:
        return [], [], []
    ims = images_of(download_dir, rows["image_key"].tolist())
    keep = [k for k in rows["image_key"] if k in ims]
    ok = rows.set_index("image_key").loc[keep, "correct5"].astype(bool).tolist()
    return [ims[k] for k in keep], ok, keep
