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
# # 06 · ImageNetV2: a weaker image-to-selection link makes ImageNet more like LAIONet (§4.1)
#
# The three ImageNetV2 releases differ in how strongly annotators' votes selected their images:
# MTurk selection frequency 0.73 (matched-frequency, "b"), 0.85 (threshold0.7, "a"), 0.93
# (top-images, "c") (spec A16). Compared with LAIONet and with ImageNet, a release with a
# higher selection frequency should have a higher intra-class similarity and higher accuracy.
#
# Class folders are integer class indices mapped to wnids by index (folder "10" is class 10).
# LAIONet and ImageNet samples are stage 05's (same seed, same encoder cache). Where per-image
# selection frequencies exist (the demo world), a continuous curve adds the intra-class
# similarity of the V2 images kept at each selection-frequency threshold. Note: the authors'
# "ImageNet vs V2" used ImageNet-Captions train images; here ImageNet is stage 05's ImageNet.

# %% tags=["parameters"]
profile: str = "demo"  # profile name (or YAML path); figures carry it in their titles
out_dir: str = ""  # where results go; empty: runs/<profile>/06_imagenetv2_selection_frequency
figures_dir: str = ""  # where figures and tables go; empty: figures/<profile>
imagenetv2_root: str = ""  # folder holding imagenetv2-<version>-format-val/; empty: the demo world's
class_info: str = ""  # ImageNetV2 class_info.json (index -> wnid); empty: the demo world's, else beside the releases, else timm's 1k list
selection_frequencies: str = ""  # per-image votes (version, path, wnid, selection_frequency); empty: the demo world's (real V2 has none)
similarity_dir: str = ""  # stage 05 folder (samples.parquet, encoders.json); empty: stage 05's product
download_dir: str = ""  # stage 03 folder (LAIONet images); empty: stage 03's product
image_encoder: str = ""  # image encoder spec; empty: stage 05's first encoder (its encoders.json)
ci_method: str = "bootstrap"  # per-class interval: 'bootstrap' over images (default) or 'paper'
n_boot: int = 1000  # bootstrap resamples per class and dataset
min_pairs: int = 7  # classes need this many pairs in both datasets to be tested (A15)
seed: int = 0  # seed of resampling and bootstrap (the authors used 111 here)
hist_bins: int = 40  # bins of the V2 histograms (A16)
classifiers: str = ""  # classifiers evaluated on V2 (as stage 04); empty: the demo world's, none on real data
eval_dir: str = ""  # stage 04 folder (LAIONet per-image results); empty: stage 04's product
class_counts_path: str = ""  # class_counts.parquet (LAIONet keys B13 projects V2 onto, as stage 04); empty: stage 01's if any
laionet_path: str = ""  # laionet.parquet (its classes are the keys without stage 01); empty: stage 02's if any
sf_thresholds: list = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]  # selection-frequency thresholds of the curve
min_images_curve: int = 5  # a class enters the curve at a threshold when it keeps this many images
batch_size: int = 64  # images per embedding / inference batch
device: str = "auto"  # torch device

# %%
import pandas as pd
from IPython.display import Markdown, display

from laionet.jobs import evaluation as pipeline
from laionet.jobs import intra_class as ic
from laionet.jobs.image_embeddings import embed_samples
from laionet.jobs import imagenetv2
from laionet.method import selection_frequency as sf
from laionet.models import load_image_encoder
from laionet.pipeline.stage import open_stage
from laionet.plots import similarity as plots
from laionet.util.files import write_parquet

S = open_stage("06_imagenetv2_selection_frequency", globals())
label, spec = ic.main_encoder(S.inputs.image_encoder, S.inputs.similarity_dir)
print(S, f"\nencoder {label} ({spec})")

# %% [markdown]
# ## Data and embeddings
# The three releases; stage 05's LAIONet and ImageNet samples (their embeddings come from the
# shared cache).

# %%
v2 = imagenetv2.read_releases(S.inputs.imagenetv2_root, S.inputs.class_info)
display(sf.describe_releases(v2))
encoder = load_image_encoder(spec, device=device)
with S.timings("embed"):
    emb = embed_samples(encoder, {**ic.read_samples(S.inputs.similarity_dir), **v2},
                        imagenetv2.sources(S.inputs.download_dir), S.cache_dir("image_embeddings"),
                        batch_size=batch_size)
groups = {d: e.by_class() for d, e in emb.items()}

# %% [markdown]
# ## Per-class comparisons vs selection frequency (B12)
# For LAIONet and ImageNet, the share of classes significantly lower / higher than each release:
# a release selected more strictly should be more homogeneous.

# %%
with S.timings("compare"):
    comparison, props = sf.compare_releases(groups, method=ci_method, min_pairs=min_pairs,
                                            n_boot=n_boot, seed=seed)
