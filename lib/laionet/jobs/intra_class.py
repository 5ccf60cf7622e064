"""Stage 05's study per image encoder (A14-A15): LAIONet vs ImageNet, class by class (its products
read back by stage 06), and the recall analyses of stages 05 and 07 on stage 04's results."""

import os
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from laionet.jobs.image_embeddings import Embedder, ImageSource, encoder_label
from laionet.method.accuracy import per_class_recall
from laionet.method.similarity import (compare_classes, pairwise_stats, pooled_resample,
                                       sample_per_class, summarize_comparison)
from laionet.models import load_image_encoder
from laionet.util.files import read_json, write_json, write_parquet
from laionet.util.timings import Timings

A, B = "LAIONet", "ImageNet"
ENCODERS = "encoders.json"
TABLES = ("samples", "class_stats", "comparison", "summary", "pooled")


def encoder_specs(specs: Sequence[str]) -> dict[str, str]:
    """Display label -> spec of each image encoder, the main one first."""
    specs = [s.strip() for s in specs if s and s.strip()]
    if not specs:
        raise ValueError("no image encoder: name at least one, e.g. open_clip:ViT-B-32:openai")
    out: dict[str, str] = {}
    for s in specs:
        label = encoder_label(s)
        if label in out:
            raise ValueError(f"encoders {out[label]!r} and {s!r} share the label {label!r}")
        out[label] = s
    return out


def downloaded_images(manifest: pd.DataFrame) -> pd.DataFrame:
    """The rows of stage 03's manifest that downloaded: image_key (the row key), wnid."""
    ok = manifest[manifest["status"] == "success"]
    return ok[["key", "wnid"]].rename(columns={"key": "image_key"}).reset_index(drop=True)


def draw_samples(datasets: Mapping[str, pd.DataFrame], n: int, seed: int,
                 paper_first_n: bool = False) -> dict[str, pd.DataFrame]:
    """``sample_per_class`` of each dataset (same n and seed)."""
    return {name: sample_per_class(df, n, seed, paper_first_n=paper_first_n)
            for name, df in datasets.items()}


@dataclass
class Study:
    """Stage 05's results over every encoder; ``comparisons``: label -> ``compare_classes`` table."""

    encoders: dict[str, str]
    samples: dict[str, pd.DataFrame]
    class_stats: pd.DataFrame
    comparisons: dict[str, pd.DataFrame]
    summary: pd.DataFrame
    pooled: pd.DataFrame
    skipped: dict[str, dict] = field(default_factory=dict)

    @property
    def main(self) -> str:  # the first encoder's label
        return next(iter(self.encoders))

    @property
    def comparison(self) -> pd.DataFrame:
        return pd.concat([c.assign(encoder=e) for e, c in self.comparisons.items()],
                         ignore_index=True)

    def encoder_pooled(self, label: str) -> dict[str, pd.Series]:
        """One encoder's pooled similarities by dataset (histogram_figure)."""
        pe = self.pooled[self.pooled["encoder"] == label]
        return {d: pe.loc[pe["dataset"] == d, "similarity"] for d in self.samples}

    def write(self, out: str | os.PathLike) -> list[Path]:
        """Stage 05's products: ``TABLES`` (.parquet; image_key as str) and ``ENCODERS``."""
        out = Path(out)
        samples = pd.concat([s.assign(dataset=d, image_key=s["image_key"].astype(str))
                             for d, s in self.samples.items()])
        tables = dict(zip(TABLES, (samples, self.class_stats, self.comparison, self.summary,
                                   self.pooled)))
        paths = [write_parquet(df, out / f"{name}.parquet") for name, df in tables.items()]
        return paths + [write_json(self.encoders, out / ENCODERS)]


def run_study(encoders: Mapping[str, str], samples: Mapping[str, pd.DataFrame],
              sources: Mapping[str, ImageSource], cache_root: str | os.PathLike,
              method: str = "bootstrap", min_pairs: int = 7, n_boot: int = 1000, seed: int = 0,
              batch_size: int = 64, device: str = "auto",
              timings: Callable[[str], Any] = Timings(), load: Callable = load_image_encoder,
              on_error: str = "raise") -> Study:
    """For each encoder (label -> spec): embed the two samples (LAIONet, then ImageNet) and compare
    them (``compare_classes``), with each one's pairwise stats and up to 100 pooled pair
    similarities per common class (A15). ``on_error="skip"``: undecodable images left out, listed."""
    names = tuple(samples)
    if len(names) != 2:
        raise ValueError(f"run_study compares two datasets, got {list(names)}")
    stats, comps, summaries, pooled, skipped = [], {}, [], [], {}
    for label, spec in encoders.items():
        with timings(f"load {label}"):
            embed = Embedder(load(spec, device=device), cache_root, batch_size, on_error)
        with timings(f"embed {label}"):
            emb = {d: embed(s, sources[d]) for d, s in samples.items()}
        for d, e in emb.items():
            if e.skipped:
                print(f"{d}: {len(e.skipped)} image(s) skipped: "
                      f"{pd.Series(e.skipped).value_counts().to_dict()}")
                skipped.setdefault(d, {}).update(e.skipped)
        with timings(f"statistics {label}"):
            groups = {d: e.by_class() for d, e in emb.items()}
            common = sorted(set(groups[names[0]]) & set(groups[names[1]]))
            comps[label] = compare_classes(*groups.values(), method=method, min_pairs=min_pairs,
                                           n_boot=n_boot, seed=seed)
            stats += [pairwise_stats(g).assign(encoder=label, dataset=d) for d, g in groups.items()]
            pooled += [pooled_resample(g, 100, seed, classes=common).assign(encoder=label, dataset=d)
                       for d, g in groups.items()]
        summaries.append({"encoder": label, "spec": spec, **summarize_comparison(comps[label])})
    used = {d: s[~s["image_key"].isin(list(skipped.get(d, {})))].reset_index(drop=True)
            for d, s in samples.items()}
    return Study(dict(encoders), used, pd.concat(stats, ignore_index=True), comps,
                 pd.DataFrame(summaries), pd.concat(pooled, ignore_index=True), skipped)


