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
world_dir: str = ""  # demo world folder; fills the defaults of the paths below when they are empty
imagenetv2_root: str = ""  # folder holding imagenetv2-<version>-format-val/; empty: <world_dir>/imagenetv2
class_info: str = ""  # ImageNetV2 class_info.json (index -> wnid); empty: beside the releases, else timm's 1k list
selection_frequencies: str = ""  # per-image votes (version, path, wnid, selection_frequency); empty: <imagenetv2_root>/selection_frequencies.parquet if present
similarity_dir: str = ""  # stage 05 folder (samples.parquet, manifest); empty: stage 05 default
download_dir: str = ""  # stage 03 folder (LAIONet images); empty: runs/<profile>/03_download
imagenet_val_dir: str = ""  # ImageNet val images; empty: <world_dir>/imagenet/val
image_encoder: str = ""  # image encoder spec; empty: stage 05's first encoder
ci_method: str = "bootstrap"  # per-class interval: 'bootstrap' over images (default) or 'paper'
n_boot: int = 1000  # bootstrap resamples per class and dataset
min_pairs: int = 7  # classes need this many pairs in both datasets to be tested (A15)
seed: int = 0  # seed of resampling and bootstrap (the authors used 111 here)
hist_bins: int = 40  # bins of the V2 histograms (A16)
classifiers: str = ""  # classifiers evaluated on V2 (as stage 04); empty: demo:<world_dir>/models, none without a world
eval_dir: str = ""  # stage 04 folder (LAIONet per-image results); empty: stage 04 default
sf_thresholds: str = "0.0,0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9,1.0"  # selection-frequency thresholds of the curve
min_images_curve: int = 5  # a class enters the curve at a threshold when it keeps this many images
batch_size: int = 64  # images per embedding / inference batch
device: str = "auto"  # torch device

# %%
import json
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import Markdown, display

from laionet import figures, paths, stage
from laionet import similarity as sim
from laionet.datasets import IMAGENETV2_VERSIONS, imagenetv2_version, iter_images, read_imagenetv2
from laionet.download import iter_downloaded
from laionet.io import write_parquet

STAGE = "06_imagenetv2_selection_frequency"
P = paths.stage_paths(STAGE, profile, out_dir, figures_dir)
figures.style()
world = Path(paths.resolve(world_dir)) if world_dir else None



imagenetv2_root = paths.or_default(imagenetv2_root, world / "imagenetv2" if world else None)
similarity_dir = paths.or_default(similarity_dir, paths.stage_output("05_intra_class_similarity", profile))
download_dir = paths.or_default(download_dir, paths.stage_output("03_download", profile))
eval_dir = paths.or_default(eval_dir, paths.stage_output("04_evaluation", profile))
imagenet_val_dir = paths.or_default(imagenet_val_dir, world / "imagenet" / "val" if world else None)
classifiers = paths.or_default(classifiers, f"demo:{world / 'models'}" if world else None)
if not selection_frequencies and Path(imagenetv2_root, "selection_frequencies.parquet").is_file():
    selection_frequencies = str(Path(imagenetv2_root, "selection_frequencies.parquet"))
man05 = json.loads((Path(similarity_dir) / stage.MANIFEST).read_text())
image_encoder = image_encoder or man05["params"]["specs"][0]
label = sim.encoder_label(image_encoder)
VERS = list(IMAGENETV2_VERSIONS.values())
print(f"encoder {label} ({image_encoder}); releases under {imagenetv2_root}")

# %% [markdown]
# ## Data and embeddings

# %%
v2 = {v.name: read_imagenetv2(imagenetv2_root, v.name, class_info or None) for v in VERS}
for v in VERS:
    d = v2[v.name]
    print(f"V2-{v.letter} {v.name} (selection frequency {v.selection_frequency}): {len(d)} images, "
          f"{d['wnid'].nunique()} classes; class map: {d.attrs['class_info']}")
