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
# # 04 · ImageNet classifiers on LAIONet vs ImageNet (paper §3.1)
#
# Do models trained on ImageNet lose accuracy on LAIONet? Every classifier (timm, from checkpoint
# files; the paper's 29 models are listed in `lib/laionet/data/paper_models.csv`) and a zero-shot
# image/text encoder classify each LAIONet image and each ImageNet val image. Outputs map to
# classes **by wnid**, which fixes the authors' text-matching bug for 22k models. Aggregation is
# the paper's (A12): per-class recall; equally weighted accuracy with Wilson standard errors;
# LAION-weighted accuracy (class weights = LAIONet's relative frequency); ImageNet projected onto
# the LAIONet class keys.
#
# **Text in the image (TMLR, A7)**: the accuracies leave out the LAIONet rows whose image shows
# its class's name (stage 03's recognised text; the WordNet head name, punctuation stripped,
# space padded, in the lower-cased text). `recognised_text_rule="lemmas"` also flags every lemma
# (a fix). Stage 05 keeps these rows, as the paper does.
#
# **Released route**: `released_val_parquet` (and `released_laionet_parquet`) put the authors'
# per-image correctness tables in place of inference; `released_laion_parts` joins their rows to
# *your* LAION copy by URL and caption hash (`released_laionet_joined.parquet`), to download
# and evaluate with your own models. Products (read by 05-07): `results_laionet.parquet`,
# `results_imagenet.parquet`, `groups.json`, `coverage.json` (label-map coverage per model).

# %% tags=["parameters"]
classifiers: str = ""  # 'demo:<dir>', 'paper', a .csv/.yaml list, 'efficientnet-lite0|1|2', or a comma list; empty: the demo world's
zero_shot_encoder: str = ""  # image encoder spec (open_clip:..., demo-tower:<ckpt>); empty: the world's tower, else none
zero_shot_text_encoder: str = "minilm"  # text encoder of the zero-shot synset texts (name_def)
classes: str = ""  # class list (wnid file or 'imagenet1k'); empty: the demo world's list, else imagenet1k
authors_class_list: bool = False  # True: the authors' 999 classes (crane machine dropped, husky as n02112837), in every stage
head_source: str = "wordnet"      # synset head names: wordnet (paper; an error without WordNet) | timm (first ImageNet lemma: 112 texts change)
universe: str = ""  # label universe outputs are restricted to ('imagenet1k' or a class-list file, either format); empty: the class list
drop_recognised_text: bool = True  # leave out LAIONet rows whose image shows the class name (TMLR, A7); False: keep them
recognised_text_rule: str = "head"  # head: the authors' rule (WordNet head name) | lemmas: every lemma too (fix)
paper_nan_as_wrong: bool = False  # True: reproduce the authors' bug counting missing images as wrong (E.5)
intersection: bool = False  # True: both datasets on the classes present in both (fix of E.6)
resolution_parity: bool = False  # True: ImageNet val resized and re-encoded as stage 03 stored LAIONet (its image_size); False: full size (paper)
recall_models: list = ["resnet-50", "convnext-base-224", "convnext-base-224-22k-1k", "vit-base-patch16-224"]  # B7 panels (the paper's four); none evaluated: the first 4
gap_model: str = "vit-base-patch16-224"  # B9 gap histogram and gallery (paper); not evaluated: the first of recall_models
gallery_skip_predicted: list = ["n06359193", "n07248320"]  # B9 gallery skips images predicted as these (paper: web site, book jacket); []: none
min_images: int = 10  # classes with fewer evaluated images are left out of B7 and B9
top_classes: int = 500  # classes shown in the relative-frequency bar chart (B3)
gallery_size: int = 10  # images in the gap gallery
zero_shot_name: str = "zero-shot"  # the zero-shot model's name in tables
released_val_parquet: str = ""  # authors' ILSVRC2012_val.parquet: when set, the released route (no inference)
released_imagename2wnid: str = ""  # authors' val_imagename2wnid.json (labels of the released val table)
released_lemma_map: str = ""  # authors' lemma2wnid json: derives their 978 LAIONet keys
released_laionet_parquet: str = ""  # authors' LAIONet parquet with top_k_is_correct_* columns (optional)
released_laion_parts: str = ""  # glob of YOUR LAION parts: released LAIONet joined to them by URL + caption hash
# where and how it runs
profile: str = "demo"  # profile name (or YAML path); figures carry it in their titles
download_dir: str = ""  # stage 03 folder (shards + manifest.parquet); empty: stage 03's
laionet_path: str = ""  # laionet.parquet (class frequencies); empty: stage 02's
class_counts_path: str = ""  # class_counts.parquet (LAIONet keys of the projection); empty: stage 01's if any
imagenet_val_dir: str = ""  # ImageNet val images; empty: the demo world's
imagenet_devkit_dir: str = ""  # ILSVRC2012 devkit (ground truth + meta.mat); empty: the demo world's
out_dir: str = ""  # where results go; empty: runs/<profile>/04_evaluation
figures_dir: str = ""  # where figures and tables go; empty: figures/<profile>
batch_size: int = 64  # images per inference batch
device: str = "cpu"  # torch device for classifiers
n_workers: int = 2  # image-decoding worker processes (1: decode in the notebook's own process)
max_models: int = 8  # models loaded at once; more models: the images are decoded once per batch of models
val_shard_size: int = 1000  # ImageNet val images per result shard (LAIONet: the download's tar shards)

