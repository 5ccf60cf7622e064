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
import functools
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from laionet.jobs.inference import (RESULT_SCHEMA, Predictor, ResizedFile, TarMember,
                                    classifier_predictor, evaluate, evaluate_shards, shard_tables,
                                    zero_shot_predictor)
from laionet.paper import GALLERY_SKIP_PREDICTED  # noqa: F401
from laionet.util.files import write_json, write_parquet
from laionet.jobs.download import download_settings, iter_downloaded, load_manifest, member_index
from laionet.util.files import atomic_path, read_json
from laionet.models import load_image_encoder, load_text_encoder
from laionet.models.classifiers import paper_models, read_classifier_specs
from laionet.models.labels import label_map_coverage, label_space_wnids
from laionet.sources.classes import class_table
from laionet.sources.imagenet import read_imagenet_val
from laionet.sources.released import join_released_laionet, paper_laionet_keys, read_lemma_pairs, read_released, read_released_laionet
from laionet.jobs.embedding_store import safe_name

SUCCESS = "success"
RESULT_FILES = {"LAIONet": "results_laionet.parquet", "ImageNet": "results_imagenet.parquet"}
GROUPS, COVERAGE = "groups.json", "coverage.json"
#: per (dataset, shard, model) result files, appended as they are made (resume); the two
#: results files are assembled from them at the end
PARTS = "results_parts"
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

    man = load_manifest(download_dir)
    ok = man["status"].eq(SUCCESS).to_numpy()
    failed = man.loc[~ok, ["key", "wnid"]]

    def gen():
        for key, wnid, im in iter_downloaded(download_dir):
            yield str(key), wnid, im
        for key, wnid in failed.itertuples(index=False):
            yield str(key), wnid, None

    return gen(), len(man), int((~ok).sum())


def laionet_shards(download_dir: str | os.PathLike) -> list[tuple[str, list[tuple]]]:
    """The downloaded LAIONet as (shard name, records) in the download's shard order, each image
    a ``TarMember`` of the key -> (tar, member) index; the rows that did not download come last
    as shard "missing" with source None (excluded from accuracy, never dropped)."""

    man = load_manifest(download_dir)
    idx = member_index(download_dir)
    out = [(f"laion-{name}", [(str(k), w, TarMember(t, int(o), int(n))) for k, w, t, o, n in
                              g[["key", "wnid", "tar", "offset", "size"]].itertuples(index=False)])
           for name, g in idx.groupby("shard", sort=True)]
    failed = man.loc[~man["status"].eq(SUCCESS), ["key", "wnid"]]
    out.append(("laion-missing", [(str(k), w, None) for k, w in failed.itertuples(index=False)]))
    return out


def imagenet_shards(val: pd.DataFrame, shard_size: int = 1000,
                    resize: dict | None = None) -> list[tuple[str, list[tuple]]]:
    """An ImageNet-style table (image_key, path, wnid) as (shard name, records) of
    ``shard_size`` images each, in table order. ``resize``: the settings of LAIONet's download
    (``download.download_settings``): each file is resized and re-encoded as that download stored
    LAIONet's images, in the decoding worker (resolution parity); None: the files as they are, at
    full size (the paper)."""
    recs = [(k, w, p if resize is None else ResizedFile(str(p), resize))
            for k, w, p in val[["image_key", "wnid", "path"]].itertuples(index=False)]
    return [(f"val-{i // shard_size:05d}", recs[i:i + shard_size])
            for i in range(0, len(recs), shard_size)]


def assemble(parts_dir: str | os.PathLike, shards: Sequence[str], models: Sequence[str],
             dest: str | os.PathLike) -> Path:
    """One results file from the per (shard, model) files, streamed (one piece in memory)."""

    with atomic_path(dest) as tmp:
        with pq.ParquetWriter(tmp, RESULT_SCHEMA) as w:
            w.write_table(RESULT_SCHEMA.empty_table())
            for t in shard_tables(parts_dir, shards, models):
                w.write_table(t)
    return Path(dest)


