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
# # 07 · Introducing an image-to-selection link makes LAIONet more like ImageNet (§4.2)
#
# Does thresholding the image as well as the text make a dataset look like ImageNet? A LAION row
# is kept when its caption (text similarity > t) **and** its image (image similarity > i) are
# similar to the synset text. Along the frontier of (t, i) keeping the reference's size (0.82,
# 0.20 in the paper), lowering t and raising i swaps the text link for an image link: datasets D,
# C, B, A go from the strongest to the weakest image link. The paper finds D *more* homogeneous
# than ImageNet, and only A (close to text-only LAIONet) with about half its classes below it.
# Spec: A17, A20, C.5, E.10, E.13.

# %% tags=["parameters"]
t_ref: float = 0.82              # reference text threshold (LAIONet's)
i_ref: float = 0.20              # reference image threshold
t_min: float = 0.72              # lowest text threshold of the frontier (also the download floor)
n_grid: int = 11                 # text thresholds: linspace(t_min, t_ref, n_grid)
picks: list = [0, 4, 7, 9]       # frontier positions of D, C, B, A (paper: 0.72/0.76/0.79/0.81)
inclusive: bool = False          # False: strict >, as the datasets were built; True: the notebook
threshold_mode: str = "absolute" # absolute: t_ref/i_ref/t_min are similarities; quantile: quantiles
n_per_class: int = 100           # images per class for intra-class similarity (A14)
b19_n_per_class: int = 50        # B19 histogram: LAIONet resampled to this many per class (paper: 50, ImageNet val's count)
b19_min_images: int = 7          # B19 per-class delta test: classes with this many images on both sides (paper: 7)
nsfw_rule: str = "paper"         # NSFW rule of stage 02 (paper: only UNLIKELY)
b2_wnid: str = "n02125311"       # B2 image grid: the class (paper: cougar) ...
b2_lemma: str = "puma"           # ... and its lemma whose images are shown by similarity bin (paper: puma)
b2_bins: int = 4                 # B2: similarity bins (rows of the grid)
b2_per_bin: int = 5              # B2: images per bin
text_encoder: str = "open_clip:ViT-B-32:openai"  # synset-text tower (the paper: CLIP ViT-B/32)
image_encoder: str = ""          # image tower in its space; empty: the demo tower, else CLIP B/32
intra_encoders: list = []        # encoders for intra-class similarity, [] -> [image_encoder]
authors_class_list: bool = False  # True: the authors' 999 classes (crane machine dropped, husky as n02112837), in every stage
head_source: str = "wordnet"      # synset head names: wordnet (paper; an error without WordNet) | timm (first ImageNet lemma: 112 texts change)
coverage_thresholds: list = []   # extension: text-only thresholds for coverage; [] -> the grid
zero_shot_model: str = "zero-shot"  # extension: stage 04's model for per-class recall; "": skip
seed: int = 0                    # sampling and resampling seed
profile: str = "demo"            # profile name or YAML path (folders and figure titles)
out_dir: str = ""                # empty: runs/<profile>/07_image_to_selection_link/
figures_dir: str = ""            # empty: figures/<profile>/
candidates_dir: str = ""         # folder with candidates.parquet; empty: stage 02's
download_dir: str = ""           # stage 03's download (its rows are reused as they are); empty: stage 03's folder
imagenet_val_dir: str = ""       # ImageNet val images; empty: the demo world's
imagenet_devkit_dir: str = ""    # ILSVRC2012 devkit; empty: the demo world's
eval_dir: str = ""               # stage 04's results (zero-shot extension); empty: stage 04's
device: str = "auto"             # torch device of the encoders: auto | cpu | cuda
download_processes: int = 2      # img2dataset processes (rows stage 03 never had, with its resize settings)

# %%
import numpy as np
import pandas as pd

from laionet.jobs import image_embeddings as ie
from laionet.jobs import intra_class as ic
from laionet.jobs.candidates import CandidateFiles
from laionet.jobs.download import read_images
from laionet.method import frontier as fr
from laionet.method.selection import synset_texts
from laionet.method.similarity import compare_classes, value_stats
from laionet.models import load_image_encoder, load_text_encoder
from laionet.pipeline.stage import open_stage
from laionet.plots import frontier as frp
from laionet.plots.similarity import delta_figure
from laionet.sources.classes import class_table
from laionet.sources.imagenet import read_imagenet_val
from laionet.util.files import write_json, write_parquet

S = open_stage("07_image_to_selection_link", globals())
print(S)