# %%
import pandas as pd
from IPython.display import Markdown, display

from laionet.jobs import evaluation, ocr
from laionet.method import accuracy as aggregate
from laionet.method import recognised_text
from laionet.pipeline.stage import open_stage
from laionet.plots import accuracy as plots
from laionet.util.files import write_parquet

S = open_stage("04_evaluation", globals())

# %% [markdown]
# ## Per-image results
# One long table per dataset: image_key, dataset, model, wnid, top5, correct1, correct5 (null =
# image missing or undecodable: excluded, never counted wrong). Each (model, shard) result is
# kept under the fingerprint of what made it, so a killed run resumes and a changed model, class
# list or setting recomputes only what it changes.

# %%
ev = evaluation.evaluate_stage(S.out, {**S.params, **S.inputs}, timings=S.timings)
if ev.coverage:
    print("label-map coverage of the LAIONet classes:")
    display(pd.DataFrame(ev.coverage).T)
display(aggregate.result_counts(ev.results))

# %% [markdown]
# ## LAIONet rows showing their class name as text (A7)
# The rows flagged by the recognised text; the accuracies below leave them out.

# %%
results = ev.results
if drop_recognised_text and ev.classes is not None:
    excl = ocr.exclusion_of_download(S.inputs.download_dir, ev.classes, rule=recognised_text_rule)
    results = excl.drop(ev.results)
    S.table(excl.summary(), "04_recognised_text", float_format="%.4f")
    display(excl.summary(), excl.examples())

# %% [markdown]
# ## Accuracy (A12)
# LAIONet: every class with evaluated images. ImageNet: projected onto the LAIONet keys (the
# classes with any caption match), as the authors did; `intersection=True` restricts both sides
# to the classes present in both.

# %%
summary = aggregate.summarize(results, ev.laionet_wnids, ev.keys, ev.groups, intersection)
acc, drops, recalls, freq = summary.acc, summary.drops, summary.recalls, summary.freq
S.table(acc, "04_accuracy", float_format="%.6f")
write_parquet(acc, S.out / "accuracy.parquet")  # what a sweep of this stage compares across runs
S.table(drops, "04_accuracy_drops", float_format="%.4f")
display(drops[drops["weighting"] == "equal"], Markdown(aggregate.describe(summary, results, ev.keys)))
if results is not ev.results:  # the TMLR exclusion's effect: LAIONet with every row vs without
    acc_all = aggregate.summarize(ev.results, ev.laionet_wnids, ev.keys, ev.groups, intersection).acc
    effect = recognised_text.accuracy_effect(acc_all, acc)
    S.table(effect, "04_accuracy_recognised_text", float_format="%.6f")
    display(effect[effect["weighting"] == "equal"])

