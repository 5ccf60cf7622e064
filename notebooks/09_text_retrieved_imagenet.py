# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 09 · ImageNet, had it been created by searching texts, would not look like ImageNet (§4.4)
#
# Every ImageNet-Captions caption queries a nearest-neighbour index of all LAION captions
# (k = 1); the retrieved LAION row gets the caption's class. This is "ImageNet recreated from
# its own texts". Its images are far more diverse than ImageNet's: what made ImageNet
# homogeneous was the selection on images, not on text. Figures B18 (and B20, LAIONet vs
# ImageNet-Captions train images). Spec: paper_spec A19, A14, C.6.

# %% tags=["parameters"]
profile: str = "demo"            # profile name or YAML path (folders and figure titles)
out_dir: str = ""                # empty -> runs/<profile>/09_text_retrieved_imagenet/
figures_dir: str = ""            # empty -> figures/<profile>/
world_dir: str = ""              # demo world: serves http/ on 127.0.0.1, fills path defaults
laion_parts: str = ""            # glob of LAION parquet parts (same as stage 01)
captions_json: str = ""          # imagenet_captions.json (empty -> <world_dir>/imagenet_captions/...)
imagenet_train_dir: str = ""     # ImageNet train images (empty -> <world_dir>/imagenet/train)
laionet_path: str = ""           # stage 02 laionet.parquet (B20, empty -> stage 02 default)
laionet_download_dir: str = ""   # stage 03 folder of LAIONet images (B20, empty -> stage 03 default)
text_encoder: str = "open_clip:ViT-B-32:openai"   # caption encoder of the index and the queries
image_encoder: str = "open_clip:ViT-B-32:openai"  # intra-class encoder (empty -> the demo tower)
index_factory: str = ""          # faiss factory (empty -> Flat up to 200k captions, else IVF-PQ)
nprobe: int = 32                 # IVF lists visited per query
k: int = 1                       # neighbours per caption (the paper: 1)
threshold: float = 0.7           # keep retrieved rows with caption-to-caption similarity > this
sweep_thresholds: list = []      # B18 sweep, [] -> linspace(0.5, 0.75, 20) as in the paper
n_per_class: int = 100           # LAION images per class for intra-class similarity (A14)
ci_method: str = "bootstrap"     # per-class interval: bootstrap (E.10 fix) or paper
min_pairs: int = 7               # classes need greater-or-equal min_pairs pairs in both datasets to be tested
seed: int = 0                    # sampling and resampling seed
batch_size: int = 64             # text-embedding batch size
download_processes: int = 2      # img2dataset processes
image_size: int = 256            # downloaded images: smaller side (as stage 03, so the shared
resize_only_if_bigger: bool = True  # embedding cache sees the same pixels for a row key)

# %%

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from laionet import retrieval as rt
from laionet import similarity as sim
from laionet import text_alone as ta
from laionet.datasets import iter_images, read_imagenet_captions, read_imagenet_train
from laionet.demo.checks import model_paths  # the demo world's checkpoints
from laionet.demo.world import WorldPaths
from laionet.download import download_laionet, iter_downloaded
from laionet.encoders import EmbeddingCache
from laionet.encoders.cache import embed_with_cache
from laionet.encoders.image import load_image_encoder
from laionet.encoders.text import load_text_encoder
from laionet.figures import save_figure, save_table, style
from laionet.io import write_json, write_parquet
from laionet.paths import resolve, stage_output, stage_paths
from laionet.selection import KEY_STRIDE, part_files
from laionet.stage import Timings, write_manifest

STAGE = "09_text_retrieved_imagenet"
paths = stage_paths(STAGE, profile, out_dir, figures_dir)
style()
timings = Timings()
world = resolve(world_dir) if world_dir else None
parts = part_files(laion_parts)
cap_path = (resolve(captions_json) if captions_json
            else world / "imagenet_captions" / "imagenet_captions.json")
train_dir = resolve(imagenet_train_dir) if imagenet_train_dir else world / "imagenet" / "train"
image_spec = image_encoder or f"demo-tower:{model_paths(WorldPaths(world))['image_tower']}"
image_cache = sim.image_cache_dir(profile)
grid = list(sweep_thresholds) or list(np.round(np.linspace(0.5, 0.75, 20), 4))
print(f"{len(parts)} LAION parts; captions {cap_path}; out {paths.out}")

# %% [markdown]
# ## The LAION caption index, built part by part (a rerun resumes after the last saved part)
# Caption embeddings go through the text-embedding cache shared with stage 02 (the same row
# keys), so captions stage 02 embedded are not embedded again.

