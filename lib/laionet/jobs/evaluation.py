"""Stage 04's per-image results (§3.1): ``evaluate_stage`` runs ``run_inference`` (every
classifier and the zero-shot encoder on the downloaded LAIONet and on ImageNet val) or
``released_evaluation`` (the authors' released correctness tables, no model runs). Both write
``PRODUCTS`` (a results file per dataset, each model's group and label-map coverage of the
LAIONet classes) and return an ``Evaluation``."""

import dataclasses
import functools
import inspect
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from laionet.jobs.download import download_settings, load_manifest, member_index, read_images
from laionet.jobs.embedding_store import safe_name
from laionet.jobs.inference import (RESULT_SCHEMA, Predictor, ResizedFile, TarMember,
                                    classifier_predictor, evaluate_shards, shard_tables,
                                    zero_shot_predictor)
from laionet.models import load_image_encoder, load_text_encoder
from laionet.models.classifiers import Classifier, paper_models, read_classifier_specs
from laionet.models.labels import label_map_coverage, label_space_wnids
from laionet.paper import GALLERY_SKIP_PREDICTED
from laionet.sources.classes import class_table
from laionet.sources.imagenet import read_imagenet_val
from laionet.sources.released import (join_released_laionet, paper_laionet_keys, read_lemma_pairs,
                                      read_released, read_released_laionet)
from laionet.util.files import atomic_path, write_json, write_parquet
from laionet.util.fingerprint import (Marker, fingerprint, path_fingerprint, spec_fingerprint,
                                      versions)
from laionet.util.timings import Timings

SUCCESS = "success"
RESULT_FILES = {"LAIONet": "results_laionet.parquet", "ImageNet": "results_imagenet.parquet"}
GROUPS, COVERAGE = "groups.json", "coverage.json"
PARTS = "results_parts"  # per (dataset, shard, model) results and markers, assembled at the end
PRODUCTS = (*RESULT_FILES.values(), GROUPS, COVERAGE)
# released route, with released_laion_parts set: the authors' rows as your LAIONet
JOINED_LAIONET, JOIN_REPORT = "released_laionet_joined.parquet", "released_join.json"


@dataclass
class Evaluation:
    """Per-image ``results`` of both datasets, every LAIONet row's class, the ``keys`` ImageNet is
    projected onto, ``groups`` and ``coverage`` by model, ``heads``, the class table."""

    results: pd.DataFrame
    laionet_wnids: pd.Series
    keys: list[str]
    groups: dict[str, str]
    coverage: dict[str, dict] = field(default_factory=dict)
    heads: dict[str, str] = field(default_factory=dict)
    classes: pd.DataFrame | None = None


def laionet_shards(download_dir: str | os.PathLike) -> list[tuple[str, list[tuple]]]:
    """The downloaded LAIONet as (shard name, records of ``TarMember``s), the rows that did not
    download last as shard "missing" with source None (excluded, never dropped)."""
    man = load_manifest(download_dir)
    idx = member_index(download_dir)
    out = [(f"laion-{name}", [(str(k), w, TarMember(t, int(o), int(n))) for k, w, t, o, n in
                              g[["key", "wnid", "tar", "offset", "size"]].itertuples(index=False)])
           for name, g in idx.groupby("shard", sort=True)]
    failed = man.loc[~man["status"].eq(SUCCESS), ["key", "wnid"]]
    out.append(("laion-missing", [(str(k), w, None) for k, w in failed.itertuples(index=False)]))
    return out


def imagenet_records(val: pd.DataFrame, resize: dict | None = None) -> list[tuple]:
    """(image_key, wnid, source) of an ImageNet-style table (image_key, path, wnid); ``resize``:
    LAIONet's download settings (resolution parity: a ``ResizedFile``); None: full size (paper)."""
    return [(k, w, p if resize is None else ResizedFile(str(p), resize))
            for k, w, p in val[["image_key", "wnid", "path"]].itertuples(index=False)]