samples = pd.read_parquet(Path(similarity_dir) / "samples.parquet")
lai = samples[samples["dataset"] == "LAIONet"].assign(image_key=lambda d: d["image_key"].astype("int64"))
inet = samples[samples["dataset"] == "ImageNet"]

from laionet.encoders import load_image_encoder

encoder = load_image_encoder(image_encoder, device=device)
cache = sim.image_cache_dir(profile)
emb = {"LAIONet": sim.embed_dataset(encoder, iter_downloaded(download_dir, keys=lai["image_key"].tolist()),
                                    cache, "laionet", keys=lai["image_key"].tolist(), batch_size=batch_size),
       "ImageNet": sim.embed_dataset(encoder, [], cache, "imagenet_val", keys=inet["image_key"].tolist())}
labels_of = {"LAIONet": lai.set_index("image_key")["wnid"], "ImageNet": inet.set_index("image_key")["wnid"]}
for v in VERS:
    emb[v.name] = sim.embed_dataset(encoder, iter_images(v2[v.name]), cache, f"imagenetv2-{v.name}",
                                    batch_size=batch_size)
    labels_of[v.name] = v2[v.name].set_index("image_key")["wnid"]
groups = {d: e.by_class(labels_of[d]) for d, e in emb.items()}

# %% [markdown]
# ## Per-class comparisons vs selection frequency (B12)

# %%
rows, comps = [], []
for ref in ("LAIONet", "ImageNet"):
    for v in VERS:
        cmp = sim.compare_classes(groups[ref], groups[v.name], method=ci_method,
                                  min_pairs=min_pairs, n_boot=n_boot, seed=seed)
        comps.append(cmp.assign(reference=ref, version=v.name))
        rows.append({"reference": ref, "version": v.name, "letter": v.letter,
                     "selection_frequency": v.selection_frequency, **sim.summarize_comparison(cmp)})
props = pd.DataFrame(rows)
write_parquet(pd.concat(comps, ignore_index=True), P.out / "comparison.parquet")
write_parquet(props, P.out / "proportions.parquet")
display(props)
figures.save_table(props, "06_v2_proportions", P.figures)
fig, axes = plt.subplots(1, 2, figsize=(7.2, 2.7), sharey=True)
for ax, ref in zip(axes, ("LAIONet", "ImageNet")):
    sim.proportions_figure(props[props["reference"] == ref], "selection_frequency", label_a=ref,
                           label_b="V2", kind="line", ax=ax)
    ax.set_xlabel("MTurk selection frequency")
figures.save_figure(fig, "06_prop_lower_higher_vs_selection_frequency", P.figures, profile,
                    title=f"Intra-class similarity vs ImageNetV2 releases ({label})")

# %% [markdown]
# Histograms (A16: per class, n = min(#pairs in LAIONet, a, b, c, 100) values from each, 40 bins)
# and the per-class Δ of LAIONet − V2-b.

# %%
sizes = sim.common_resample_sizes(groups["LAIONet"], *(groups[v.name] for v in VERS), cap=100)
res = {d: sim.pooled_resample(groups[d], sizes, seed)["similarity"]
       for d in ["LAIONet"] + [v.name for v in VERS]}
b, c = IMAGENETV2_VERSIONS["matched-frequency"], IMAGENETV2_VERSIONS["top-images"]
colors = {f"ImageNetV2-{b.letter}": "tab:green", f"ImageNetV2-{c.letter}": "tab:red"}
fig = sim.histogram_figure({f"ImageNetV2-{b.letter}": res[b.name], f"ImageNetV2-{c.letter}": res[c.name]},
                           bins=hist_bins, colors=colors, xlabel=f"intra-class similarity ({label})")
figures.save_figure(fig, "06_hist_v2b_vs_v2c", P.figures, profile, title="ImageNetV2-b vs -c")
fig = sim.histogram_figure({"LAIONet": res["LAIONet"], f"ImageNetV2-{b.letter}": res[b.name]},
                           bins=hist_bins, colors=colors, xlabel=f"intra-class similarity ({label})")
