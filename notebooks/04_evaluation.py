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
# Every classifier (timm, from checkpoint files; the paper's 29 models are listed in
# `lib/laionet/data/paper_models.csv` with their timm equivalents) and a zero-shot image/text
# encoder classify each LAIONet image and each ImageNet val image. Images are decoded once per
# batch and every model sharing a preprocessing runs on the same tensors. Outputs map to classes
# **by wnid** (timm's synset lists), which fixes the authors' text-matching bug for 22k models.
#
# Aggregation is the paper's (spec A12): per-class recall over classes with data; equally
# weighted accuracy with Wilson standard errors; LAION-weighted accuracy (class weights =
# LAIONet relative frequency); ImageNet projected onto the LAIONet class keys.
#
# **Released route**: with `released_val_parquet` set, the authors' per-image correctness
# tables replace inference (no model runs) and the same tables and figures are produced.

# %% tags=["parameters"]
profile: str = "demo"  # profile name (or YAML path); figures carry it in their titles
out_dir: str = ""  # where results go; empty means runs/<profile>/04_evaluation
figures_dir: str = ""  # where figures and tables go; empty means figures/<profile>
world_dir: str = ""  # demo world folder; fills the defaults of the paths below when they are empty
classes: str = ""  # class list (wnid file or 'imagenet1k'); empty means <world_dir>/classes.txt or imagenet1k
download_dir: str = ""  # stage 03 folder (shards + manifest.parquet); empty means runs/<profile>/03_download
laionet_path: str = ""  # stage 02 laionet.parquet (class frequencies); empty means runs/<profile>/02_caption_filtering/laionet.parquet
class_counts_path: str = ""  # stage 01 class_counts.parquet (LAIONet keys for the projection); empty means stage 01 default
imagenet_val_dir: str = ""  # ImageNet val images; empty means <world_dir>/imagenet/val
imagenet_devkit_dir: str = ""  # ILSVRC2012 devkit (ground truth + meta.mat); empty means <world_dir>/imagenet/devkit
classifiers: str = ""  # 'demo:<dir>', 'paper' (hub tags) or a .csv/.yaml list; empty means demo:<world_dir>/models
universe: str = ""  # label universe outputs are restricted to (paper: the ImageNet class list); empty means the class list
zero_shot_encoder: str = ""  # image encoder spec (open_clip:..., demo-tower:<ckpt>); empty means the demo tower of world_dir if any, else none
zero_shot_text_encoder: str = "minilm"  # text encoder of the zero-shot synset texts (name_def)
zero_shot_name: str = "zero-shot"  # the zero-shot model's name in tables
paper_nan_as_wrong: bool = False  # True: reproduce the authors' bug counting missing images as wrong (E.5)
intersection: bool = False  # True: both datasets on the classes present in both (fix of E.6)
batch_size: int = 64  # images per inference batch
device: str = "cpu"  # torch device for classifiers
released_val_parquet: str = ""  # authors' ILSVRC2012_val.parquet: when set, the released route (no inference)
released_imagename2wnid: str = ""  # authors' val_imagename2wnid.json (labels of the released val table)
released_lemma_map: str = ""  # authors' lemma2wnid json: derives their 978 LAIONet keys
released_laionet_parquet: str = ""  # authors' LAIONet parquet with top_k_is_correct_* columns (optional)
recall_models: str = ""  # comma-separated models for the recall-vs-frequency panels; empty means first 4
gap_model: str = ""  # model of the gap histogram and gallery; empty means first classifier
min_images: int = 10  # classes with fewer evaluated images are left out of B7 and B9
top_classes: int = 500  # classes shown in the relative-frequency bar chart (B3)
gallery_size: int = 10  # images in the gap gallery

# %%
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
from IPython.display import Markdown, display

from laionet import figures, paths, stage
from laionet.evaluation import (accuracy_table, class_frequency, drops_table, label_map_coverage,
                                paper_laionet_keys, per_class_recalls, read_lemma_pairs,
                                read_released)