def zero_shot_loader(name: str, image_encoder: str, text_encoder: str, table: pd.DataFrame,
                     paper_nan_as_wrong: bool = False, device: str = "cpu"
                     ) -> Callable[[], Predictor]:
    """The zero-shot predictor, loaded on ``device`` when its turn comes: the image encoder and
    the class texts (``name_def``, the authors' prompts) embedded by ``text_encoder``."""
    return lambda: zero_shot_predictor(
        name, load_image_encoder(image_encoder, device=device),
        load_text_encoder(text_encoder, device=device).embed_texts(list(table["name_def"])),
        list(table["wnid"]), paper_nan_as_wrong=paper_nan_as_wrong)


def classifier_key(c: Classifier, universe: Sequence[str]) -> str:
    """What makes a classifier's outputs: spec (not group), checkpoint, label universe, versions."""
    spec = {k: v for k, v in dataclasses.asdict(c).items() if k != "group"}
    weights = path_fingerprint(c.checkpoint) if c.checkpoint and Path(c.checkpoint).exists() else ""
    return fingerprint([spec, weights, list(universe), versions()])


def write_products(out: Path, results: dict[str, Any], groups: dict, coverage: dict) -> None:
    """The results files (tables, or per-shard files assembled) and the two json products."""
    for dataset, name in RESULT_FILES.items():
        res = results.get(dataset)
        if isinstance(res, pd.DataFrame):
            write_parquet(pa.Table.from_pandas(res, schema=RESULT_SCHEMA, preserve_index=False),
                          out / name)
        else:  # (parts folder, shards, models): streamed, one piece in memory
            with atomic_path(out / name) as tmp, pq.ParquetWriter(tmp, RESULT_SCHEMA) as w:
                w.write_table(RESULT_SCHEMA.empty_table())
                for t in shard_tables(*res):
                    w.write_table(t)
    write_json(groups, out / GROUPS)
    write_json(coverage, out / COVERAGE)


