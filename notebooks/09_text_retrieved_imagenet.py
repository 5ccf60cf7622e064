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
# Does LAION searched with ImageNet's captions look like ImageNet? Every ImageNet-Captions caption
# queries an index of all LAION captions (k = 1); the retrieved row gets the caption's class:
# "ImageNet recreated from its own texts". The paper finds its images far more diverse than
# ImageNet's: what made ImageNet homogeneous was the selection on images, not on text (B18, B20;
# spec A19, A14, C.6).

# %% tags=["parameters"]
k: int = 1                       # neighbours per caption (the paper: 1)
threshold: float = 0.7           # keep retrieved rows with caption-to-caption similarity > this
sweep_thresholds: list = []      # B18 sweep, [] -> linspace(0.5, 0.75, 20) as in the paper
n_per_class: int = 100           # LAION images per class for intra-class similarity (A14)
ci_method: str = "bootstrap"     # per-class interval: bootstrap (E.10 fix) or paper
min_pairs: int = 7               # classes need at least min_pairs pairs in both to be tested
seed: int = 0                    # sampling and resampling seed
exact_rescore: bool = True       # exact caption-caption cosines; False: the index's (PQ) scores, as the authors'
text_encoder: str = "open_clip:ViT-B-32:openai"  # caption encoder of the index and the queries
image_encoder: str = ""          # intra-class encoder; empty: the demo tower, else CLIP ViT-B/32
index_factory: str = ""          # faiss factory; empty: Flat up to 200k captions, else IVF<4 sqrt(n)>,PQ32 (40 B a caption)
nprobe: int = 32                 # IVF lists visited per query
train_size: int = 0              # captions sampled across the parts to train IVF-PQ; 0: 40 per list
keep_caption_embeddings: bool = False  # True: also keep every caption's embedding (850 GB for LAION-400M)
profile: str = "demo"            # profile name or YAML path (folders and figure titles)
out_dir: str = ""                # empty: runs/<profile>/09_text_retrieved_imagenet/
figures_dir: str = ""            # empty: figures/<profile>/
laion_parts: str = ""            # glob of LAION parquet parts (as stage 01); empty: the demo's
captions_json: str = ""          # imagenet_captions.json; empty: the demo world's
imagenet_train_dir: str = ""     # ImageNet train images; empty: the demo world's
laionet_path: str = ""           # LAIONet table (B20); empty: stage 02's laionet.parquet
download_dir: str = ""           # LAIONet's downloaded images (B20); empty: stage 03's folder
chunk_rows: int = 65536          # captions read, embedded and added at a time (peak memory)
batch_size: int = 64             # text-embedding batch size
device: str = "auto"             # torch device of the encoders: auto | cpu | cuda
download_processes: int = 2      # img2dataset processes (rows stage 03 never had, with its resize settings)

# %%
import numpy as np
import pandas as pd

from laionet.jobs import caption_index as ci
from laionet.jobs import image_embeddings as ie
from laionet.jobs.download import load_manifest
from laionet.jobs.embedding_store import EmbeddingStore, embed_captions
from laionet.method import retrieval as rt
from laionet.method.similarity import compare_classes, summarize_comparison
from laionet.models import load_image_encoder, load_text_encoder
from laionet.paper import PAPER_SWEEP
from laionet.pipeline.stage import open_stage
from laionet.plots import retrieval as rtp
from laionet.plots.similarity import delta_figure
from laionet.sources.imagenet import read_imagenet_captions, read_imagenet_train
from laionet.sources.laion import part_files
from laionet.util.files import write_json, write_parquet

S = open_stage("09_text_retrieved_imagenet", globals())
print(S)
parts = part_files(S.inputs.laion_parts)

# %% [markdown]
# ## The LAION caption index, one file per part (a rerun resumes after the last finished part)
# Exact (Flat) on small data, IVF-PQ at LAION scale, trained once on a sample across the parts.

# %%
enc, stores = load_text_encoder(text_encoder, device=device), S.cache_dir("text_embeddings")
laion_texts = EmbeddingStore.at(stores, "laion", enc.name)
factory = index_factory or ci.suggest_factory(sum(ci.part_rows(parts).values()), enc.dim)
with S.timings("index"):
    index = ci.index_parts(parts, enc, S.cache_dir("caption_index", "laion", enc.name, factory),
                           factory=factory, train_size=train_size, chunk_rows=chunk_rows,
                           batch_size=batch_size, keep_embeddings=keep_caption_embeddings,
                           store=laion_texts, nprobe=nprobe, seed=seed, progress=True)
print(f"index {index.factory}: {index.ntotal:,} captions, {index.bytes_per_caption():.0f} bytes each")

# %% [markdown]
# ## Query with every ImageNet caption (k nearest LAION captions), then re-score exactly
# (an approximate index's scores are PQ reconstructions; the retrieved captions are re-embedded)