from laionet.evaluation import pipeline, plots

STAGE = "04_evaluation"
P = paths.stage_paths(STAGE, profile, out_dir, figures_dir)
figures.style()
world = Path(paths.resolve(world_dir)) if world_dir else None



classes = paths.or_default(classes, world / "classes.txt" if world else "imagenet1k")
download_dir = paths.or_default(download_dir, paths.stage_output("03_download", profile))
laionet_path = paths.or_default(laionet_path, paths.stage_output("02_caption_filtering", profile) / "laionet.parquet")
class_counts_path = paths.or_default(class_counts_path,
                            paths.stage_output("01_synset_matching", profile) / "class_counts.parquet")
imagenet_val_dir = paths.or_default(imagenet_val_dir, world / "imagenet" / "val" if world else None)
imagenet_devkit_dir = paths.or_default(imagenet_devkit_dir, world / "imagenet" / "devkit" if world else None)
classifiers = paths.or_default(classifiers, f"demo:{world / 'models'}" if world else None)
if not zero_shot_encoder and world and (world / "models" / "image_tower.safetensors").is_file():
    zero_shot_encoder = f"demo-tower:{world / 'models' / 'image_tower.safetensors'}"
released = bool(released_val_parquet)
print(f"route: {'released tables' if released else 'inference'}; outputs in {P.out}")

# %% [markdown]
# ## Per-image results
# One long table per dataset: image_key, dataset, model, wnid, top5, correct1, correct5
# (null = image missing or undecodable: excluded, never counted wrong).

# %%
timings = stage.Timings()
groups: dict[str, str] = {}
if released:
    with timings("read_released"):
        results = read_released(released_val_parquet, "ImageNet", labels=released_imagename2wnid)
        if released_laionet_parquet:
            results = pd.concat([results, read_released(released_laionet_parquet, "LAIONet")],
                                ignore_index=True)
    pm = __import__("laionet.evaluation", fromlist=["paper_models"]).paper_models()
    groups = dict(zip(pm["paper_name"], pm["group"]))
    keys = (paper_laionet_keys(read_lemma_pairs(released_lemma_map)) if released_lemma_map
            else sorted(results.loc[results["dataset"] == "LAIONet", "wnid"].unique()))
    laionet = (results[(results["dataset"] == "LAIONet")].drop_duplicates("image_key")
               if released_laionet_parquet else pd.DataFrame({"wnid": []}))
