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
# Does thresholding the image as well as the text make a dataset look like ImageNet? LAION rows
# are kept when their caption (text similarity > t) **and** their image (image similarity > i)
# are similar to the synset text. Along the frontier of (t, i) pairs that keep the reference's
# size (0.82, 0.20 in the paper), lowering t and raising i swaps the text link for an image
# link: datasets D, C, B, A go from the strongest to the weakest image link. The paper finds D
# *more* homogeneous than ImageNet and only A (close to text-only LAIONet) with about half its
# classes below ImageNet. Figures B14, B15 (a-d), B19. Spec: paper_spec A17, C.5, E.10, E.13.

# %% tags=["parameters"]
profile: str = "demo"            # profile name or YAML path (folders and figure titles)
out_dir: str = ""                # empty: runs/<profile>/07_image_to_selection_link/
figures_dir: str = ""            # empty: figures/<profile>/
candidates_dir: str = ""         # folder with candidates.parquet; empty: stage 02's
imagenet_val_dir: str = ""       # ImageNet val images; empty: the demo world's
imagenet_devkit_dir: str = ""    # ILSVRC2012 devkit; empty: the demo world's
text_encoder: str = "open_clip:ViT-B-32:openai"  # synset-text tower (the paper: CLIP ViT-B/32)
image_encoder: str = ""          # image tower in its space; empty: the demo tower, else CLIP B/32
intra_encoders: list = []        # encoders for intra-class similarity, [] -> [image_encoder]
threshold_mode: str = "absolute" # absolute: t_ref/i_ref/t_min are similarities; quantile: quantiles
t_ref: float = 0.82              # reference text threshold (LAIONets)
i_ref: float = 0.20              # reference image threshold
t_min: float = 0.72              # lowest text threshold of the frontier (also the download floor)
n_grid: int = 11                 # text thresholds: linspace(t_min, t_ref, n_grid)
picks: list = [0, 4, 7, 9]       # frontier positions of D, C, B, A (paper: 0.72/0.76/0.79/0.81)
inclusive: bool = False          # False: strict >, as the datasets were built; True: the notebook
nsfw_rule: str = "paper"         # NSFW rule of stage 02 (paper: only UNLIKELY)
authors_class_list: bool = False  # True: the authors' 999 classes (crane machine dropped, husky as n02112837), in every stage
head_source: str = "wordnet"      # synset head names: wordnet (paper; an error without WordNet) | timm (first ImageNet lemma: 112 texts change)
n_per_class: int = 100           # images per class for intra-class similarity (A14)
b19_n_per_class: int = 50        # B19 histogram: LAIONet resampled to this many per class (paper: 50, ImageNet val's count)
b2_wnid: str = "n02125311"       # B2 image grid: the class (paper: cougar) ...
b2_lemma: str = "puma"           # ... and its lemma whose images are shown by similarity bin (paper: puma)
b2_bins: int = 4                 # B2: similarity bins (rows of the grid)
b2_per_bin: int = 5              # B2: images per bin
b19_min_images: int = 7          # B19 per-class delta test: classes with this many images on both sides (paper: 7)
coverage_thresholds: list = []   # extension: text-only thresholds for coverage; [] -> the grid
zero_shot_model: str = "zero-shot"  # extension: stage 04's model for per-class recall; "": skip
eval_dir: str = ""               # stage 04's results (zero-shot extension); empty: stage 04's
seed: int = 0                    # sampling and resampling seed
device: str = "auto"             # torch device of the encoders: auto | cpu | cuda
download_dir: str = ""           # stage 03's download (its rows are reused as they are); empty: stage 03's folder
download_processes: int = 2      # img2dataset processes (rows stage 03 never had, with its resize settings)

# %%
import io

import numpy as np
import pandas as pd
from PIL import Image

from laionet.jobs.candidates import CandidateFiles
from laionet.jobs.download import download_beyond, report
from laionet.jobs.image_embeddings import ClassSampler, ImageSource, read_downloads
from laionet.method import frontier as fr
from laionet.method.selection import synset_texts
from laionet.models.image import load_image_encoder
from laionet.models.text import load_text_encoder
from laionet.pipeline.stage import open_stage
from laionet.plots import frontier as frp
from laionet.plots.similarity import delta_figure
from laionet.sources.classes import class_table
from laionet.sources.imagenet import read_imagenet_val
from laionet.util.files import write_json, write_parquet