# %% [markdown]
# ## B4 · Zero-shot sanity check, per class (A13)
# Classes significantly lower / higher on LAIONet (95 % interval of the recall difference) and
# the share with a positive difference. The paper (old run, 900 classes): top-1 94 / 303, 67.3 %
# positive; top-5 122 / 227, 63.9 %: LAIONet's labels are not noisier.

# %%
if zero_shot_name in set(acc["model"]):
    b4 = aggregate.per_class_significance(recalls, zero_shot_name)
    S.table(b4, "04_B4_zero_shot_per_class", float_format="%.4f")
    display(b4)

# %% [markdown]
# ## Figures (B3, B5, B6, B7, B9)
# **B3**: how unevenly LAIONet's images spread over the classes (ImageNet val is uniform), the
# reason the LAION-weighted accuracy can differ from the equally weighted one. **B5**: each
# model's accuracy on LAIONet against ImageNet; below y = x a model does better on ImageNet.
# **B6**: LAION weights against equal weights, on each dataset.

# %%
datasets = [d for d in ("LAIONet", "ImageNet") if freq is not None and d in set(acc["dataset"])]
if freq is not None and len(freq):
    S.figure(plots.plot_relative_frequency(freq, heads=ev.heads, top=top_classes),
             "04_relative_frequency", title=f"Relative frequency of LAIONet classes (top {top_classes})")
if {"LAIONet", "ImageNet"} <= set(acc["dataset"]):
    S.figure(plots.plot_laionet_vs_imagenet(acc, ev.groups), "04_laionet_vs_imagenet_accuracy",
             title="LAIONet vs ImageNet accuracy (equally weighted; \u00b11.96 SE)")
for ds in datasets:
    S.figure(plots.plot_weighted_vs_equal(acc, ds, ev.groups), f"04_{ds.lower()}_weighted_vs_equal",
             title=f"{ds}: LAION-weighted vs equally weighted accuracy (\u00b11.96 SE)")

# %% [markdown]
# **B7**: per-class recall against the class's frequency in LAIONet: does a model recognise the
# classes LAION shows often better? **B9**: the distribution of per-class recall@5 gaps (LAIONet
# minus ImageNet) of one model, and LAIONet images of the class with the largest gap (green:
# correct@5, red: wrong).

# %%
models = aggregate.pick_models(acc, recall_models)
print(f"recall panels: {models}")
for ds in [d for d in datasets if d in set(recalls["dataset"])]:
    S.figure(plots.plot_recall_vs_frequency(recalls, freq, models, ds, min_images=min_images),
             f"04_{ds.lower()}_recall_vs_frequency", title=f"{ds} recall@1 vs LAIONet relative frequency")
gm = aggregate.pick_gap_model(acc, gap_model, models)
gaps = aggregate.class_gaps(recalls, gm, k=5, min_images=min_images)
if len(gaps):
    S.figure(plots.plot_gap_distribution(gaps, gm, heads=ev.heads), "04_gap_distribution",
             title=f"Per-class recall@5 gap, LAIONet \u2212 ImageNet ({gm})")
    display(gaps.head(10))
    worst = gaps.iloc[0]["wnid"]
    ims, ok, keys = evaluation.gallery(results, gm, worst, S.inputs.download_dir, gallery_size,
                                       skip_predicted=gallery_skip_predicted)
    if ims:
        S.figure(plots.plot_gallery(ims, ok, titles=keys), "04_gap_gallery",
                 title=f"LAIONet images of the largest gap class {ev.heads.get(worst, worst)} "
                       f"({gm}; green = correct@5, red = wrong)")