def run_inference(out: str | os.PathLike, *, classes: str, classifiers: str,
                  download_dir: str | os.PathLike, laionet_path: str | os.PathLike,
                  imagenet_val_dir: str | os.PathLike,
                  imagenet_devkit_dir: str | os.PathLike | None = None,
                  authors_class_list: bool = False, head_source: str = "wordnet",
                  class_counts_path: str | os.PathLike | None = None, universe: str | None = None,
                  zero_shot_encoder: str | None = None, zero_shot_text_encoder: str = "minilm",
                  zero_shot_name: str = "zero-shot", paper_nan_as_wrong: bool = False,
                  resolution_parity: bool = False, batch_size: int = 64, device: str = "cpu",
                  n_workers: int = 0, max_models: int = 8, val_shard_size: int = 1000,
                  timings: Callable = Timings()) -> Evaluation:
    """The inference route: ``classifiers`` restricted to ``universe`` (default: the class list)
    and the zero-shot predictor on every LAIONet row of ``download_dir`` (not downloaded: a
    missing row) and every ImageNet val image (``resolution_parity``: resized as LAIONet was).
    Each (model, shard) result is kept in ``out/results_parts`` under the fingerprint of what made
    it (``evaluate_shards``), so a killed or changed run recomputes only what changed."""
    out = Path(out)
    laionet = pd.read_parquet(laionet_path, columns=["key", "wnid"])
    specs = read_classifier_specs(classifiers)
    groups = {c.name: c.group for c in specs}
    table = class_table(classes, authors_class_list=authors_class_list, head_source=head_source)
    label_universe = label_space_wnids(universe) if universe else list(table["wnid"])
    loaders = [functools.partial(classifier_predictor, c, universe=label_universe, device=device)
               for c in specs]
    keys = {c.name: classifier_key(c, label_universe) for c in specs}
    if zero_shot_encoder:
        loaders.append(zero_shot_loader(zero_shot_name, zero_shot_encoder, zero_shot_text_encoder,
                                        table, paper_nan_as_wrong, device))
        groups[zero_shot_name] = "clip"
        keys[zero_shot_name] = fingerprint([spec_fingerprint([zero_shot_encoder,
                                                              zero_shot_text_encoder]),
                                            list(table["wnid"]), list(table["name_def"]),
                                            paper_nan_as_wrong, versions()])
    names = list(keys)
    parts = out / PARTS
    info = {n: Marker(parts / "models" / f"{safe_name(n)}.json", keys[n]) for n in names}

    def record(p: Predictor) -> None:  # each model's mapped outputs: never loaded again for them
        print(f"{p.name}: {p.info.get('n_mapped', len(p.output_wnids))} mapped outputs, "
              f"preprocessing group {hash(p.transform_key) & 0xffff:04x}")
        info[p.name].done(name=p.name, output_wnids=list(p.output_wnids))

    val = imagenet_records(read_imagenet_val(imagenet_val_dir, imagenet_devkit_dir),
                           download_settings(download_dir) if resolution_parity else None)
    made, laion = {}, laionet_shards(download_dir)
    print(f"LAIONet: {sum(len(r) for _, r in laion)} rows in {len(laion) - 1} shard(s), "
          f"{len(laion[-1][1])} not downloaded (kept as missing)")
    for dataset, shards in {"LAIONet": laion, "ImageNet": [
            (f"val-{i // val_shard_size:05d}", val[i:i + val_shard_size])
            for i in range(0, len(val), val_shard_size)]}.items():
        with timings(f"evaluate_{dataset.lower()}"):
            errs = evaluate_shards(shards, loaders, dataset, parts / dataset, names=names,
                                   model_keys=keys, batch_size=batch_size,
                                   n_workers=n_workers if n_workers > 1 else 0,
                                   max_models=max_models, on_loaded=record)
            if errs:
                print(f"{dataset}: {len(errs)} undecodable image(s), e.g. {errs[:3]}")
            made[dataset] = (parts / dataset, [s for s, _ in shards], names)
    for loader, n in zip(loaders, names):
        if not info[n].current():
            record(loader())
    coverage = {n: {k: v for k, v in label_map_coverage(
        info[n].read()["output_wnids"], laionet["wnid"].unique()).items() if k != "missing"}
        for n in names}
    write_products(out, made, groups, coverage)
    return Evaluation(read_results([out / f for f in RESULT_FILES.values()]), laionet["wnid"],
                      class_keys(class_counts_path, laionet), groups, coverage,
                      dict(zip(table["wnid"], table["head"])), table)


def released_evaluation(out: str | os.PathLike, val_parquet: str | os.PathLike,
                        imagename2wnid: str | os.PathLike | None,
                        laionet_parquet: str | os.PathLike | None = None,
                        lemma_map: str | os.PathLike | None = None, classes: str = "imagenet1k",
                        drop_recognized_text: bool = True,
                        authors_class_list: bool = False) -> Evaluation:
    """The released route: the authors' ImageNet val table and their LAIONet parquet when given
    (``read_released_laionet``: rows with the class name on the image dropped as in A12) as our
    results; the ImageNet keys are their 978 LAIONet keys from ``lemma_map``, else the LAIONet
    table's classes (no table: no projection). ``run_inference``'s products, no coverage."""
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
    pm = paper_models()
    groups = dict(zip(pm["paper_name"], pm["group"]))
    write_products(out, {d: parts.get(d, results.iloc[:0]) for d in RESULT_FILES}, groups, {})
    dataset = "LAIONet" if laionet_parquet else "ImageNet"  # no LAIONet table: no projection
    keys = (paper_laionet_keys(read_lemma_pairs(lemma_map)) if lemma_map
            else sorted(results.loc[results["dataset"] == dataset, "wnid"].unique()))
    return Evaluation(results, laionet, keys, groups)


def join_released_to_laion(out: str | os.PathLike, laionet_parquet: str | os.PathLike,
                           laion_parts: str, classes: str = "imagenet1k") -> dict:
    """The authors' LAIONet rows joined to your LAION copy by URL + caption hash (your keys)."""
    joined, report = join_released_laionet(pd.read_parquet(laionet_parquet), laion_parts,
                                           classes=classes)
    write_parquet(joined, Path(out) / JOINED_LAIONET)
    write_json(report, Path(out) / JOIN_REPORT)
    return report