def imagenet_records(val: pd.DataFrame, resize: dict | None = None) -> tuple[Iterator[tuple], int]:
    """(records, total) of an ImageNet-style table (image_key, path, wnid). ``resize``: the
    settings of LAIONet's download (``download.download_settings``): each file is first resized
    and re-encoded as that download stored LAIONet's images (resolution parity); None: the files
    as they are, at full size (the paper)."""
    rows = val[["image_key", "wnid", "path"]].itertuples(index=False)
    if resize is None:
        return ((k, w, p) for k, w, p in rows), len(val)
    return ((k, w, ResizedFile(str(p), resize).read()) for k, w, p in rows), len(val)


def build_predictors(classifiers, universe: Sequence[str] | None, zero_shot: dict | None = None,
                     device: str = "cpu") -> list[Predictor]:
    """Classifier predictors (+ one zero-shot predictor when ``zero_shot`` holds name,
    image_encoder, text_embeddings, class_wnids, paper_nan_as_wrong)."""
    preds = [classifier_predictor(c, universe=universe, device=device) for c in classifiers]
    if zero_shot:
        preds.append(zero_shot_predictor(**zero_shot))
    return preds


def predictor_loaders(classifiers, universe: Sequence[str] | None, zero_shot: dict | None = None,
                      device: str = "cpu") -> tuple[list[Callable[[], Predictor]], list[str]]:
    """(loaders, model names) of ``build_predictors``' predictors: each loader loads its model
    when called, so a bounded number is in memory at once. ``zero_shot`` may hold
    ``image_encoder``/``text_embeddings`` as zero-argument callables (loaded lazily too)."""
    loaders = [functools.partial(classifier_predictor, c, universe=universe, device=device)
               for c in classifiers]
    names = [c.name for c in classifiers]
    if zero_shot:
        def zs(zs=dict(zero_shot)):
            kw = {k: (v() if callable(v) and k in ("image_encoder", "text_embeddings") else v)
                  for k, v in zs.items()}
            return zero_shot_predictor(**kw)

        loaders.append(zs)
        names.append(zero_shot["name"])
    return loaders, names


def zero_shot_spec(name: str, image_encoder: str, text_encoder: str, table: pd.DataFrame,
                   paper_nan_as_wrong: bool = False, device: str = "cpu") -> dict:
    """``predictor_loaders``' zero-shot entry: the image encoder and the class texts
    (``table["name_def"]``, the authors' prompts) embedded by ``text_encoder``, both loaded on
    ``device`` only when the model's turn comes (``max_models``)."""

    return dict(name=name,
                image_encoder=functools.partial(load_image_encoder, image_encoder, device=device),
                text_embeddings=lambda: load_text_encoder(text_encoder, device=device)
                .embed_texts(list(table["name_def"])),
                class_wnids=list(table["wnid"]), paper_nan_as_wrong=paper_nan_as_wrong)


class _ModelInfo:
    """Each model's mapped outputs, saved when it is loaded, so a resumed run that has nothing
    left for a model never loads it again."""

    def __init__(self, folder: Path):
        self.folder = folder

    def _path(self, name: str) -> Path:
        return self.folder / f"{safe_name(name)}.json"

    def record(self, p: Predictor) -> None:
        print(f"{p.name}: {p.info.get('n_mapped', len(p.output_wnids))} mapped outputs, "
              f"preprocessing group {hash(p.transform_key) & 0xffff:04x}")
        write_json({"name": p.name, "output_wnids": list(p.output_wnids)}, self._path(p.name))

    def output_wnids(self, name: str, loader: Callable[[], Predictor]) -> list[str]:
        path = self._path(name)
        if not path.is_file():
            self.record(loader())

        return read_json(path)["output_wnids"]


