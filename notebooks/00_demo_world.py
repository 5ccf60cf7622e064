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
# # 00 · The demo world
#
# A small simulated web that follows the paper's causal story, so every later stage does real
# work offline and the paper's claims can be checked where the truth is known
# (`../shared/docs/DESIGN.md` §5). Each image is a **class prototype** (shape, colours, texture,
# habitat) plus **nuisance** (pose, scale, position, colour shift, clutter, occlusion);
# its **typicality** = exp(−‖z‖²/2d) says how close the nuisance is to zero. Captions see the
# class and only a little of the image. ImageNet-mini is found by text but **kept by annotators
# who look at the image** (acceptance rises with typicality); LAION-mini is whatever the web
# shows. Everything here is simulated: these numbers test the pipeline, not the real world.

# %% tags=["parameters"]
profile: str = "demo"          # profile name (folder names and figure titles)
out_dir: str = ""              # stage folder (empty: runs/<profile>/00_demo_world)
figures_dir: str = ""          # figure folder (empty: figures/<profile>)
world_dir: str = "runs/demo/00_demo_world/world"  # where the world is written (reused if current)
world_size: str = "demo"       # demo (24 classes, 24k LAION rows) | tiny (6 classes, 1.5k rows)
seed: int = 0                  # the world's seed: same seed, byte-identical files
train_models: bool = True      # also train the demo image tower and classifiers

# %%
import time

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from laionet import figures
from laionet.demo import build_world, checks
from laionet.paths import resolve, stage_paths
from laionet.stage import write_manifest

paths = stage_paths("00_demo_world", profile, out_dir, figures_dir)
figures.style()
t0 = time.perf_counter()
world = build_world(resolve(world_dir), size=world_size, seed=seed, train_models=train_models)
info = world.info()
print(f"world {world.root} ready in {time.perf_counter() - t0:.1f} s "
      f"(built in {info['timings_s'].get('generate_total', 0):.1f} s, "
      f"models {info['timings_s'].get('models_total', 0):.1f} s; recorded in world.json)")
pd.Series(info["counts"]).to_frame("count")

# %%
classes = world.truth_table("classes")
laion = world.truth_table("laion")
imagenet = world.truth_table("imagenet")
wnids = classes["wnid"].tolist()
name = dict(zip(classes["label"], classes["head"]))
classes[["wnid", "cid", "head", "lemmas", "class_freq"]]

# %% [markdown]
# ## Sample images per class at several typicalities
# Columns: LAION-mini class images at typicality quantiles 0.95 … 0.05 (left = most typical).

# %%
shown = classes["label"].tolist()[:12]
qs = [0.95, 0.75, 0.5, 0.25, 0.05]
ok = laion[(laion["file_status"] == "ok") & (laion["label"] >= 0)]
fig, axes = plt.subplots(len(shown), len(qs), figsize=(1.3 * len(qs), 1.3 * len(shown)))
for i, c in enumerate(shown):
    sub = ok[ok["label"] == c].sort_values("typicality")
    for j, q in enumerate(qs):
        ax = axes[i, j]
        ax.axis("off")
        if len(sub):
            r = sub.iloc[min(int(q * len(sub)), len(sub) - 1)]
            ax.imshow(checks.load_images(world, pd.Series([r["path"]]))[0])
            ax.set_title(f"t={r['typicality']:.2f}", fontsize=6)
        if j == 0:
            ax.text(-8, 32, name[c], ha="right", va="center", fontsize=7)
figures.save_figure(fig, "00_demo_samples_by_typicality", paths.figures, profile,
                    title="Demo world: class images by typicality")

# %% [markdown]
# ## Sample captions by kind

# %%
kinds = ["unique", "nested", "two_classes", "polysemous", "unmentioned", "no_class"]
rng = np.random.default_rng(seed)
sample = pd.concat([laion[laion["kind"] == k].sample(min(3, (laion["kind"] == k).sum()),
                                                      random_state=seed) for k in kinds])
sample["image shows"] = sample["label"].map(name).fillna("(no class)")
figures.save_table(sample[["kind", "TEXT", "image shows", "typicality"]],
                   "00_demo_caption_samples", paths.figures)
sample[["kind", "TEXT", "image shows", "typicality"]]

# %% [markdown]
# ## Class frequencies (long-tailed) and caption kinds

# %%
fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.2))
freq = (laion[laion["label"] >= 0]["label"].map(name).value_counts())
a1.bar(range(len(freq)), freq.to_numpy(), color="tab:blue")
a1.set_yscale("log")
a1.set_xticks(range(len(freq)), freq.index, rotation=90, fontsize=6)
a1.set_ylabel("LAION-mini images of the class")
laion["kind"].value_counts().reindex(kinds).plot.bar(ax=a2, color="tab:gray")
a2.set_ylabel("rows")
figures.save_figure(fig, "00_demo_class_frequencies", paths.figures, profile,
                    title="Demo world: class frequencies and caption kinds")

