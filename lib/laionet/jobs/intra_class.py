"""Stage 05's study: is LAIONet less similar within each class than ImageNet (A14-A15)?

Per image encoder, one call (``run_study``) embeds both per-class samples (cached by
``laionet.jobs.image_embeddings``, keyed by image and file bytes) and compares them class by class (``laionet.method.similarity``).
``Study.write`` saves stage 05's products; stage 06 reads them back with ``read_samples`` and
``read_encoders`` (it never reads 05's manifest).
"""

from __future__ import annotations

import os
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from laionet.jobs.image_embeddings import ImageSource, embed_samples, encoder_label
from laionet.method.similarity import compare_datasets, sample_per_class
from laionet.util.files import read_json, write_json, write_parquet

A, B = "LAIONet", "ImageNet"
ENCODERS = "encoders.json"
TABLES = ("samples", "class_stats", "comparison", "summary", "pooled")


def encoder_specs(specs: Sequence[str]) -> dict[str, str]:
    """Display label -> spec of each image encoder, in order (the first is the main one)."""
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
    """Stage 05's results over every encoder (``run_study``)."""

    encoders: dict[str, str]
    samples: dict[str, pd.DataFrame]
    class_stats: pd.DataFrame
    comparison: pd.DataFrame
    summary: pd.DataFrame
    pooled: pd.DataFrame
    skipped: dict[str, dict] = field(default_factory=dict)

    @property
    def main(self) -> str:
        """The main (first) encoder's label."""
        return next(iter(self.encoders))

    def encoder_comparison(self, label: str, method: str = "bootstrap") -> pd.DataFrame:
        """One encoder's per-class comparison, its interval method in ``attrs`` (delta_figure)."""
        cmp = self.comparison[self.comparison["encoder"] == label].reset_index(drop=True)
        cmp.attrs.update(method=method, level=0.95)
        return cmp

    def encoder_pooled(self, label: str) -> dict[str, pd.Series]:
        """One encoder's pooled histogram values by dataset (histogram_figure)."""
        pe = self.pooled[self.pooled["encoder"] == label]
        return {d: pe.loc[pe["dataset"] == d, "similarity"] for d in self.samples}

    def samples_table(self) -> pd.DataFrame:
        """Every sampled image that was embedded, with its dataset (image_key as str)."""
        return pd.concat([s.assign(dataset=d, image_key=s["image_key"].astype(str))
                          for d, s in self.samples.items()])

    def write(self, out: str | os.PathLike) -> list[Path]:
        """Stage 05's products: samples, class_stats, comparison, summary, pooled (.parquet) and
        encoders.json (label -> spec)."""
        out = Path(out)
        tables = dict(zip(TABLES, (self.samples_table(), self.class_stats, self.comparison,
                                   self.summary, self.pooled)))
        paths = [write_parquet(df, out / f"{name}.parquet") for name, df in tables.items()]
        return paths + [write_json(self.encoders, out / ENCODERS)]