S = open_stage("07_image_to_selection_link", globals())
print(S)

# %% [markdown]
# ## Candidates (stage 02's single-label SFW rows) and the large subset: text above t_min (A17
# step 1). `threshold_mode: quantile` reads thresholds as quantiles (encoders off CLIP's scale).
# The candidates are streamed batch by batch; only the large subset is kept.

# %%
large, n_sfw, t_ref_v, t_min_v = fr.large_subset(CandidateFiles(S.inputs.candidates_dir / "candidates.parquet"),
                                                 nsfw_rule, threshold_mode, t_ref, t_min, inclusive)
print(f"{n_sfw:,} SFW candidates; text thresholds t_min={t_min_v:.4f}, t_ref={t_ref_v:.4f}; "
      f"{len(large):,} rows with text above t_min in {large['wnid'].nunique()} classes")

# %% [markdown]
# ## Images of the large subset and their image-to-synset-text similarity
# Rows stage 03 downloaded (or failed to) are read from its folder as they are, so LAIONet has
# the same images here as in Section 3 (E.8); only the rows below LAIONet's threshold are
# downloaded, with stage 03's resize settings, into the shared shard cache (reruns resume). The
# similarity is a row-wise cosine with the row's own synset text (no B x B logits: E.13).

# %%
b2_rows = fr.lemma_gallery_rows(CandidateFiles(S.inputs.candidates_dir / "candidates.parquet"), b2_wnid, b2_lemma,
                                b2_bins, b2_per_bin, seed)  # B2's grid (reads only its class)
with S.timings("download"):  # one download: the large subset and B2's rows at every similarity
    wanted = pd.concat([large[["key", "wnid", "URL"]], b2_rows[["key", "wnid", "URL"]]])
    manifest, download_dirs = download_beyond(
        wanted.drop_duplicates("key"), S.inputs.download_dir, S.cache_dir("shards"),
        serve_root=S.inputs.http_root, processes_count=download_processes)
manifest = manifest[manifest["key"].isin(large["key"])]
ok_keys = manifest.loc[manifest["status"].eq("success"), "key"].to_numpy(np.int64)
print(*(report(manifest)[k].to_string(index=False) for k in ("overall", "error_kinds")), sep="\n")
texts = synset_texts(class_table(sorted(large["wnid"].unique()), authors_class_list=authors_class_list,
                                 head_source=head_source))
with S.timings("image_to_synset"):
    class_emb = load_text_encoder(text_encoder, device=device).embed_texts(texts.tolist())
    clip = ClassSampler(load_image_encoder(S.inputs.image_encoder, device=device), ImageSource.laion(download_dirs),
                        S.cache_dir("image_embeddings"), n_per_class, seed)
    rows = large.set_index("key").loc[ok_keys].reset_index()
    rows["image_similarity"] = fr.image_to_synset_similarity(
        clip.embed(rows).emb, class_emb, texts.index.get_indexer(rows["wnid"]))
i_ref_v = fr.image_threshold(rows, threshold_mode, i_ref, t_ref_v)
write_parquet(rows[["key", "part", "row", "wnid", "similarity", "image_similarity"]],
              S.out / "image_similarity.parquet")
print(rows[["similarity", "image_similarity"]].describe().round(3).to_string())

# %% [markdown]
# ## B2 · The lemma's images by text similarity (the paper: puma images of cougar)
# Stage 02 shows the per-lemma similarity histograms; here the images of one lemma's rows, one row
# per similarity bin, labelled green above LAIONet's text threshold, red below: "puma" below the
# threshold shows what the text filter drops.

# %%
if len(b2_rows):
    b2_images = {k: Image.open(io.BytesIO(b)).convert("RGB") for k, b in
                 read_downloads(download_dirs, b2_rows["key"].tolist())}
    S.figure(frp.lemma_gallery_figure(b2_rows, b2_images, t_ref_v), "07_B2_lemma_gallery",
             title=f"'{b2_lemma}' images of {b2_wnid} by text similarity (threshold {t_ref_v:.3f})")
