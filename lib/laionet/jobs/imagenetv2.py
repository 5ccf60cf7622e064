"""Stage 06's files: ImageNetV2's releases and votes read, stage 04's classifiers run on them."""

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from laionet.jobs import evaluation as pipeline
from laionet.jobs.image_embeddings import ImageEmbeddings, ImageSource
from laionet.jobs.inference import classifier_predictor, evaluate
from laionet.method.accuracy import accuracy_table
from laionet.method.selection_frequency import (EMPTY_ACCURACY, EMPTY_CURVE, VERSIONS, pool_images,
                                                threshold_curve)
from laionet.models.classifiers import read_classifier_specs
from laionet.sources.imagenet import imagenetv2_version, read_imagenetv2
from laionet.util.files import write_parquet


def read_releases(root: str | os.PathLike, class_info: str | os.PathLike | None = None
                  ) -> dict[str, pd.DataFrame]:
    """Every release: version name -> ``read_imagenetv2`` table (image_key, path, wnid, ...)."""
    return {v.name: read_imagenetv2(root, v.name, class_info or None) for v in VERSIONS}


def sources(download_dir: str | os.PathLike) -> dict[str, ImageSource]:
    """Where stage 06's datasets are read: LAIONet from stage 03, ImageNet and V2 from files."""
    return {"LAIONet": ImageSource.laion(download_dir), "ImageNet": ImageSource.imagenet_val(),
            **{v.name: ImageSource.imagenetv2(v.name) for v in VERSIONS}}


def read_selection_frequencies(path: str | os.PathLike) -> pd.DataFrame:
    """Per-image votes (version, path "<class index>/<file>", wnid, selection_frequency), keyed
    as the releases key their images, by release name."""
    sf = pd.read_parquet(path)
    sf["image_key"] = sf["path"].str.split("/", n=1).str[1]
    sf["version"] = sf["version"].map(lambda x: imagenetv2_version(x).name)
    return sf


def selection_frequency_curve(path: str | os.PathLike | None,
                              embeddings: Mapping[str, ImageEmbeddings],
                              thresholds: Sequence[float], min_images: int = 5) -> pd.DataFrame:
    """``threshold_curve`` from the votes at ``path`` (empty without: real V2 has none)."""
    if not path or not Path(path).is_file():
        return pd.DataFrame(columns=list(EMPTY_CURVE))
    pool, vecs = pool_images(read_selection_frequencies(path), embeddings)
    return threshold_curve(pool, vecs, thresholds, embeddings["LAIONet"].by_class(),
                           embeddings["ImageNet"].by_class(), min_images)


def release_results_files(out: str | os.PathLike) -> dict[str, Path]:
    """Where each release's per-image results go (the cached accuracy sub-step)."""
    return {v.name: Path(out) / f"results_imagenetv2-{v.name}.parquet" for v in VERSIONS}


def evaluate_releases(classifiers: str, v2: Mapping[str, pd.DataFrame],
                      files: Mapping[str, Path], device: str = "auto",
                      batch_size: int = 64) -> None:
    """Stage 04's classifiers on every release, one results file each (stage 04's columns)."""
    universe = sorted(set().union(*(set(v2[v.name]["wnid"]) for v in VERSIONS)))
    predictors = [classifier_predictor(c, universe, "cpu" if device == "auto" else device)
                  for c in read_classifier_specs(classifiers)]
    for v in VERSIONS:
        write_parquet(evaluate(pipeline.imagenet_records(v2[v.name]), predictors,
                               f"ImageNetV2-{v.letter}", batch_size), files[v.name])


def release_accuracy(laionet_results: str | os.PathLike, files: Mapping[str, Path],
                     keys: Sequence[str] | None = None) -> pd.DataFrame:
    """Equally weighted accuracy on LAIONet and each release, projected onto LAIONet's ``keys``
    (A16, as stage 04 projects ImageNet; None: the classes with LAIONet results)."""
    results = pipeline.read_results([laionet_results] + [files[v.name] for v in VERSIONS])
    keys = sorted(results.loc[results["dataset"] == "LAIONet", "wnid"].unique()
                  if keys is None else keys)
    acc = accuracy_table(results, projections={f"ImageNetV2-{v.letter}": keys for v in VERSIONS})
    return acc[acc["weighting"] == "equal"].reset_index(drop=True)


def accuracy_on_releases(classifiers: str | None, eval_dir: str | os.PathLike | None,
                         v2: Mapping[str, pd.DataFrame], out: str | os.PathLike, step: Any,
                         device: str = "auto", batch_size: int = 64,
                         keys: Sequence[str] | None = None) -> pd.DataFrame:
    """B13: ``release_accuracy``, evaluating the releases first unless ``step`` is current and its
    files exist; empty without classifiers or stage 04's LAIONet results."""
    laionet_results = Path(eval_dir) / "results_laionet.parquet" if eval_dir else None
    if not classifiers or laionet_results is None or not laionet_results.is_file():
        print(f"accuracy skipped: classifiers={classifiers!r}, LAIONet results "
              f"{laionet_results or '(no eval_dir)'} "
              f"{'found' if laionet_results and laionet_results.is_file() else 'missing (run stage 04)'}")
        return pd.DataFrame(columns=list(EMPTY_ACCURACY))
    files = release_results_files(out)
    if step.current() and all(f.is_file() for f in files.values()):
        print("ImageNetV2 results are current: reusing", sorted(f.name for f in files.values()))
    else:
        evaluate_releases(classifiers, v2, files, device, batch_size)
        step.done(files=[f.name for f in files.values()])
    return release_accuracy(laionet_results, files, keys)