# %%
enc = load_text_encoder(text_encoder)
text_cache = EmbeddingCache(stage_output("cache", profile) / "text_embeddings", enc.name)
n_laion = sum(pq.ParquetFile(f).metadata.num_rows for f in parts.values())
factory = index_factory or rt.suggest_factory(n_laion, enc.dim)
index_dir = paths.out / "index" / enc.name.replace("/", "_")
index = None
with timings("index"):
    for part, f in sorted(parts.items()):
        if index is not None and part in index.parts:
            continue
        text = pq.read_table(f, columns=["TEXT"]).column("TEXT")
        keys = part * KEY_STRIDE + np.arange(len(text), dtype=np.int64)
        emb = embed_with_cache(enc, keys, text, text_cache, batch_size=batch_size)
        if index is None:
            index = rt.TextIndex.open(index_dir, emb.shape[1], factory, nprobe=nprobe)
            if part in index.parts:
                continue
            index.train(emb)  # IVF-PQ: trained on the first part (a no-op for Flat)
        index.add_part(part, emb, keys)
        index.save(index_dir)
print(f"index {index.factory}: {index.ntotal:,} captions from parts {sorted(index.parts)}")
if index.ntotal != n_laion:
    raise RuntimeError(f"{index_dir}: holds {index.ntotal} captions, the parts have {n_laion}; "
                       "delete the folder and rerun")

# %% [markdown]
# ## Query with every ImageNet caption (k nearest LAION captions)

# %%
caps = read_imagenet_captions(cap_path)
with timings("query"):
    qcache = EmbeddingCache(stage_output("cache", profile) / "text_embeddings_imagenet_captions",
                            enc.name)
    q = embed_with_cache(enc, ta.caption_ids(caps["image_key"]), caps["text"].to_numpy(object),
                         qcache, batch_size=batch_size)
    found, sims = index.search(q, k=k)
labelled = rt.label_retrieved(caps["image_key"], caps["wnid"], found, sims)
write_parquet(labelled, paths.out / "retrieved.parquet")
everything = rt.retrieved_dataset(labelled, -np.inf)
print(f"{len(caps):,} queries -> {labelled['key'].nunique():,} unique LAION rows "
      f"({len(everything):,} (class, row) pairs; rows retrieved for 2+ classes: "
      f"{int(everything['key'].duplicated().sum())})")
labelled["similarity"].describe().round(3)

# %% [markdown]
# ## Images: the first n_per_class retrieved rows per class (seeded), downloaded once