def read_samples(similarity_dir: str | os.PathLike) -> dict[str, pd.DataFrame]:
    """Stage 05's samples by dataset (LAIONet row keys back to int64)."""
    samples = pd.read_parquet(Path(similarity_dir) / "samples.parquet")
    out = {d: g.drop(columns="dataset").reset_index(drop=True)
           for d, g in samples.groupby("dataset", sort=False)}
    if A in out:
        out[A] = out[A][["image_key", "wnid"]].astype({"image_key": "int64"})
    if B in out:
        out[B] = out[B].dropna(axis=1, how="all")
    return out


def main_encoder(explicit: str | None, similarity_dir: str | os.PathLike) -> tuple[str, str]:
    """(label, spec) of the encoder a later stage uses: ``explicit``, else stage 05's main one."""
    spec = explicit or next(iter(read_json(Path(similarity_dir) / ENCODERS).values()))
    return encoder_label(spec), spec


def frequency_vs_similarity(class_stats: pd.DataFrame, laionet_wnids: pd.Series,
                            encoder: str, dataset: str = A) -> pd.DataFrame:
    """B8: per class of ``dataset``, its relative frequency in LAIONet and its mean intra-class
    similarity under ``encoder`` (columns wnid, relative_frequency, mean)."""
    st = class_stats[(class_stats["encoder"] == encoder) & (class_stats["dataset"] == dataset)]
    freq = pd.Series(laionet_wnids).value_counts(normalize=True)
    return pd.DataFrame({"wnid": st["wnid"].to_numpy(),
                         "relative_frequency": st["wnid"].map(freq).to_numpy(),
                         "mean": st["mean"].to_numpy()})


def stage04_results(eval_dir: str | os.PathLike | None,
                    datasets: Sequence[str] = ("laionet",)) -> pd.DataFrame | None:
    """Stage 04's per-image results (``results_<dataset>.parquet``), None when one is missing."""
    files = [Path(eval_dir) / f"results_{d}.parquet" for d in datasets] if eval_dir else []
    if not files or not all(f.is_file() for f in files):
        return None
    return pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)


def recall_vs_delta(eval_dir: str | os.PathLike | None, comparison: pd.DataFrame, encoder: str,
                    min_images: int = 10) -> pd.DataFrame | None:
    """B7: per model and class with >= ``min_images`` LAIONet images, recall@1 and the class's
    delta under ``encoder`` (NaN when untested); None without stage 04's results."""
    results = stage04_results(eval_dir)
    if results is None:
        print(f"no stage 04 results in {eval_dir or '(no eval_dir)'}: recall vs Δ similarity skipped")
        return None
    rec = per_class_recall(results, k=1)
    rec = rec[rec["n"] >= min_images]
    cmp = comparison[(comparison["encoder"] == encoder) & comparison["tested"]]
    delta = cmp.set_index("wnid")["delta"]
    return pd.DataFrame({"model": rec["model"].to_numpy(), "wnid": rec["wnid"].to_numpy(),
                         "recall": rec["recall"].to_numpy(),
                         "delta": delta.reindex(rec["wnid"]).to_numpy(dtype=np.float64)})


def zero_shot_recall(eval_dir: str | os.PathLike | None, model: str
                     ) -> tuple[pd.DataFrame | None, str]:
    """Stage 07's extension: per-class recall@1 of stage 04's ``model`` on LAIONet and ImageNet
    (wnid x dataset), or (None, why) when stage 04's results or the model are not there."""
    res = stage04_results(eval_dir, ("laionet", "imagenet")) if model else None
    if res is None:
        return None, f"skipped: zero_shot_model={model!r}, stage 04 results in {eval_dir or '-'}"
    res = res[res["model"] == model]
    if res.empty:
        return None, (f"stage 04 has no model {model!r}: set its zero_shot_encoder, or "
                      "zero_shot_model here to one of its models")
    rec = per_class_recall(res, 1).pivot(index="wnid", columns="dataset", values="recall").dropna()
    return rec, (f"{len(rec)} classes; LAIONet recall lower in "
                 f"{(rec['LAIONet'] < rec['ImageNet']).mean():.1%}")