# %%
caps = read_imagenet_captions(S.inputs.captions_json)
with S.timings("query"):
    queries = EmbeddingStore.at(stores, "imagenet_captions", enc.name)
    q_emb = embed_captions(enc, caps, queries, batch_size)
    found, index_sims = index.search(q_emb, k=k, parts=parts)
    sims = (rt.exact_similarity(q_emb, found, lambda keys: ci.caption_embeddings(
        keys, parts, enc, laion_texts, batch_size)) if exact_rescore else index_sims)
labelled = rt.label_retrieved(caps["image_key"], caps["wnid"], found, sims, index_sims)
write_parquet(labelled, S.out / "retrieved.parquet")
everything = rt.retrieved_dataset(labelled, -np.inf)
print(f"{len(caps):,} queries -> {labelled['key'].nunique():,} LAION rows, {len(everything):,} pairs")

# %% [markdown]
# ## Images: up to n_per_class retrieved (class, row) pairs per class, seeded (a row can serve
# two classes), downloaded once (stage 03's as they are), and ImageNet-Captions' train images

# %%
sample = rt.sample_retrieved(everything, n_per_class, seed)
with S.timings("download"):
    manifest, laion = ie.download_images(ci.rows_to_download(sample, parts), S.inputs.download_dir,
                                         S.cache_dir("shards"), S.inputs.http_root, download_processes)
sample = sample[sample["key"].isin(manifest.loc[manifest["status"].eq("success"), "key"])]
embed = ie.Embedder(load_image_encoder(S.inputs.image_encoder, device=device), S.cache_dir("image_embeddings"))
with S.timings("embed_images"):
    lai = embed(sample.drop_duplicates("key").sort_values("key"), laion)
    train = read_imagenet_train(S.inputs.imagenet_train_dir, sorted(caps["wnid"].unique()))
    train = train[train["image_key"].isin(set(caps["image_key"]))].reset_index(drop=True)
    ic_by_class = embed.classes(train, ie.ImageSource.imagenet_train())

def compare(kept: pd.DataFrame) -> pd.DataFrame:  # kept (class, row) pairs vs ImageNet-Captions
    return compare_classes(lai.by_class(kept), ic_by_class, ci_method, min_pairs, seed=seed)

sampled_labelled = labelled.merge(sample[["wnid", "key"]], on=["wnid", "key"])

# %% [markdown]
# ## B18 · At the paper's threshold, and along the caption-to-caption threshold
# Pooled intra-class similarity and per-class differences (the paper: most classes significantly
# less homogeneous than ImageNet's); then the classes and shares as the threshold rises.

# %%
kept = rt.retrieved_dataset(sampled_labelled, threshold)
cmp = compare(kept)
summary = summarize_comparison(cmp)
write_parquet(cmp, S.out / "per_class_comparison.parquet")
S.figure(rtp.pooled_histogram(lai.by_class(kept), ic_by_class, "LAION | ImageNet texts", seed=seed),
         "09_B18a_text_retrieved_histogram", title=f"LAION retrieved by ImageNet captions (sim > {threshold})")
S.figure(delta_figure(cmp, "LAION | ImageNet texts", "ImageNet"), "09_B18b_text_retrieved_delta",
         title="Per-class intra-class similarity difference")
with S.timings("sweep"):
    sweep = rt.threshold_sweep(sampled_labelled, sweep_thresholds or PAPER_SWEEP, compare)
S.table(sweep, "09_B18_threshold_sweep")
S.figure(rtp.sweep_figure(sweep, threshold), "09_B18cd_text_retrieved_sweep",
         title="Threshold sweep of the text-retrieved dataset")
sweep

# %% [markdown]
# ## B20 · The same comparison for LAIONet itself (text-selected, no image link)

# %%
got = load_manifest(S.inputs.download_dir).query("status == 'success'")["key"]
lnet = pd.read_parquet(S.inputs.laionet_path, columns=["key", "wnid"]).query("key in @got")
lnet_by = embed.classes(lnet, ie.ImageSource.laion(S.inputs.download_dir), n_per_class, seed)
cmp20 = compare_classes(lnet_by, ic_by_class, ci_method, min_pairs, seed=seed)
summary20 = summarize_comparison(cmp20)
S.figure(rtp.pooled_histogram(lnet_by, ic_by_class, "LAIONet", seed=seed),
         "09_B20a_laionet_vs_imagenet_captions_histogram", title="LAIONet vs ImageNet-Captions images")
S.figure(delta_figure(cmp20, "LAIONet", "ImageNet-Captions"),
         "09_B20b_laionet_vs_imagenet_captions_delta",
         title="Per-class difference, LAIONet - ImageNet-Captions")
write_json({"threshold": threshold, "factory": index.factory, "n_index": index.ntotal,
            "index_bytes_per_caption": index.bytes_per_caption(), "exact_rescore": exact_rescore,
            "n_queries": len(caps), "n_unique_retrieved": int(labelled["key"].nunique()),
            "B18": summary, "B20": summary20}, S.out / "summary.json")
pd.DataFrame({"B18": summary, "B20": summary20})