# %% [markdown]
# ## The large subset (A17 step 1), its images and their image-to-synset similarity
# Stage 02's SFW candidates above t_min (`threshold_mode: quantile`: thresholds as quantiles,
# for encoders off CLIP's scale). Stage 03's rows keep their images (E.8), the others are fetched
# with its settings; the similarity is a row-wise cosine with the row's synset text (E.13).

# %%
candidates = CandidateFiles(S.inputs.candidates_dir / "candidates.parquet")
large, n_sfw, t_ref_v, t_min_v = fr.large_subset(candidates, nsfw_rule, threshold_mode, t_ref, t_min,
                                                 inclusive)
b2_rows = fr.lemma_gallery_rows(candidates, b2_wnid, b2_lemma, b2_bins, b2_per_bin, seed)
print(f"{n_sfw:,} SFW candidates, {len(large):,} above t_min={t_min_v:.4f} (t_ref={t_ref_v:.4f})")
with S.timings("download"):
    manifest, laion = ie.download_images(pd.concat([large, b2_rows]), S.inputs.download_dir,
                                         S.cache_dir("shards"), S.inputs.http_root, download_processes)
texts = synset_texts(class_table(sorted(large["wnid"].unique()), authors_class_list=authors_class_list,
                                 head_source=head_source))
embed = ie.Embedder(load_image_encoder(S.inputs.image_encoder, device=device), S.cache_dir("image_embeddings"))
with S.timings("image_to_synset"):
    class_emb = load_text_encoder(text_encoder, device=device).embed_texts(texts.tolist())
    ok = manifest.loc[manifest["key"].isin(large["key"]) & manifest["status"].eq("success"), "key"]
    rows = large.set_index("key").loc[ok.to_numpy(np.int64)].reset_index()
    rows["image_similarity"] = fr.image_to_synset_similarity(
        embed(rows, laion).emb, class_emb, texts.index.get_indexer(rows["wnid"]))
i_ref_v = fr.image_threshold(rows, threshold_mode, i_ref, t_ref_v)
write_parquet(rows[["key", "part", "row", "wnid", "similarity", "image_similarity"]],
              S.out / "image_similarity.parquet")
if len(b2_rows):  # B2: the lemma's images by text similarity (the paper: puma images of cougar)
    S.figure(frp.lemma_gallery_figure(b2_rows, read_images(laion.download_dir, b2_rows["key"].tolist()), t_ref_v),
             "07_B2_lemma_gallery",
             title=f"'{b2_lemma}' images of {b2_wnid} by text similarity (threshold {t_ref_v:.3f})")

# %% [markdown]
# ## B14 · The frontiers, and datasets D, C, B, A on them
# Each point: the image threshold keeping the reference's size (or number of classes) at a lower
# text threshold. The datasets are built with '>' on both similarities (A17 step 4).

# %%
grid = np.linspace(t_min_v, t_ref_v, n_grid)
n_ref, n_cls_ref = (fr.reference_count(rows, t_ref_v, i_ref_v, inclusive, unit=u)
                    for u in ("rows", "classes"))
front = fr.frontier_fixed_size(rows, grid, n_ref, inclusive)
front_cls = fr.frontier_fixed_classes(rows, grid, n_cls_ref, inclusive)
print(f"reference (t={t_ref_v:.4f}, i={i_ref_v:.4f}): {n_ref:,} rows, {n_cls_ref} classes")
if n_ref == 0:  # the datasets below are empty, and every later table says so too
    print("WARNING: no row passes the reference: datasets A-D are empty (try threshold_mode: quantile)")
both = pd.concat([front, front_cls])
S.table(both, "07_B14_frontier")
write_parquet(both, S.out / "frontier.parquet")
S.figure(frp.frontier_figure(front, front_cls), "07_B14_frontier_fixed_n_sample",
         title="Multimodal threshold frontier")
datasets = fr.build_datasets(rows, front, picks=list(picks), inclusive=inclusive)
summary = fr.datasets_summary(datasets)
write_parquet(datasets[["dataset", "key", "wnid", "similarity", "image_similarity",
                        "text_threshold", "image_threshold"]].astype({"dataset": str}),
              S.out / "datasets.parquet")
summary

# %% [markdown]
# ## B15 · Intra-class similarity vs ImageNet val, per encoder
# `n_per_class` seeded images per class of each dataset vs ImageNet val on the classes all have;
# the share of classes at or below ImageNet (0.5: as homogeneous). The demo's D: the most so.

# %%
val, VAL = read_imagenet_val(S.inputs.imagenet_val_dir, S.inputs.imagenet_devkit_dir), ie.ImageSource.imagenet_val()
embedders = [embed if spec == S.inputs.image_encoder else embed.with_encoder(load_image_encoder(spec, device=device))
             for spec in list(intra_encoders) or [S.inputs.image_encoder]]
