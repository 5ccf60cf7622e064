"""§4.1: ImageNetV2's releases as a selection-frequency ablation (A16): matched-frequency ("b",
0.73), threshold0.7 ("a", 0.85), top-images ("c", 0.93), each compared with LAIONet and ImageNet
(``release_tables``), A16's histograms, and the curve over per-image vote thresholds (demo)."""

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from laionet.method.similarity import (common_resample_sizes, group_by_class, pairwise_stats,
                                       pooled_resample, summarize_comparison)
from laionet.sources.imagenet import IMAGENETV2_VERSIONS

VERSIONS = list(IMAGENETV2_VERSIONS.values())  # b, a, c: increasing selection frequency
REFERENCES = ("LAIONet", "ImageNet")
EMPTY_CURVE = ("threshold", "n_classes", "n_images", "mean_similarity", "se",
               "share_laionet_lower", "laionet_mean_same_classes", "imagenet_mean_same_classes")
EMPTY_ACCURACY = ("dataset", "model", "k", "weighting", "accuracy", "se", "n_classes")


def describe_releases(v2: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """One row per release: letter, selection frequency, images, classes, class map."""
    return pd.DataFrame([{"version": v.name, "letter": v.letter,
                          "selection_frequency": v.selection_frequency,
                          "n_images": len(v2[v.name]), "n_classes": v2[v.name]["wnid"].nunique(),
                          "class_info": v2[v.name].attrs.get("class_info")} for v in VERSIONS])


def release_tables(comparisons: Mapping[tuple[str, str], pd.DataFrame]
                   ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """B12's tables from the ``compare_classes`` tables of each (reference, release): stacked, and
    one row per pair with letter, selection frequency and counts."""
    rel = {v.name: v for v in VERSIONS}
    comps = [c.assign(reference=r, version=v) for (r, v), c in comparisons.items()]
    rows = [{"reference": r, "version": v, "letter": rel[v].letter, "selection_frequency":
             rel[v].selection_frequency, **summarize_comparison(c)} for (r, v), c in comparisons.items()]
    return pd.concat(comps, ignore_index=True), pd.DataFrame(rows)


def release_histograms(groups: Mapping[str, Mapping[str, np.ndarray]], seed: int = 0,
                       cap: int = 100) -> dict[str, pd.Series]:
    """A16's histogram values: per class, n = min(#pairs in LAIONet and each release, cap)
    resampled pair similarities of LAIONet and of each release (name -> values)."""
    names = ["LAIONet"] + [v.name for v in VERSIONS]
    sizes = common_resample_sizes(*(groups[n] for n in names), cap=cap)
    return {n: pooled_resample(groups[n], sizes, seed)["similarity"] for n in names}


def pool_images(sf: pd.DataFrame, embeddings: Mapping[str, Any]
                ) -> tuple[pd.DataFrame, np.ndarray]:
    """Every V2 image once (the first release in selection-frequency order wins) with its
    selection frequency and its embedding: (image_key, wnid, sf, src table; aligned rows)."""
    parts = []
    for v in VERSIONS:
        rows = sf[sf["version"] == v.name]
        parts.append(pd.DataFrame({"image_key": rows["image_key"].to_numpy(),
                                   "wnid": rows["wnid"].to_numpy(),
                                   "sf": rows["selection_frequency"].to_numpy(), "src": v.name}))
    pool = pd.concat(parts, ignore_index=True).drop_duplicates("image_key").reset_index(drop=True)
    vecs = np.zeros((len(pool), next(iter(embeddings.values())).emb.shape[1]), np.float32)
    for v in VERSIONS:
        m = (pool["src"] == v.name).to_numpy()
        pos = pd.Index(embeddings[v.name].keys).get_indexer(pool.loc[m, "image_key"])
        if (pos < 0).any():
            raise KeyError(f"selection frequencies: {int((pos < 0).sum())} rows of {v.name} have "
                           f"no image in the release, e.g. "
                           f"{pool.loc[m, 'image_key'][pos < 0].head(3).tolist()}")
        vecs[m] = embeddings[v.name].emb[pos]
    return pool, vecs


def threshold_curve(pool: pd.DataFrame, vecs: np.ndarray, thresholds: Sequence[float],
                    laionet: Mapping[str, np.ndarray], imagenet: Mapping[str, np.ndarray],
                    min_images: int = 5) -> pd.DataFrame:
    """Per threshold t, the V2 images with selection frequency >= t: mean (and SE) over classes with
    >= ``min_images`` of their intra-class similarity, vs LAIONet's and ImageNet's."""
    lai_mean = pairwise_stats(laionet).set_index("wnid")["mean"]
    inet_mean = pairwise_stats(imagenet).set_index("wnid")["mean"]
    out = []
    for t in [float(x) for x in thresholds]:
        keep = (pool["sf"] >= t - 1e-9).to_numpy()
        st = pairwise_stats(group_by_class(vecs[keep], pool["wnid"].to_numpy()[keep]))
        st = st[st["n_images"] >= min_images]
        if not len(st):
            continue
        lai = lai_mean.reindex(st["wnid"])
        out.append({"threshold": t, "n_classes": len(st), "n_images": int(st["n_images"].sum()),
                    "mean_similarity": st["mean"].mean(),
                    "se": st["mean"].std(ddof=1) / np.sqrt(len(st)) if len(st) > 1 else np.nan,
                    "share_laionet_lower": float(np.mean(lai.to_numpy() < st["mean"].to_numpy())),
                    "laionet_mean_same_classes": lai.mean(),
                    "imagenet_mean_same_classes": inet_mean.reindex(st["wnid"]).mean()})
    return pd.DataFrame(out, columns=list(EMPTY_CURVE))


def accuracy_wide(acc: pd.DataFrame) -> pd.DataFrame:
    """One row per (model, k), one column per dataset."""
    if not len(acc):
        return pd.DataFrame(columns=["model", "k"])
    return acc.pivot_table(index=["model", "k"], columns="dataset", values="accuracy").reset_index()