# %% [markdown]
# ## Verify the causal structure
# 1. Image-based selection (ImageNet-mini) keeps more typical images than text-based selection
#    (LAION images whose caption names their class).

# %%
sets = checks.comparison_sets(world)
typ = sets.groupby("set")["typicality"].agg(["count", "mean", "median"])
print(typ)
gap = typ.loc["ImageNet-mini train", "mean"] - typ.loc["LAION text-selected", "mean"]
print(f"typicality gap ImageNet-mini train - LAION text-selected = {gap:+.3f} (must be > 0.05)")
assert gap > 0.05, "image-based selection should raise typicality"
fig, ax = plt.subplots(figsize=(5, 3))
for s, color in (("LAION text-selected", "tab:blue"), ("ImageNet-mini train", "tab:red")):
    ax.hist(sets.loc[sets["set"] == s, "typicality"], bins=30, range=(0, 1), density=True,
            alpha=0.5, color=color, label=s)
ax.set_xlabel("typicality (hidden truth)")
ax.legend()
figures.save_figure(fig, "00_demo_typicality", paths.figures, profile,
                    title="Typicality: text- vs image-selected")

# %% [markdown]
# 2. Higher intra-class similarity in ImageNet-mini than in text-selected LAION images of the
#    same classes (mean pairwise cosine per class; pixel vectors, and the demo tower when trained).

# %%
compare = sets[sets["set"].isin(["LAION text-selected", "ImageNet-mini train"])].reset_index(drop=True)
pixels = checks.load_images(world, compare["path"])
embeddings = {"pixels": checks.pixel_embeddings(pixels)}
tower = checks.tower_embeddings(world, pixels)
if tower is not None:
    embeddings["demo tower"] = tower
rows = []
for enc, emb in embeddings.items():
    for s in ("LAION text-selected", "ImageNet-mini train"):
        m = (compare["set"] == s).to_numpy()
        r = checks.intra_class_similarity(emb[m], compare["label"].to_numpy()[m], seed=seed)
        rows.append(r.assign(encoder=enc, set=s))
sim = pd.concat(rows, ignore_index=True)
wide = sim.pivot_table(index=["encoder", "label"], columns="set", values="mean_similarity")
wide["delta"] = wide["ImageNet-mini train"] - wide["LAION text-selected"]
summary = wide.groupby("encoder").agg(laion=("LAION text-selected", "mean"),
                                      imagenet=("ImageNet-mini train", "mean"),
                                      delta=("delta", "mean"),
                                      share_imagenet_higher=("delta", lambda d: (d > 0).mean()))
figures.save_table(summary.reset_index(), "00_demo_intra_class_similarity", paths.figures)
print(summary)
for enc, r in summary.iterrows():
    assert r["delta"] > 0, f"{enc}: ImageNet-mini should be more similar within classes"

# %% [markdown]
# 3. Classifiers trained on ImageNet-mini lose accuracy on natural-distribution images
#    (all readable LAION images of the classes, typical or not).

# %%
acc = pd.DataFrame()
if checks.model_paths(world):
    natural = sets[sets["set"] == "LAION natural"]
    val = sets[sets["set"] == "ImageNet-mini val"]
    acc = pd.concat([
        checks.classifier_accuracy(world, checks.load_images(world, val["path"]),
                                   val["label"].to_numpy()).assign(test="ImageNet-mini val"),
        checks.classifier_accuracy(world, checks.load_images(world, natural["path"]),
                                   natural["label"].to_numpy()).assign(test="LAION natural"),
    ])
    table = acc.pivot(index="arch", columns="test", values="top1")
    table["drop"] = table["ImageNet-mini val"] - table["LAION natural"]
    figures.save_table(table.reset_index(), "00_demo_classifier_accuracy", paths.figures)
    print(table)
    # a classifier near chance on its own val set (tiny world, few epochs) tests nothing
    trained = table[table["ImageNet-mini val"] > 2 / len(wnids)]
    if trained.empty:
        print(f"no classifier beats 2x chance ({2 / len(wnids):.2f}) on ImageNet-mini val: "
              "too little training for this check (use the demo size)")
    else:
        assert (trained["drop"] > 0).mean() >= 0.5, "most classifiers should lose accuracy on LAION"
else:
    print("no models trained (train_models=False): classifier check skipped")
acc

# %%
outputs = [str(p.relative_to(paths.out)) for p in [world.world_json] if p.is_relative_to(paths.out)]
write_manifest(paths.out, "00_demo_world",
               {"world_dir": str(world.root), "world_size": world_size, "seed": seed,
                "train_models": train_models}, outputs=outputs,
               timings=info["timings_s"], world_fingerprint=info["fingerprint"])
