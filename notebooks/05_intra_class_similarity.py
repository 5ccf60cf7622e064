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
# # 05 · Intra-class similarity: LAIONet vs ImageNet (paper §3.2, Appendix H)
#
# Is LAIONet less similar within each class than ImageNet? Up to `n_per_class` images per class
# of each dataset are embedded by an image encoder (CLIP ViT-B/32 in the paper, Appendix H's
# timm encoders, the demo world's tower here); a class's statistic is the mean cosine similarity
# over its pairs of distinct images (A14); per class, Δ = mean(LAIONet) − mean(ImageNet) with a
# confidence interval: significantly lower (UCB < 0) or higher (LCB > 0) (A15).
#
# Deviations from the authors, each a parameter: seeded sampling, not the "first 100"
# (`paper_first_n=True`, E.9); an image bootstrap for the per-class interval, not independent
# pairs (`ci_method="paper"`, E.10); non-RGB images converted, not dropped (`paper_rgb_only=True`,
# E.7). Images showing their class's name as text (A7) stay in, as in the TMLR version.

# %% tags=["parameters"]
n_per_class: int = 100  # images sampled per class and dataset (A14: 100)
min_pairs: int = 7  # classes need at least this many pairs in both datasets to be tested (A15)
ci_method: str = "bootstrap"  # per-class interval: 'bootstrap' over images (default) or 'paper' (pairs independent)
n_boot: int = 1000  # bootstrap resamples per class and dataset
seed: int = 0  # seed of the per-class sampling, the histogram resampling and the bootstrap
paper_first_n: bool = False  # True: the first n images per class in key order instead of a seeded sample (E.9)
paper_rgb_only: bool = False  # True: skip non-RGB ImageNet images as the authors did (E.7)
min_eval_images: int = 10  # classes with fewer evaluated LAIONet images are left out of recall vs Δ (A21)
image_encoders: list = []  # image encoder specs, the first is the main one; []: the demo world's image tower
on_error: str = "raise"  # an undecodable image: 'raise' (stop, naming it) | 'skip' (left out, listed as skipped)
profile: str = "demo"  # profile name (or YAML path); figures carry it in their titles
out_dir: str = ""  # where results go; empty: runs/<profile>/05_intra_class_similarity
figures_dir: str = ""  # where figures and tables go; empty: figures/<profile>
download_dir: str = ""  # stage 03 folder (shards + manifest.parquet); empty: stage 03's product
laionet_path: str = ""  # stage 02 laionet.parquet (relative class frequencies); empty: stage 02's product
imagenet_val_dir: str = ""  # ImageNet val images; empty: the demo world's
imagenet_devkit_dir: str = ""  # ILSVRC2012 devkit (ground truth + meta.mat); empty: the demo world's
imagenet_ground_truth: str = ""  # instead of the devkit: JSON {file: wnid} or Kaggle LOC_val_solution.csv
eval_dir: str = ""  # stage 04 folder (per-image results) for recall vs Δ similarity; empty: stage 04's product
batch_size: int = 64  # images per embedding batch
device: str = "auto"  # torch device of the encoders

# %%
import pandas as pd
from IPython.display import Markdown, display

from laionet.jobs import intra_class as ic
from laionet.jobs.download import load_manifest
from laionet.jobs.image_embeddings import ImageSource
from laionet.pipeline.stage import open_stage
from laionet.plots import similarity as plots
from laionet.sources.imagenet import read_imagenet_val

S = open_stage("05_intra_class_similarity", globals())
encoders = ic.encoder_specs(S.inputs.image_encoders)
print(S, "\nencoders:", encoders)

# %% [markdown]
# ## The per-class comparison, per encoder
# Samples: LAIONet's images that downloaded (stage 03), ImageNet val with its ground truth, up to
# `n_per_class` per class, seeded. Embeddings are stored per dataset and encoder, keyed by image
# and file bytes (shared with stages 06-09): a rerun embeds only images it has not seen.

# %%
val = read_imagenet_val(S.inputs.imagenet_val_dir, devkit_dir=S.inputs.imagenet_devkit_dir,
                        ground_truth=imagenet_ground_truth or None)
samples = ic.draw_samples({"LAIONet": ic.downloaded_images(load_manifest(S.inputs.download_dir)),
                           "ImageNet": val}, n_per_class, seed, paper_first_n)
print({name: f"{len(s)} images, {s['wnid'].nunique()} classes" for name, s in samples.items()})
study = ic.run_study(encoders, samples, {"LAIONet": ImageSource.laion(S.inputs.download_dir),
                                         "ImageNet": ImageSource.imagenet_val(paper_rgb_only)},
                     S.cache_dir("image_embeddings"), method=ci_method, min_pairs=min_pairs,
                     n_boot=n_boot, seed=seed, batch_size=batch_size, device=device,
                     timings=S.timings, on_error=on_error)
study.write(S.out)
S.table(study.summary, "05_intra_class_similarity_summary")
display(study.summary)

# %% [markdown]
# ## B10 · Pooled histograms and per-class Δ; B11 · the shares, per encoder (Appendix H)
# Histograms pool min(#pairs, 100) resampled pair similarities per common class; the Δ plot shows
# each class's own interval; the shares come from these runs (the authors hard-coded them).

# %%
for label, cmp in study.comparisons.items():
    slug = label.replace(" ", "_")
    S.figure(plots.histogram_figure(study.encoder_pooled(label), bins=70,
                                    xlabel=f"intra-class image-image similarity ({label})"),
             f"05_intra_class_sim_hist_{slug}", title="LAIONet vs ImageNet: pooled intra-class similarity")
    S.figure(plots.delta_figure(cmp), f"05_intra_class_sim_delta_{slug}",
             title=f"Per-class Δ intra-class similarity ({label})")
S.figure(plots.proportions_figure(study.summary, "encoder"), "05_prop_lower_higher_by_encoder",
         title="LAIONet vs ImageNet, by image encoder")

# %% [markdown]
# ## Similarity vs relative frequency (B8) and recall vs Δ similarity (B7)
# Are frequent LAIONet classes less homogeneous (Spearman's ρ in the title; the paper's old run:
# −0.2645)? Do classifiers fail where LAIONet is more diverse than ImageNet? (main encoder)

# %%
freq = ic.frequency_vs_similarity(study.class_stats, pd.read_parquet(S.inputs.laionet_path,
                                  columns=["wnid"])["wnid"], study.main)
S.figure(plots.scatter_figure(freq["relative_frequency"], freq["mean"], "relative frequency in LAIONet",
                              f"LAIONet intra-class similarity ({study.main})", logx=True),
         "05_sim_vs_relative_frequency", title="Intra-class similarity vs class frequency")
rec = ic.recall_vs_delta(S.inputs.eval_dir, study.comparison, study.main, min_eval_images)
if rec is not None:
    S.figure(plots.recall_vs_delta_figure(rec), "05_recall_vs_similarity_delta",
             title="LAIONet recall vs Δ intra-class similarity")

# %% [markdown]
# ## What it shows (the paper: lower in 66.4 % of classes, significantly lower in 57.6 %, higher 27.9 %)

# %%
s0 = study.summary.iloc[0]
display(Markdown(
    f"With **{s0['encoder']}** ({s0['n_tested']} of {s0['n_common']} classes tested, {ci_method}), "
    f"LAIONet is lower in **{100 * s0['share_delta_negative']:.1f} %** of classes, significantly "
    f"lower in **{100 * s0['share_lower']:.1f} %**, significantly higher in {100 * s0['share_higher']:.1f} %."))