else:
    print(f"no candidate of {b2_wnid} matched {b2_lemma!r}: B2 gallery skipped")

# %% [markdown]
# ## The frontiers (B14): fixed dataset size and fixed number of classes
# Each point is an image threshold that keeps the reference's size (or its number of classes)
# at a lower text threshold: going left trades the text link for an image link.

# %%
grid = np.linspace(t_min_v, t_ref_v, n_grid)
n_ref, n_cls_ref = (fr.reference_count(rows, t_ref_v, i_ref_v, inclusive, unit=u)
                    for u in ("rows", "classes"))
front = fr.frontier_fixed_size(rows, grid, n_ref, inclusive)
front_cls = fr.frontier_fixed_classes(rows, grid, n_cls_ref, inclusive)
print(f"reference (t={t_ref_v:.4f}, i={i_ref_v:.4f}): {n_ref:,} rows, {n_cls_ref} classes")
if n_ref == 0:  # said here, and the datasets below are empty: every later table says so too
    print(f"WARNING: the reference thresholds select no row ({len(rows):,} rows with an image, text "
          f"similarity up to {rows['similarity'].max():.4f}, image similarity up to "
          f"{rows['image_similarity'].max():.4f}): datasets A-D are empty and B15 has nothing to "
          f"compare. threshold_mode={threshold_mode!r}; thresholds on another encoder's scale "
          "usually need threshold_mode: quantile")
S.table(pd.concat([front, front_cls]), "07_B14_frontier")
write_parquet(pd.concat([front, front_cls]), S.out / "frontier.parquet")
S.figure(frp.frontier_figure(front, front_cls), "07_B14_frontier_fixed_n_sample",
         title="Multimodal threshold frontier")
front.round(4)

# %% [markdown]
# ## Datasets D, C, B, A (built with '>' on both similarities, A17 step 4)

# %%
datasets = fr.build_datasets(rows, front, picks=list(picks), inclusive=inclusive)
summary = fr.datasets_summary(datasets)
write_parquet(datasets[["dataset", "key", "wnid", "similarity", "image_similarity",
                        "text_threshold", "image_threshold"]].astype({"dataset": str}),
              S.out / "datasets.parquet")
summary

# %% [markdown]
# ## Intra-class similarity vs ImageNet val, per encoder (B15)
# `n_per_class` seeded images per class of each dataset vs ImageNet val on the classes all have.
# Figures: the pooled similarities of A, B, D (first encoder), the average per dataset against
# ImageNet's, and the share of classes at or below ImageNet (0.5: as homogeneous as ImageNet).

# %%
val = read_imagenet_val(S.inputs.imagenet_val_dir, S.inputs.imagenet_devkit_dir)
VAL = ImageSource.imagenet_val()
embedders = [clip if spec == S.inputs.image_encoder else clip.with_encoder(load_image_encoder(spec, device=device))
             for spec in list(intra_encoders) or [S.inputs.image_encoder]]
results = {}
for embed in embedders:
    with S.timings(f"intra_{embed.encoder.name}"):
        ref = embed.embed(val, VAL).by_class()
        results[embed.encoder.name] = fr.compare_variants(embed.by_dataset(datasets), ref, seed)
per_class, shares, avg = fr.combine(results)  # empty tables when nothing could be compared
write_parquet(per_class, S.out / "intra_class_stats.parquet")
S.table(shares, "07_B15_share_at_or_below_imagenet")
S.table(avg, "07_B15_avg_intra_class_similarity")
print(shares.to_string(index=False), avg.to_string(index=False), sep="\n")
enc0 = next(iter(results))
if results[enc0].classes:
    S.figure(frp.datasets_histogram(results[enc0].pooled), "07_B15a_datasets_intra_class_histograms",
             title=f"Intra-class similarity of A, B, D ({enc0})")
    S.figure(frp.average_similarity_figure(avg[avg["encoder"] == enc0]),
             "07_B15b_datasets_avg_similarity", title=f"Average intra-class similarity ({enc0})")
    S.figure(frp.shares_figure(shares, enc0), "07_B15cd_datasets_share_lower",
             title="Classes with intra-class similarity at or below ImageNet")