else:
    from laionet.classes import class_table
    from laionet.datasets import read_imagenet_val
    from laionet.evaluation import read_classifier_specs, read_wnid_file

    laionet = pd.read_parquet(laionet_path, columns=["key", "wnid"])
    specs = read_classifier_specs(classifiers)
    groups = {c.name: c.group for c in specs}
    table = class_table(classes)
    label_universe = (read_wnid_file(universe) if universe else list(table["wnid"]))
    params = dict(classifiers=[repr(c) for c in specs], universe=label_universe,
                  zero_shot=[zero_shot_encoder, zero_shot_text_encoder, paper_nan_as_wrong],
                  classes=list(table["wnid"]), val=imagenet_val_dir, batch_size=batch_size)
    manifest = Path(download_dir) / "manifest.parquet"
    inputs = [laionet_path, manifest] + [c.checkpoint for c in specs if c.checkpoint]
    result_files = {"LAIONet": P.out / "results_laionet.parquet",
                    "ImageNet": P.out / "results_imagenet.parquet"}
    if stage.is_current(P.out, params, inputs):
        print("results are current (manifest matches): reusing", list(result_files.values()))
    else:
        zero_shot = None
        if zero_shot_encoder:
            from laionet.encoders import load_image_encoder, load_text_encoder

            zero_shot = dict(name=zero_shot_name, image_encoder=load_image_encoder(zero_shot_encoder),
                             text_embeddings=load_text_encoder(zero_shot_text_encoder)
                             .embed_texts(list(table["name_def"])),
                             class_wnids=list(table["wnid"]), paper_nan_as_wrong=paper_nan_as_wrong)
            groups[zero_shot_name] = "clip"
        predictors = pipeline.build_predictors(specs, label_universe, zero_shot, device=device)
        for p in predictors:
            print(f"{p.name}: {p.info.get('n_mapped', len(p.output_wnids))} mapped outputs, "
                  f"preprocessing group {hash(p.transform_key) & 0xffff:04x}")
        val = read_imagenet_val(imagenet_val_dir, imagenet_devkit_dir)
        with timings("evaluate_laionet"):
            recs, n, n_missing = pipeline.laionet_records(download_dir)
            print(f"LAIONet: {n} rows, {n_missing} not downloaded (kept as missing)")
            _, err_l = pipeline.evaluate_to_file(recs, n, predictors, "LAIONet",
                                                 result_files["LAIONet"], batch_size)
        with timings("evaluate_imagenet"):
            recs, n = pipeline.imagenet_records(val)
            _, err_i = pipeline.evaluate_to_file(recs, n, predictors, "ImageNet",
                                                 result_files["ImageNet"], batch_size)
        for name, errs in (("LAIONet", err_l), ("ImageNet", err_i)):
            if errs:
                print(f"{name}: {len(errs)} undecodable image(s), e.g. {errs[:3]}")
        coverage = {p.name: {k: v for k, v in label_map_coverage(
            p.output_wnids, laionet["wnid"].unique()).items() if k != "missing"} for p in predictors}
        stage.write_manifest(P.out, STAGE, params, inputs,
                             outputs=[f.name for f in result_files.values()], timings=dict(timings),
                             coverage=coverage, groups=groups)
    groups = json.loads((P.out / stage.MANIFEST).read_text()).get("groups", groups)
    results = pipeline.read_results(list(result_files.values()))
    keys = pipeline.class_keys(class_counts_path, laionet)
    print("label-map coverage of the LAIONet classes:")
    display(pd.DataFrame(json.loads((P.out / stage.MANIFEST).read_text())["coverage"]).T)

counts = results.groupby(["dataset", "model"])["correct1"].agg(rows="size", evaluated="count")
display(counts)

# %% [markdown]
# ## Accuracy (spec A12)
# LAIONet: every class with evaluated images. ImageNet: projected onto the LAIONet keys (the
# classes with any caption match), as the authors did; `intersection=True` restricts both sides
# to the classes present in both.

# %%
freq = class_frequency(laionet["wnid"]) if len(laionet) else None
projections = {"ImageNet": keys}
acc = accuracy_table(results, class_freq=freq, projections=projections, intersection=intersection)
recalls = per_class_recalls(results, projections=projections, intersection=intersection)
acc["group"] = acc["model"].map(groups)
figures.save_table(acc, "04_accuracy", P.figures, float_format="%.6f")
drops = drops_table(acc)
drops["group"] = drops["model"].map(groups)
figures.save_table(drops, "04_accuracy_drops", P.figures, float_format="%.4f")
display(drops[drops["weighting"] == "equal"])
print(f"ImageNet keys: {len(keys)}; ImageNet classes with images: "
      f"{recalls[recalls['dataset'] == 'ImageNet']['wnid'].nunique()}; LAIONet classes with images: "
      f"{recalls[recalls['dataset'] == 'LAIONet']['wnid'].nunique()}")

# %%
eq = drops[(drops["weighting"] == "equal") & drops.get("drop", pd.Series(dtype=float)).notna()] \
    if "drop" in drops else pd.DataFrame()
if len(eq):
    n_l = int(results[(results["dataset"] == "LAIONet")]["image_key"].nunique())
    n_i = int(results[(results["dataset"] == "ImageNet")]["image_key"].nunique())
    lines = [f"- **{r.model}** top-{r.k}: ImageNet {r.accuracy_ImageNet:.3f} \u2192 LAIONet "
             f"{r.accuracy_LAIONet:.3f}, drop {r.drop:+.3f} \u00b1 {1.96 * r.drop_se:.3f} (95 %)"
             for r in eq.itertuples()]
    display(Markdown(f"Drop from ImageNet ({n_i} images) to LAIONet ({n_l} images), equally "
                     "weighted classes:\n\n" + "\n".join(lines)))