# %%
# A row retrieved for two classes is a candidate of both: sample on the (class, row) pair.
pairs = everything.assign(pair=everything["wnid"] + ":" + everything["key"].astype(str))
sample = sim.sample_per_class(pairs, n_per_class, seed, key="pair").drop(columns="pair")
urls = []
for part, f in sorted(parts.items()):
    want = np.unique(sample.loc[sample["key"] // KEY_STRIDE == part, "key"].to_numpy())
    if len(want):
        url = pq.read_table(f, columns=["URL"]).column("URL").take(want % KEY_STRIDE)
        urls.append(pd.DataFrame({"key": want, "URL": url.to_pylist()}))
to_get = pd.concat(urls, ignore_index=True).merge(
    sample.drop_duplicates("key")[["key", "wnid"]], on="key")
download_dir = paths.out / "download"
with timings("download"):
    manifest = download_laionet(to_get[["key", "wnid", "URL"]], download_dir,
                                serve_root=world / "http" if world else None,
                                processes_count=download_processes, image_size=image_size,
                                resize_only_if_bigger=resize_only_if_bigger)
ok = set(manifest.loc[manifest["status"].eq("success"), "key"].tolist())
print(f"downloaded {len(ok):,} of {len(manifest):,}; failures:",
      manifest.loc[~manifest["status"].eq("success"), "error_kind"].value_counts().to_dict())
sample = sample[sample["key"].isin(ok)].reset_index(drop=True)

# %% [markdown]
# ## Embeddings: retrieved LAION images and ImageNet-Captions train images (all per class)

# %%
img_enc = load_image_encoder(image_spec)
with timings("embed_images"):
    keys_ok = np.unique(sample["key"].to_numpy())
    lai = sim.embed_dataset(img_enc, iter_downloaded(download_dir, keys_ok), image_cache, "laion",
                            keys=keys_ok)
    lai_by_key = dict(zip(lai.keys.tolist(), lai.emb))
    train = read_imagenet_train(train_dir, sorted(caps["wnid"].unique()))
    train = train[train["image_key"].isin(set(caps["image_key"]))].reset_index(drop=True)
    ic = sim.embed_dataset(img_enc, iter_images(train), image_cache, "imagenet_train",
                           keys=train["image_key"].to_numpy())
    ic_by_class = ic.by_class(train.set_index("image_key")["wnid"])
print(f"{len(keys_ok):,} LAION images; {len(train):,} ImageNet-Captions train images")


def laion_by_class(kept: pd.DataFrame) -> dict[str, np.ndarray]:
    """Embeddings of the sampled retrieved rows per class (a row can serve two classes)."""
    kept = kept[kept["key"].isin(lai_by_key)]
    return {w: np.stack([lai_by_key[x] for x in g["key"]]) for w, g in kept.groupby("wnid")}


sampled_labelled = labelled.merge(sample[["wnid", "key"]], on=["wnid", "key"])


def compare(kept: pd.DataFrame) -> pd.DataFrame:
    return sim.compare_classes(laion_by_class(kept), ic_by_class, method=ci_method,
                               min_pairs=min_pairs, seed=seed)


# %% [markdown]
# ## B18 · At the paper's threshold: pooled histogram and per-class differences

# %%
kept = rt.retrieved_dataset(sampled_labelled, threshold)
by = laion_by_class(kept)
cmp = compare(kept)
summary = sim.summarize_comparison(cmp)
write_parquet(cmp, paths.out / "per_class_comparison.parquet")
print(summary)
sizes = sim.common_resample_sizes(by, ic_by_class)
fig = sim.histogram_figure({"LAION | ImageNet texts": sim.pooled_resample(by, sizes, seed)["similarity"],
                            "ImageNet": sim.pooled_resample(ic_by_class, sizes, seed)["similarity"]},
                           colors={"LAION | ImageNet texts": "tab:blue"})
_ = save_figure(fig, "09_B18a_text_retrieved_histogram", paths.figures, profile,
            title=f"LAION retrieved by ImageNet captions (sim > {threshold})")
fig = sim.delta_figure(cmp, "LAION | ImageNet texts", "ImageNet")
_ = save_figure(fig, "09_B18b_text_retrieved_delta", paths.figures, profile,
            title="Per-class intra-class similarity difference")

# %% [markdown]
# ## B18 · The sweep over the caption-to-caption threshold

# %%
with timings("sweep"):
    sweep = rt.threshold_sweep(sampled_labelled, grid, compare)
save_table(sweep, "09_B18_threshold_sweep", paths.figures)
fig, axes = plt.subplots(1, 2, figsize=(6.8, 2.5))
axes[0].plot(sweep["threshold"], sweep["n_classes"], "o-", ms=3, color="black")
axes[0].set(xlabel="caption-to-caption similarity threshold", ylabel="classes included")
axes[1].plot(sweep["threshold"], sweep["share_lower"], "o-", ms=3, color="tab:blue",
             label="LAION < ImageNet")
axes[1].plot(sweep["threshold"], sweep["share_higher"], "o-", ms=3, color="tab:red",
             label="LAION > ImageNet")
for ax in axes:
    ax.axvline(threshold, color="gray", ls="--")
axes[1].set(xlabel="caption-to-caption similarity threshold", ylabel="share of classes",
            ylim=(0, 1))
axes[1].legend()
_ = save_figure(fig, "09_B18cd_text_retrieved_sweep", paths.figures, profile,
            title="Threshold sweep of the text-retrieved dataset")
sweep

# %% [markdown]
# ## B20 · LAIONet vs ImageNet-Captions train images (stage 03's LAIONet images)

# %%
lai_path = (resolve(laionet_path) if laionet_path
            else stage_output("02_caption_filtering", profile) / "laionet.parquet")
lai_dl = (resolve(laionet_download_dir) if laionet_download_dir
          else stage_output("03_download", profile))
lnet = pd.read_parquet(lai_path, columns=["key", "wnid"])
got = pd.read_parquet(lai_dl / "manifest.parquet", columns=["key", "status"])
lnet = lnet[lnet["key"].isin(got.loc[got["status"].eq("success"), "key"])]
ls = sim.sample_per_class(lnet.rename(columns={"key": "image_key"}), n_per_class, seed)
le = sim.embed_dataset(img_enc, iter_downloaded(lai_dl, ls["image_key"]), image_cache, "laion",
                       keys=ls["image_key"].to_numpy())
lnet_by = le.by_class(ls.set_index("image_key")["wnid"])
cmp20 = sim.compare_classes(lnet_by, ic_by_class, method=ci_method, min_pairs=min_pairs, seed=seed)
summary20 = sim.summarize_comparison(cmp20)
print(summary20)
s20 = sim.common_resample_sizes(lnet_by, ic_by_class)
fig = sim.histogram_figure({"LAIONet": sim.pooled_resample(lnet_by, s20, seed)["similarity"],
                            "ImageNet": sim.pooled_resample(ic_by_class, s20, seed)["similarity"]})
_ = save_figure(fig, "09_B20a_laionet_vs_imagenet_captions_histogram", paths.figures, profile,
            title="LAIONet vs ImageNet-Captions images")
fig = sim.delta_figure(cmp20, "LAIONet", "ImageNet-Captions")
_ = save_figure(fig, "09_B20b_laionet_vs_imagenet_captions_delta", paths.figures, profile,
            title="Per-class difference, LAIONet - ImageNet-Captions")

# %%
params = {k_: globals()[k_] for k_ in ("world_dir", "laion_parts", "captions_json", "text_encoder",
                                       "image_encoder", "index_factory", "nprobe", "k", "threshold",
                                       "sweep_thresholds", "n_per_class", "ci_method", "min_pairs",
                                       "seed")}
write_json({"threshold": threshold, "factory": index.factory, "n_index": index.ntotal,
            "n_queries": len(caps), "n_unique_retrieved": int(labelled["key"].nunique()),
            "B18": summary, "B20": summary20}, paths.out / "summary.json")
write_manifest(paths.out, STAGE, params, inputs=[cap_path, *parts.values()],
               outputs=["retrieved.parquet", "per_class_comparison.parquet", "summary.json"],
               timings=dict(timings))