else:
    print(f"B15 figures not drawn: no class to compare ({len(datasets):,} rows in datasets A-D)")

# %% [markdown]
# ## Check: on the demo world (annotators select typical images) D, the strongest image link,
# must be the most homogeneous, with the smallest share of classes at or below ImageNet.

# %%
check = fr.trend(avg[avg["encoder"] == enc0], shares[shares["encoder"] == enc0], summary)
pd.Series(check, name="D -> A")  # homogeneity_decreases: stronger image threshold, D > A

# %% [markdown]
# ## B19 · Image-to-synset similarity: LAIONet vs ImageNet (A20)
# LAIONet = the rows above the reference text threshold. Were its images less relevant to their
# synsets than ImageNet's, its lower homogeneity could be label noise; the paper finds them not.
# As the authors: LAIONet resampled per class to `b19_n_per_class` (50, ImageNet val's count) for
# the histogram, and a per-class delta test (mean ± 1.96·std/sqrt(n − 1), >= 7 images each).

# %%
val_in = val[val["wnid"].isin(texts.index)].reset_index(drop=True)
val_in["image_similarity"] = fr.image_to_synset_similarity(
    clip.embed(val_in, VAL).emb, class_emb, texts.index.get_indexer(val_in["wnid"]))
laionet_rows = rows[fr.passes(rows["similarity"].to_numpy(), t_ref_v, inclusive)]
b19_cmp = fr.relevance_comparison(laionet_rows, val_in, min_images=b19_min_images)
b19 = fr.relevance_summary(laionet_rows, val_in, comparison=b19_cmp)
print(b19)
b19_sample = fr.relevance_resample(laionet_rows, val_in, b19_n_per_class, seed)
if len(b19_sample):
    S.figure(frp.relevance_figure(b19_sample["image_similarity"],
                                  val_in[val_in["wnid"].isin(set(b19_sample["wnid"]))]["image_similarity"]),
             "07_B19_image_to_synset_similarity",
             title=f"Image-to-synset similarity (LAIONet resampled to {b19_n_per_class} per class)")
    S.figure(delta_figure(b19_cmp, "LAIONet", "ImageNet"), "07_B19b_image_to_synset_delta",
             title="Per-class image-to-synset similarity, LAIONet - ImageNet")
else:
    print(f"B19 figures not drawn: no class has LAIONet rows (text above {t_ref_v:.4f}) and "
          f"ImageNet val images ({len(laionet_rows):,} LAIONet rows, {len(val_in):,} val images)")

# %% [markdown]
# ## Extension · LAIONet at several text thresholds: class coverage vs intra-class similarity
# Text-only selection at each threshold (no image bar): how many classes survive and how
# homogeneous they are, against ImageNet (first intra-class encoder).

# %%
coverage = fr.coverage(rows, list(coverage_thresholds) or list(grid), embedders[0],
                       embedders[0].embed(val, VAL).by_class(), seed, inclusive)
S.table(coverage, "07_EXT_laionet_thresholds_coverage_vs_similarity")
S.figure(frp.coverage_figure(coverage), "07_EXT_laionet_thresholds_coverage_vs_similarity",
         title="LAIONet text threshold: coverage vs homogeneity")
coverage

# %% [markdown]
# ## Extension · per-class zero-shot recall on LAIONet vs ImageNet (stage 04's results)
# Points below the diagonal are classes the zero-shot model finds harder on LAIONet.

# %%
recall, note = fr.zero_shot_recall(S.inputs.eval_dir, zero_shot_model)
if recall is not None:
    S.table(recall.reset_index(), "07_EXT_zero_shot_per_class_recall")
    S.figure(frp.recall_figure(recall), "07_EXT_zero_shot_per_class_recall",
             title=f"Per-class zero-shot recall ({zero_shot_model})")
print(note)

# %%
write_json({"t_ref": t_ref_v, "i_ref": i_ref_v, "t_min": t_min_v, "n_ref": n_ref,
            "n_classes_ref": n_cls_ref, "image_to_synset_B19": b19,
            "homogeneity_decreases_D_to_A": check["homogeneity_decreases"],
            "summary": summary.astype({"dataset": str}).to_dict("records")}, S.out / "summary.json")
