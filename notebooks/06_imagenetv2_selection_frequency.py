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
# (top-images, "c") (A16). A release selected more strictly should be more similar within a
# class than LAIONet and ImageNet (B12) and easier to classify (B13). LAIONet and ImageNet are
# stage 05's samples (the authors' "ImageNet vs V2" used ImageNet-Captions train images).

# %% tags=["parameters"]
ci_method: str = "bootstrap"  # per-class interval: 'bootstrap' over images (default) or 'paper'
n_boot: int = 1000  # bootstrap resamples per class and dataset
min_pairs: int = 7  # classes need this many pairs in both datasets to be tested (A15)
seed: int = 0  # seed of resampling and bootstrap (the authors used 111 here)
hist_bins: int = 40  # bins of the V2 histograms (A16)
sf_thresholds: list = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]  # selection-frequency thresholds of the curve
min_images_curve: int = 5  # a class enters the curve at a threshold when it keeps this many images
image_encoder: str = ""  # image encoder spec; empty: stage 05's first encoder (its encoders.json)
classifiers: str = ""  # classifiers evaluated on V2 (as stage 04); empty: the demo world's, none on real data
profile: str = "demo"  # profile name (or YAML path); figures carry it in their titles
out_dir: str = ""  # where results go; empty: runs/<profile>/06_imagenetv2_selection_frequency
figures_dir: str = ""  # where figures and tables go; empty: figures/<profile>
imagenetv2_root: str = ""  # folder holding imagenetv2-<version>-format-val/; empty: the demo world's
class_info: str = ""  # ImageNetV2 class_info.json (index -> wnid); empty: the demo world's, else beside the releases, else timm's 1k list
selection_frequencies: str = ""  # per-image votes (version, path, wnid, selection_frequency); empty: the demo world's (real V2 has none)
similarity_dir: str = ""  # stage 05 folder (samples.parquet, encoders.json); empty: stage 05's product
download_dir: str = ""  # stage 03 folder (LAIONet images); empty: stage 03's product
eval_dir: str = ""  # stage 04 folder (LAIONet per-image results); empty: stage 04's product
class_counts_path: str = ""  # class_counts.parquet (LAIONet keys B13 projects V2 onto, as stage 04); empty: stage 01's if any
laionet_path: str = ""  # laionet.parquet (its classes are the keys without stage 01); empty: stage 02's if any
batch_size: int = 64  # images per embedding / inference batch
device: str = "auto"  # torch device

# %%
import pandas as pd
from IPython.display import display

from laionet.jobs import imagenetv2
from laionet.jobs import intra_class as ic
from laionet.jobs.evaluation import class_keys
from laionet.jobs.image_embeddings import Embedder
from laionet.method import selection_frequency as sf
from laionet.method.similarity import compare_classes
from laionet.models import load_image_encoder
from laionet.pipeline.stage import open_stage
from laionet.plots import similarity as plots
from laionet.util.files import write_parquet

S = open_stage("06_imagenetv2_selection_frequency", globals())
label, spec = ic.main_encoder(S.inputs.image_encoder, S.inputs.similarity_dir)
print(S, f"\nencoder {label} ({spec})")

# %% [markdown]
# ## B12 · Per-class comparisons vs selection frequency
# For LAIONet and ImageNet, the share of classes significantly lower / higher than each release
# (the paper, C.4: LAIONet < V2 in 32 / 46 / 59 % of classes, > V2 in 38 / 24 / 17 % for b / a / c);
# histograms (A16: per class, n = min(#pairs in LAIONet, a, b, c, 100) values from each) and the
# per-class Δ of LAIONet − V2-b.

# %%
v2 = imagenetv2.read_releases(S.inputs.imagenetv2_root, S.inputs.class_info)
display(sf.describe_releases(v2))
embed = Embedder(load_image_encoder(spec, device=device), S.cache_dir("image_embeddings"), batch_size)
sources = imagenetv2.sources(S.inputs.download_dir)
with S.timings("embed"):
    emb = {d: embed(rows, sources[d]) for d, rows in {**ic.read_samples(S.inputs.similarity_dir), **v2}.items()}
groups = {d: e.by_class() for d, e in emb.items()}
with S.timings("compare"):
    cmps = {(ref, v.name): compare_classes(groups[ref], groups[v.name], ci_method, min_pairs, n_boot, seed)
            for ref in sf.REFERENCES for v in sf.VERSIONS}
comparison, props = sf.release_tables(cmps)
write_parquet(comparison, S.out / "comparison.parquet")
write_parquet(props, S.out / "proportions.parquet")
S.table(props, "06_v2_proportions")
display(props)
S.figure(plots.release_proportions_figure(props), "06_prop_lower_higher_vs_selection_frequency",
         title=f"Intra-class similarity vs ImageNetV2 releases ({label})")
res = sf.release_histograms(groups, seed)
b, c = "ImageNetV2-b", "ImageNetV2-c"
colors, xlabel = {b: "tab:green", c: "tab:red"}, f"intra-class similarity ({label})"
S.figure(plots.histogram_figure({b: res["matched-frequency"], c: res["top-images"]}, bins=hist_bins,
                                colors=colors, xlabel=xlabel), "06_hist_v2b_vs_v2c", title="ImageNetV2-b vs -c")
S.figure(plots.histogram_figure({"LAIONet": res["LAIONet"], b: res["matched-frequency"]}, bins=hist_bins,
                                colors=colors, xlabel=xlabel),
         "06_hist_laionet_vs_v2b", title="LAIONet vs ImageNetV2-b")
S.figure(plots.delta_figure(cmps[("LAIONet", "matched-frequency")], "LAIONet", "V2-b"),
         "06_delta_laionet_vs_v2b", title="Per-class Δ: LAIONet − ImageNetV2 matched-frequency")

# %% [markdown]
# ## Continuous curve: intra-class similarity vs selection-frequency threshold (demo only)
# Every V2 image once; at t, those with selection frequency ≥ t, in classes keeping ≥
# `min_images_curve` images (real ImageNetV2 publishes no per-image votes: no curve there).

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
# ## B13 · Accuracy on each release vs LAIONet
# Stage 04's classifiers on each release (cached); equally weighted, projected onto the LAIONet
# keys (every class with a caption match, stage 01) as stage 04 projects ImageNet (A16).

# %%
keys = (class_keys(S.inputs.class_counts_path, pd.read_parquet(S.inputs.laionet_path, columns=["wnid"]))
        if S.inputs.laionet_path else None)  # None: the classes with LAIONet results
with S.timings("accuracy"):
    acc = imagenetv2.accuracy_on_releases(S.inputs.classifiers, S.inputs.eval_dir, v2, S.out, S.step(
        "accuracy", uses=["classifiers", "imagenetv2_root", "class_info"]), device, batch_size, keys)
write_parquet(acc, S.out / "accuracy.parquet")
wide = sf.accuracy_wide(acc)
if len(acc):
    S.table(wide, "06_accuracy_laionet_vs_v2")
    S.figure(plots.release_accuracy_figure(wide), "06_accuracy_laionet_vs_v2",
             title="Accuracy: LAIONet vs ImageNetV2 releases")
display(wide)