def run_study(encoders: Mapping[str, str], samples: Mapping[str, pd.DataFrame],
              sources: Mapping[str, ImageSource], cache_root: str | os.PathLike,
              method: str = "bootstrap", min_pairs: int = 7, n_boot: int = 1000, seed: int = 0,
              batch_size: int = 64, device: str = "auto",
              timings: Callable[[str], Any] | None = None, load: Callable | None = None,
              on_error: str = "raise") -> Study:
    """For each encoder (label -> spec): embed the two samples (``samples`` and ``sources``:
    the dataset compared, then the reference, e.g. LAIONet and ImageNet) and compare them with
    ``compare_datasets``; embeddings go through the stores under ``cache_root``
    (``Stage.cache_dir("image_embeddings")``). ``timings`` is a step timer (``Stage.timings``); ``load`` loads an
    encoder from its spec (default ``laionet.models.load_image_encoder``). ``on_error``: an
    undecodable image stops the study ("raise", naming it) or is left out and listed ("skip")."""
    if load is None:
        from laionet.models import load_image_encoder as load
    timer = timings or (lambda name: nullcontext())
    names = tuple(samples)
    if len(names) != 2:
        raise ValueError(f"run_study compares two datasets, got {list(names)}")
    stats, comps, summaries, pooled, skipped = [], [], [], [], {}
    for label, spec in encoders.items():
        with timer(f"load {label}"):
            encoder = load(spec, device=device)
        with timer(f"embed {label}"):
            emb = embed_samples(encoder, samples, sources, cache_root, batch_size=batch_size,
                                on_error=on_error)
        for d, e in emb.items():
            if e.skipped:
                print(f"{d}: {len(e.skipped)} image(s) skipped: "
                      f"{pd.Series(e.skipped).value_counts().to_dict()}")
                skipped.setdefault(d, {}).update(e.skipped)
        with timer(f"statistics {label}"):
            c = compare_datasets(emb[names[0]].by_class(), emb[names[1]].by_class(), names,
                                 method=method, min_pairs=min_pairs, n_boot=n_boot, seed=seed)
        stats.append(_with_encoder(c.stats, label))
        comps.append(c.comparison.assign(encoder=label))
        summaries.append({"encoder": label, "spec": spec, **c.summary})
        pooled.append(_with_encoder(c.pooled, label))
    used = {d: s[~s["image_key"].isin(list(skipped.get(d, {})))].reset_index(drop=True)
            for d, s in samples.items()}
    return Study(dict(encoders), used, pd.concat(stats, ignore_index=True),
                 pd.concat(comps, ignore_index=True), pd.DataFrame(summaries),
                 pd.concat(pooled, ignore_index=True), skipped)


def _with_encoder(df: pd.DataFrame, label: str) -> pd.DataFrame:
    """``encoder`` inserted before the last column (``dataset``), as stage 05 always wrote it."""
    df = df.copy()
    df.insert(len(df.columns) - 1, "encoder", label)
    return df


# ------------------------------------------------------------------------------ reading back
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


def read_encoders(similarity_dir: str | os.PathLike) -> dict[str, str]:
    """Stage 05's encoders.json: label -> spec, the main encoder first."""
    return read_json(Path(similarity_dir) / ENCODERS)


def main_encoder(explicit: str | None, similarity_dir: str | os.PathLike) -> tuple[str, str]:
    """(label, spec) of the encoder a later stage uses: ``explicit`` when set, else stage 05's
    first (main) encoder."""
    spec = explicit or next(iter(read_encoders(similarity_dir).values()))
    return encoder_label(spec), spec


# ------------------------------------------------------------------------------ side analyses
def frequency_vs_similarity(class_stats: pd.DataFrame, laionet_wnids: pd.Series,
                            encoder: str, dataset: str = A) -> pd.DataFrame:
    """B8: per class of ``dataset``, its relative frequency in LAIONet and its mean intra-class
    similarity under ``encoder`` (columns wnid, relative_frequency, mean)."""
    st = class_stats[(class_stats["encoder"] == encoder) & (class_stats["dataset"] == dataset)]
    freq = pd.Series(laionet_wnids).value_counts(normalize=True)
    return pd.DataFrame({"wnid": st["wnid"].to_numpy(),
                         "relative_frequency": st["wnid"].map(freq).to_numpy(),
                         "mean": st["mean"].to_numpy()})


def recall_vs_delta(eval_dir: str | os.PathLike | None, comparison: pd.DataFrame, encoder: str,
                    min_images: int = 10) -> pd.DataFrame | None:
    """B7: per model and class with >= ``min_images`` evaluated LAIONet images, its recall@1
    (stage 04's results_laionet.parquet in ``eval_dir``) and the class's delta of intra-class
    similarity under ``encoder`` (NaN when untested). None, with a note, without results."""
    from laionet.method.accuracy import per_class_recall

    results = Path(eval_dir) / "results_laionet.parquet" if eval_dir else None
    if results is None or not results.is_file():
        print(f"no stage 04 results ({results or 'no eval_dir'}): recall vs Δ similarity skipped")
        return None
    rec = per_class_recall(pd.read_parquet(results), k=1)
    rec = rec[rec["n"] >= min_images]
    cmp = comparison[(comparison["encoder"] == encoder) & comparison["tested"]]
    delta = cmp.set_index("wnid")["delta"]
    return pd.DataFrame({"model": rec["model"].to_numpy(), "wnid": rec["wnid"].to_numpy(),
                         "recall": rec["recall"].to_numpy(),
                         "delta": delta.reindex(rec["wnid"]).to_numpy(dtype=np.float64)})