with S.timings("intra_class"):
    val_by = {e.encoder.name: e.classes(val, VAL) for e in embedders}
    b15 = fr.compare_datasets({e.encoder.name: ({str(d): e.classes(g, laion, n_per_class, seed)
                                                 for d, g in datasets.groupby("dataset", observed=True)},
                                                val_by[e.encoder.name]) for e in embedders}, seed)
write_parquet(b15.per_class, S.out / "intra_class_stats.parquet")
S.table(b15.shares, "07_B15_share_at_or_below_imagenet")
S.table(b15.avg, "07_B15_avg_intra_class_similarity")
enc0 = embedders[0].encoder.name
if b15.classes:
    S.figure(frp.datasets_histogram(b15.pooled), "07_B15a_datasets_intra_class_histograms",
             title=f"Intra-class similarity of A, B, D ({enc0})")
    S.figure(frp.average_similarity_figure(b15.avg[b15.avg["encoder"] == enc0]),
             "07_B15b_datasets_avg_similarity", title=f"Average intra-class similarity ({enc0})")
    S.figure(frp.shares_figure(b15.shares, enc0), "07_B15cd_datasets_share_lower",
             title="Classes with intra-class similarity at or below ImageNet")
check = fr.trend(b15.avg[b15.avg["encoder"] == enc0], b15.shares[b15.shares["encoder"] == enc0], summary)
pd.Series(check, name="D -> A")

# %% [markdown]
# ## B19 · Image-to-synset similarity: LAIONet vs ImageNet (A20)
# Were LAIONet's images (text above t_ref) less relevant to their synsets than ImageNet's, its
# lower homogeneity could be label noise; the paper finds not. As the authors: LAIONet resampled
# to `b19_n_per_class` per class, and the paper's per-class interval (>= `b19_min_images` each).

# %%
val_in = val[val["wnid"].isin(texts.index)].reset_index(drop=True)
val_in["image_similarity"] = fr.image_to_synset_similarity(
    embed(val_in, VAL).emb, class_emb, texts.index.get_indexer(val_in["wnid"]))
laionet_rows = rows[fr.passes(rows["similarity"].to_numpy(), t_ref_v, inclusive)]
b19_cmp = compare_classes(value_stats(laionet_rows, "image_similarity"),
                          value_stats(val_in, "image_similarity"), "paper", b19_min_images)
b19 = fr.relevance_summary(laionet_rows, val_in, comparison=b19_cmp)
b19_sample = fr.relevance_resample(laionet_rows, val_in, b19_n_per_class, seed)
if len(b19_sample):
    S.figure(frp.relevance_figure(b19_sample["image_similarity"],
                                  val_in[val_in["wnid"].isin(set(b19_sample["wnid"]))]["image_similarity"]),
             "07_B19_image_to_synset_similarity",
             title=f"Image-to-synset similarity (LAIONet resampled to {b19_n_per_class} per class)")
    S.figure(delta_figure(b19_cmp, "LAIONet", "ImageNet"), "07_B19b_image_to_synset_delta",
             title="Per-class image-to-synset similarity, LAIONet - ImageNet")
b19

# %% [markdown]
# ## Extensions · LAIONet's text threshold: class coverage vs homogeneity; zero-shot recall
# Text-only selection at each threshold: how many classes survive, how homogeneous they are.
# Stage 04's zero-shot model per class: points below the diagonal are harder on LAIONet.

# %%
coverage = fr.coverage(rows, list(coverage_thresholds) or list(grid),
                       lambda kept: embedders[0].classes(kept, laion, n_per_class, seed),
                       val_by[enc0], seed, inclusive)
S.table(coverage, "07_EXT_laionet_thresholds_coverage_vs_similarity")
S.figure(frp.coverage_figure(coverage), "07_EXT_laionet_thresholds_coverage_vs_similarity",
         title="LAIONet text threshold: coverage vs homogeneity")
recall, note = ic.zero_shot_recall(S.inputs.eval_dir, zero_shot_model)
if recall is not None:
    S.table(recall.reset_index(), "07_EXT_zero_shot_per_class_recall")
    S.figure(frp.recall_figure(recall), "07_EXT_zero_shot_per_class_recall",
             title=f"Per-class zero-shot recall ({zero_shot_model})")
print(note)
write_json({"t_ref": t_ref_v, "i_ref": i_ref_v, "t_min": t_min_v, "n_ref": n_ref,
            "n_classes_ref": n_cls_ref, "image_to_synset_B19": b19,
            "homogeneity_decreases_D_to_A": check["homogeneity_decreases"],
            "summary": summary.astype({"dataset": str}).to_dict("records")}, S.out / "summary.json")