write_parquet(comparison, S.out / "comparison.parquet")
write_parquet(props, S.out / "proportions.parquet")
S.table(props, "06_v2_proportions")
display(props)
S.figure(plots.release_proportions_figure(props), "06_prop_lower_higher_vs_selection_frequency",
         title=f"Intra-class similarity vs ImageNetV2 releases ({label})")

# %% [markdown]
# Histograms (A16: per class, n = min(#pairs in LAIONet, a, b, c, 100) values from each, 40 bins)
# and the per-class Δ of LAIONet − V2-b.

# %%
res = sf.release_histograms(groups, seed)
b, c = "ImageNetV2-b", "ImageNetV2-c"
colors = {b: "tab:green", c: "tab:red"}
S.figure(plots.histogram_figure({b: res["matched-frequency"], c: res["top-images"]}, bins=hist_bins,
                                colors=colors, xlabel=f"intra-class similarity ({label})"),
         "06_hist_v2b_vs_v2c", title="ImageNetV2-b vs -c")
S.figure(plots.histogram_figure({"LAIONet": res["LAIONet"], b: res["matched-frequency"]}, bins=hist_bins,
                                colors=colors, xlabel=f"intra-class similarity ({label})"),
         "06_hist_laionet_vs_v2b", title="LAIONet vs ImageNetV2-b")
S.figure(plots.delta_figure(sf.pair_comparison(comparison, "LAIONet", "matched-frequency", ci_method),
                            "LAIONet", "V2-b"),
         "06_delta_laionet_vs_v2b", title="Per-class Δ: LAIONet − ImageNetV2 matched-frequency")

# %% [markdown]
# ## Continuous curve: intra-class similarity vs selection-frequency threshold (demo only)
# Every V2 image once (an image in several releases counts once); at threshold t, the images
# with selection frequency ≥ t; classes keeping ≥ `min_images_curve` images. Real ImageNetV2
# publishes no per-image votes: the table stays empty there.

# %%
curve = imagenetv2.selection_frequency_curve(S.inputs.selection_frequencies, emb, sf_thresholds,
                                     min_images_curve)
write_parquet(curve, S.out / "selection_frequency_curve.parquet")
if len(curve):
    S.table(curve, "06_similarity_vs_selection_frequency_threshold")
    S.figure(plots.selection_frequency_curve_figure(curve, label),
             "06_similarity_vs_selection_frequency_threshold",
             title="Intra-class similarity vs selection-frequency threshold")
display(curve)

# %% [markdown]
# ## Accuracy on each release vs LAIONet (B13)
# Stage 04's classifiers evaluated on each release (a cached sub-step, redone only when the
# classifiers or the releases change); V2 accuracy is equally weighted and projected onto the
# LAIONet keys (every class with a caption match, stage 01), as stage 04 projects ImageNet (A16).

# %%
keys = (pipeline.class_keys(S.inputs.class_counts_path,
                           pd.read_parquet(S.inputs.laionet_path, columns=["wnid"]))
        if S.inputs.laionet_path else None)  # None: the classes with LAIONet results
print(f"V2 projected onto {len(keys) if keys is not None else 'the LAIONet results'} keys")
with S.timings("accuracy"):
    acc = imagenetv2.accuracy_on_releases(S.inputs.classifiers, S.inputs.eval_dir, v2, S.out,
                                  S.step("accuracy", uses=["classifiers", "imagenetv2_root", "class_info"]),
                                  device=device, batch_size=batch_size, keys=keys)
write_parquet(acc, S.out / "accuracy.parquet")
wide = sf.accuracy_wide(acc)
if len(acc):
    S.table(wide, "06_accuracy_laionet_vs_v2")
    S.figure(plots.release_accuracy_figure(wide), "06_accuracy_laionet_vs_v2",
             title="Accuracy: LAIONet vs ImageNetV2 releases")
display(wide)

# %% [markdown]
# ## Closing note

# %%
lines = [f"- {r.reference} < V2-{r.letter} ({r.selection_frequency}): {100 * r.share_lower:.1f} %, "
         f"> V2: {100 * r.share_higher:.1f} % of {r.n_tested} classes" for r in props.itertuples()]
if len(curve):
    lines.append(f"- V2 images with selection frequency ≥ t: mean intra-class similarity "
                 f"{curve['mean_similarity'].iloc[0]:.3f} at t = {curve['threshold'].iloc[0]:.1f} → "
                 f"{curve['mean_similarity'].iloc[-1]:.3f} at t = {curve['threshold'].iloc[-1]:.1f}")
display(Markdown("Paper (C.4): LAIONet < V2 0.32 / 0.46 / 0.59 and > V2 0.38 / 0.24 / 0.17 for "
                 "b / a / c.\n\n" + "\n".join(lines)))