def _reset_if_changed(parts: Path, signature: dict) -> None:
    """Start ``parts`` afresh when what its results depend on changed (a notebook rerun with
    other models outside the runner, which removes stale products itself)."""
    import shutil

    sig = parts / "signature.json"
    if sig.is_file() and read_json(sig) != json.loads(json.dumps(signature, default=str)):
        print(f"{parts}: made with other models or settings; starting it afresh")
        shutil.rmtree(parts)
    if not sig.is_file():
        write_json(signature, sig)


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
                  n_workers: int = 0, max_models: int = 8, val_shard_size: int = 1000,
                  timings: Callable | None = None) -> Evaluation:
    """The inference route: load ``classifiers`` (``laionet.evaluation.read_classifier_specs``),
    restrict their outputs to ``universe`` (a label space or wnid file; default: the class
    list), add the zero-shot predictor (``zero_shot_encoder`` with the class texts ``name_def``
    embedded by ``zero_shot_text_encoder``) when one is given, evaluate every LAIONet row of
    ``download_dir`` (not downloaded: a missing row) and every ImageNet val image (with ``resolution_parity``,
    resized and re-encoded first with the download's own settings; default: at full size, the
    paper), write the products into ``out`` and return them. ``timings`` is a ``Stage.timings``-like callable.

    Per shard (the download's tar shards; ImageNet val in ``val_shard_size`` images): each
    (model, shard) result is written to ``out/results_parts`` when done, so a killed run resumes
    without recomputing one; at most ``max_models`` models are loaded at once; images are
    decoded in ``n_workers`` worker processes, once per batch of models."""

    out = Path(out)
    laionet = pd.read_parquet(laionet_path, columns=["key", "wnid"])
    specs = read_classifier_specs(classifiers)
    groups = {c.name: c.group for c in specs}
    table = class_table(classes, authors_class_list=authors_class_list, head_source=head_source)
    label_universe = label_space_wnids(universe) if universe else list(table["wnid"])
    zero_shot = None
    if zero_shot_encoder:
        zero_shot = zero_shot_spec(zero_shot_name, zero_shot_encoder, zero_shot_text_encoder, table,
                                   paper_nan_as_wrong, device)
        groups[zero_shot_name] = "clip"
    loaders, names = predictor_loaders(specs, label_universe, zero_shot, device=device)
    parts = out / PARTS
    _reset_if_changed(parts, {"classifiers": [repr(c) for c in specs], "universe": label_universe,
                              "zero_shot": zero_shot_encoder or "",
                              "zero_shot_text": zero_shot_text_encoder if zero_shot else "",
                              "paper_nan_as_wrong": paper_nan_as_wrong,
                              "resolution_parity": resolution_parity})
    models = _ModelInfo(parts / "models")
    val = read_imagenet_val(imagenet_val_dir, imagenet_devkit_dir)
    errs = {}
    for dataset, shards in (("LAIONet", None), ("ImageNet", None)):
        with _timed(timings, f"evaluate_{dataset.lower()}"):
            if dataset == "LAIONet":
                shards = laionet_shards(download_dir)
                n_missing = len(shards[-1][1])
                print(f"LAIONet: {sum(len(r) for _, r in shards)} rows in {len(shards) - 1} "
                      f"shard(s), {n_missing} not downloaded (kept as missing)")
            else:
                shards = imagenet_shards(val, val_shard_size, download_settings(download_dir)
                                         if resolution_parity else None)
            errs[dataset] = evaluate_shards(shards, loaders, dataset, parts / dataset, names=names,
                                            batch_size=batch_size,
                                            n_workers=n_workers if n_workers > 1 else 0,
                                            max_models=max_models, on_loaded=models.record)
            assemble(parts / dataset, [s for s, _ in shards], names, out / RESULT_FILES[dataset])
    for name, e in errs.items():
        if e:
            print(f"{name}: {len(e)} undecodable image(s), e.g. {e[:3]}")
    outputs = {n: models.output_wnids(n, loaders[i]) for i, n in enumerate(names)}
    coverage = {n: {k: v for k, v in label_map_coverage(
        w, laionet["wnid"].unique()).items() if k != "missing"} for n, w in outputs.items()}
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
    when given, their LAIONet parquet (``laionet.sources.released.read_released_laionet``:
    classes from ``name_def_wnid``, rows whose class name is written on the image dropped as in
    A12, LAION weights from every row) as our results; the ImageNet keys are their 978 LAIONet
    keys derived from ``lemma_map`` when given, else the LAIONet table's classes (without one:
    every ImageNet class, no projection). Writes the same products as ``run_inference`` (an
    empty LAIONet results file when there is no table; no coverage: no label maps are involved)."""

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

    return {str(k): im for k, _, im in iter_downloaded(download_dir, keys=[int(k) for k in keys])}


# B9's gallery skips images the model calls "web site" or "book jacket" (spec A21)


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