# %% [markdown]
# ## Figures (spec B3, B5, B6, B7, B9)

# %%
if freq is not None and len(freq):
    heads = {}
    if not released:
        heads = dict(zip(table["wnid"], table["head"]))
    fig = plots.plot_relative_frequency(freq, heads=heads, top=top_classes)
    figures.save_figure(fig, "04_relative_frequency", P.figures, profile,
                        title=f"Relative frequency of LAIONet classes (top {top_classes})")

if {"LAIONet", "ImageNet"} <= set(acc["dataset"]):
    fig = plots.plot_laionet_vs_imagenet(acc, groups)
    figures.save_figure(fig, "04_laionet_vs_imagenet_accuracy", P.figures, profile,
                        title="LAIONet vs ImageNet accuracy (equally weighted; \u00b11.96 SE)")
for ds in ("LAIONet", "ImageNet"):
    if freq is not None and ds in set(acc["dataset"]):
        fig = plots.plot_weighted_vs_equal(acc, ds, groups)
        figures.save_figure(fig, f"04_{ds.lower()}_weighted_vs_equal", P.figures, profile,
                            title=f"{ds}: LAION-weighted vs equally weighted accuracy (\u00b11.96 SE)")

# %%
models = [m for m in (recall_models.split(",") if recall_models else []) if m] or \
    list(dict.fromkeys(acc["model"]))[:4]
if freq is not None:
    for ds in ("LAIONet", "ImageNet"):
        if ds in set(recalls["dataset"]):
            fig = plots.plot_recall_vs_frequency(recalls, freq, models, dataset=ds,
                                                 min_images=min_images)
            figures.save_figure(fig, f"04_{ds.lower()}_recall_vs_frequency", P.figures, profile,
                                title=f"{ds} recall@1 vs LAIONet relative frequency")

# %%
gm = gap_model or models[0]
gaps = plots.class_gaps(recalls, gm, k=5, min_images=min_images)
if len(gaps):
    heads = dict(zip(table["wnid"], table["head"])) if not released else {}
    fig = plots.plot_gap_distribution(gaps, gm, heads=heads)
    figures.save_figure(fig, "04_gap_distribution", P.figures, profile,
                        title=f"Per-class recall@5 gap, LAIONet \u2212 ImageNet ({gm})")
    display(gaps.head(10))
    worst = gaps.iloc[0]["wnid"]
    rows = results[(results["dataset"] == "LAIONet") & (results["model"] == gm)
                   & (results["wnid"] == worst) & results["correct5"].notna()].head(gallery_size)
    if len(rows) and Path(download_dir, "manifest.parquet").is_file():
        ims = pipeline.images_of(download_dir, rows["image_key"].tolist())
        keep = [k for k in rows["image_key"] if k in ims]
        ok = rows.set_index("image_key").loc[keep, "correct5"].astype(bool).tolist()
        fig = plots.plot_gallery([ims[k] for k in keep], ok, titles=keep)
        figures.save_figure(fig, "04_gap_gallery", P.figures, profile,
                            title=f"LAIONet images of the largest gap class {heads.get(worst, worst)} "
                                  f"({gm}; green = correct@5, red = wrong)")
else:
    print(f"no class with >= {min_images} images on both datasets for {gm}: no gap figure")

# %%
if released:
    stage.write_manifest(P.out, STAGE, {"released_val_parquet": released_val_parquet,
                                        "released_laionet_parquet": released_laionet_parquet},
                         [p for p in (released_val_parquet, released_laionet_parquet) if p],
                         timings=dict(timings))
print("done:", sorted(p.name for p in P.figures.glob("04_*")))