figures.save_figure(fig, "06_hist_laionet_vs_v2b", P.figures, profile, title="LAIONet vs ImageNetV2-b")
cmp_b = comps[0]
cmp_b.attrs.update(method=ci_method, level=0.95)
fig = sim.delta_figure(cmp_b, "LAIONet", "V2-b")
figures.save_figure(fig, "06_delta_laionet_vs_v2b", P.figures, profile,
                    title="Per-class Δ: LAIONet − ImageNetV2 matched-frequency")

# %% [markdown]
# ## Continuous curve: intra-class similarity vs selection-frequency threshold (demo only)
# Every V2 image once (an image in several releases counts once); at threshold t, the images
# with selection frequency ≥ t; classes keeping ≥ `min_images_curve` images.

# %%
curve = pd.DataFrame()
if selection_frequencies and Path(selection_frequencies).is_file():
    sf = pd.read_parquet(selection_frequencies)
    sf["image_key"] = sf["path"].str.split("/", n=1).str[1]
    sf["version"] = sf["version"].map(lambda x: imagenetv2_version(x).name)
    parts = []
    for v in VERS:
        rows_v = sf[sf["version"] == v.name]
        parts.append(pd.DataFrame({"image_key": rows_v["image_key"].to_numpy(), "wnid": rows_v["wnid"].to_numpy(),
                                   "sf": rows_v["selection_frequency"].to_numpy(), "src": v.name}))
    pool = pd.concat(parts, ignore_index=True).drop_duplicates("image_key")
    vecs = np.zeros((len(pool), encoder.dim), np.float32)
    for v in VERS:
        m = (pool["src"] == v.name).to_numpy()
        pos = pd.Index(emb[v.name].keys).get_indexer(pool.loc[m, "image_key"])
        if (pos < 0).any():
            raise KeyError(f"{selection_frequencies}: {int((pos < 0).sum())} rows of {v.name} have no "
                           f"image in {imagenetv2_root}, e.g. {pool.loc[m, 'image_key'][pos < 0].head(3).tolist()}")
        vecs[m] = emb[v.name].emb[pos]
    lai_mean = sim.pairwise_stats(groups["LAIONet"]).set_index("wnid")["mean"]
    inet_mean = sim.pairwise_stats(groups["ImageNet"]).set_index("wnid")["mean"]
    out = []
    for t in [float(x) for x in sf_thresholds.split(",") if x.strip()]:
        keep = (pool["sf"] >= t - 1e-9).to_numpy()
        st = sim.pairwise_stats(sim.group_by_class(vecs[keep], pool["wnid"].to_numpy()[keep]))
        st = st[st["n_images"] >= min_images_curve]
        if not len(st):
            continue
        lo = lai_mean.reindex(st["wnid"]).to_numpy() < st["mean"].to_numpy()
        out.append({"threshold": t, "n_classes": len(st), "n_images": int(st["n_images"].sum()),
                    "mean_similarity": st["mean"].mean(), "se": st["mean"].std(ddof=1) / np.sqrt(len(st))
                    if len(st) > 1 else np.nan, "share_laionet_lower": float(np.mean(lo)),
                    "laionet_mean_same_classes": lai_mean.reindex(st["wnid"]).mean(),
                    "imagenet_mean_same_classes": inet_mean.reindex(st["wnid"]).mean()})
    curve = pd.DataFrame(out)
    write_parquet(curve, P.out / "selection_frequency_curve.parquet")
    figures.save_table(curve, "06_similarity_vs_selection_frequency_threshold", P.figures)
    display(curve)
    fig, ax = plt.subplots(figsize=(3.6, 2.6))
    ax.errorbar(curve["threshold"], curve["mean_similarity"], yerr=1.96 * curve["se"], fmt="o-",
                color="black", capsize=2, label="ImageNetV2 images with sf ≥ t")
    ax.plot(curve["threshold"], curve["laionet_mean_same_classes"], "--", color="tab:blue", label="LAIONet")
    ax.plot(curve["threshold"], curve["imagenet_mean_same_classes"], "--", color="tab:red", label="ImageNet")
    ax.set(xlabel="selection-frequency threshold t", ylabel=f"mean intra-class similarity ({label})")
    ax.legend()
    figures.save_figure(fig, "06_similarity_vs_selection_frequency_threshold", P.figures, profile,
                        title="Intra-class similarity vs selection-frequency threshold")