def evaluate_stage(out: str | os.PathLike, params: Mapping[str, Any],
                   timings: Callable = Timings()) -> Evaluation:
    """Stage 04's results from its parameters and inputs (``{**S.params, **S.inputs}``): the
    released route when ``released_val_parquet`` is set (joined to your LAION copy with
    ``released_laion_parts``), else inference."""
    p = params
    if not p.get("released_val_parquet"):
        names = set(inspect.signature(run_inference).parameters) - {"out", "timings"}
        return run_inference(out, **{k: v for k, v in p.items() if k in names}, timings=timings)
    with timings("read_released"):
        ev = released_evaluation(out, p["released_val_parquet"], p.get("released_imagename2wnid"),
                                 p.get("released_laionet_parquet"), p.get("released_lemma_map"),
                                 classes=p["classes"], authors_class_list=p["authors_class_list"])
    if p.get("released_laion_parts") and p.get("released_laionet_parquet"):
        with timings("join_released"):
            j = join_released_to_laion(out, p["released_laionet_parquet"],
                                       p["released_laion_parts"], p["classes"])
        print(f"released LAIONet joined to your LAION copy: {j['n_joined']:,} of "
              f"{j['n_released']:,} rows; not joined: {j['n_caption_differs']:,} caption "
              f"differs, {j['n_url_absent']:,} URL absent -> {Path(out) / JOINED_LAIONET}")
    return ev


def read_results(paths: Sequence[str | os.PathLike]) -> pd.DataFrame:
    """Concatenate results files (correctness as nullable booleans)."""
    df = pd.concat([pq.read_table(p).to_pandas() for p in paths], ignore_index=True)
    for c in ("correct1", "correct5"):
        df[c] = df[c].astype("boolean")
    return df


def class_keys(class_counts_path: str | os.PathLike | None, laionet: pd.DataFrame) -> list[str]:
    """The LAIONet "keys" ImageNet is projected onto (A16): the classes with any caption match
    (stage 01's class_counts), as the authors' labels dict; else LAIONet's own classes."""
    if class_counts_path and Path(class_counts_path).is_file():
        cc = pd.read_parquet(class_counts_path)
        if "n_rows" in cc.columns:
            return sorted(cc.loc[cc["n_rows"] > 0, "wnid"].astype(str))
    return sorted(laionet["wnid"].astype(str).unique())


def gallery(results: pd.DataFrame, model: str, wnid: str, download_dir: str | os.PathLike | None,
            n: int = 10, skip_predicted: Sequence[str] = GALLERY_SKIP_PREDICTED
            ) -> tuple[list, list[bool], list[str]]:
    """B9's gallery: (images, correct@5, keys) of up to ``n`` evaluated LAIONet images of
    ``wnid`` for ``model``, leaving out those whose top-1 is in ``skip_predicted`` (A21: web
    site, book jacket); empty without a download (the released route)."""
    rows = results[(results["dataset"] == "LAIONet") & (results["model"] == model)
                   & (results["wnid"] == wnid) & results["correct5"].notna()]
    if len(skip_predicted) and len(rows) and "top5" in rows:
        top1 = rows["top5"].map(lambda t: t[0] if t is not None and len(t) else None)
        rows = rows[~top1.isin(set(skip_predicted))]
    rows = rows.head(n)
    downloaded = download_dir is not None and (Path(download_dir) / "manifest.parquet").is_file()
    if not len(rows) or not downloaded:
        return [], [], []
    ims = read_images(download_dir, [int(k) for k in rows["image_key"]])
    keep = [k for k in rows["image_key"] if int(k) in ims]
    ok = rows.set_index("image_key").loc[keep, "correct5"].astype(bool).tolist()
    return [ims[int(k)] for k in keep], ok, keep