else:
    print("no per-image selection frequencies (real ImageNetV2 has none): continuous curve skipped")

# %% [markdown]
# ## Accuracy on each release vs LAIONet (B13)
# Classifiers of stage 04 evaluated on each release (cached per release); V2 accuracy is equally
# weighted and projected onto the LAIONet classes, as in A16.

# %%
acc = pd.DataFrame()
laionet_results = Path(eval_dir) / "results_laionet.parquet"
if classifiers and laionet_results.is_file():
    from laionet.evaluation import accuracy_table, read_classifier_specs
    from laionet.evaluation import pipeline

    specs = read_classifier_specs(classifiers)
    files = {v.name: P.out / f"results_imagenetv2-{v.name}.parquet" for v in VERS}
    aparams = dict(classifiers=[repr(c) for c in specs], root=imagenetv2_root, class_info=class_info)
    ainputs = [c.checkpoint for c in specs if c.checkpoint]
    if not stage.is_current(P.out / "accuracy", aparams, ainputs):
        universe = sorted(set().union(*(set(v2[v.name]["wnid"]) for v in VERS)))
        predictors = pipeline.build_predictors(specs, universe, device="cpu" if device == "auto" else device)
        for v in VERS:
            recs, n = pipeline.imagenet_records(v2[v.name])
            pipeline.evaluate_to_file(recs, n, predictors, f"ImageNetV2-{v.letter}", files[v.name], batch_size)
        stage.write_manifest(P.out / "accuracy", STAGE, aparams, ainputs,
                             outputs=[str(f) for f in files.values()])
    results = pipeline.read_results([laionet_results] + list(files.values()))
    keys = sorted(results.loc[results["dataset"] == "LAIONet", "wnid"].unique())
    acc = accuracy_table(results, projections={f"ImageNetV2-{v.letter}": keys for v in VERS})
    acc = acc[acc["weighting"] == "equal"]
    write_parquet(acc, P.out / "accuracy.parquet")
    wide = acc.pivot_table(index=["model", "k"], columns="dataset", values="accuracy").reset_index()
    figures.save_table(wide, "06_accuracy_laionet_vs_v2", P.figures)
    display(wide)
    fig, axes = plt.subplots(1, 2, figsize=(6.6, 2.8))
    for ax, k in zip(axes, (1, 5)):
        wk = wide[wide["k"] == k]
        for v, col in ((c, "tab:red"), (IMAGENETV2_VERSIONS["threshold0.7"], "goldenrod"), (b, "tab:green")):
            ax.scatter(wk["LAIONet"], wk[f"ImageNetV2-{v.letter}"], color=col, s=14,
                       label=f"V2-{v.letter} ({v.selection_frequency})")
        hi = 0.95 * np.nanmax(wk.drop(columns=["model", "k"]).to_numpy()) if len(wk) else 1
        lo = np.nanmin(wk.drop(columns=["model", "k"]).to_numpy()) if len(wk) else 0
        ax.plot([lo, hi], [lo, hi], "--", color="gray")
        ax.set(xlabel=f"LAIONet top-{k} (equally weighted)", ylabel=f"ImageNetV2 top-{k}")
        ax.legend()
    figures.save_figure(fig, "06_accuracy_laionet_vs_v2", P.figures, profile,
                        title="Accuracy: LAIONet vs ImageNetV2 releases")
else:
    print(f"accuracy skipped: classifiers={classifiers!r}, LAIONet results at {laionet_results} "
          f"{'found' if laionet_results.is_file() else 'missing (run stage 04)'}")

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
