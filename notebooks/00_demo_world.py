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
#
# A small share of the LAION images (`laionet.demo.world.TEXT_IN_IMAGE_SHARE`, 5 %) also shows
# its class's name as text (the WordNet head name or one of the class's lemmas, drawn into the
# pixels; the truth columns `text_in_image`, `text_is_head`), so the recognised-text exclusion of
# the paper's TMLR version (stage 03 reads the text, stage 04 drops the flagged rows) has
# something to find. Captions never see it.

# %% tags=["parameters"]
profile: str = "demo"          # profile name (folder names and figure titles)
out_dir: str = ""              # stage folder (empty: runs/<profile>/00_demo_world)
figures_dir: str = ""          # figure folder (empty: figures/<profile>)
world_size: str = "demo"       # demo (24 classes, 24k LAION rows) | tiny (6 classes, 1.5k rows)
seed: int = 0                  # the world's seed: same seed, byte-identical files
train_models: bool = True      # also train the demo image tower and classifiers

# %%
import pandas as pd

from laionet.demo import build_world, checks, plots
from laionet.pipeline.stage import open_stage

S = open_stage("00_demo_world", globals())
with S.timings("world"):
    world = build_world(S.out / "world", size=world_size, seed=seed, train_models=train_models)
info = world.info()
print(f"world {world.root} ready in {S.timings['world']:.1f} s "
      f"(built in {info['timings_s'].get('generate_total', 0):.1f} s, "
      f"models {info['timings_s'].get('models_total', 0):.1f} s; recorded in world.json)")
pd.Series(info["counts"]).to_frame("count")

# %%
classes = world.truth_table("classes")
laion = world.truth_table("laion")
names = checks.class_names(world)
written = laion["text_in_image"].notna()
print(f"{int(written.sum())} of {len(laion)} LAION images show a class name as text "
      f"({int(laion['text_is_head'].sum())} of them the head name)")
classes[["wnid", "cid", "head", "lemmas", "class_freq"]]

# %% [markdown]
# ## Sample images per class at several typicalities
# Columns: LAION-mini class images at typicality quantiles 0.95 … 0.05 (left = most typical):
# the same class drifts from its prototype as the nuisance grows.

# %%
S.figure(plots.samples_by_typicality(world), "00_demo_samples_by_typicality",
         title="Demo world: class images by typicality")

# %% [markdown]
# ## Sample captions by kind
# Three captions of each kind, and what the image really shows: only "unique" and "nested"
# captions name the class of their image; the others are what a text filter must reject.

# %%
sample = checks.caption_samples(laion, names, seed=seed)
S.table(sample, "00_demo_caption_samples")
sample

# %% [markdown]
# ## Class frequencies (long-tailed) and caption kinds

# %%
S.figure(plots.class_frequencies(laion, names), "00_demo_class_frequencies",
         title="Demo world: class frequencies and caption kinds")

# %% [markdown]
# ## Verify the causal structure
# 1. Image-based selection (ImageNet-mini) keeps more typical images than text-based selection
#    (LAION images whose caption names their class).

# %%
sets = checks.comparison_sets(world)
typ, gap = checks.typicality_summary(sets)
print(typ)
print(f"typicality gap ImageNet-mini train - LAION text-selected = {gap:+.3f} "
      f"(must be > {checks.MIN_TYPICALITY_GAP})")
assert checks.typicality_raised(gap), "image-based selection should raise typicality"
S.figure(plots.typicality_histogram(sets), "00_demo_typicality",
         title="Typicality: text- vs image-selected")

# %% [markdown]
# 2. Higher intra-class similarity in ImageNet-mini than in text-selected LAION images of the
#    same classes (mean pairwise cosine per class; pixel vectors, and the demo tower when trained).

# %%
compare, embeddings = checks.set_embeddings(world, sets)
summary = checks.intra_class_summary(compare, embeddings, seed=seed)
S.table(summary.reset_index(), "00_demo_intra_class_similarity")
print(summary)
assert checks.imagenet_more_similar(summary), "ImageNet-mini should be more similar within classes"

# %% [markdown]
# 3. Classifiers trained on ImageNet-mini lose accuracy on natural-distribution images
#    (all readable LAION images of the classes, typical or not). A classifier near chance on its
#    own val set (tiny world, few epochs) tests nothing: only those above twice chance count.

# %%
acc, table = checks.accuracy_table(world, sets)
S.table(table.reset_index(), "00_demo_classifier_accuracy")
verdict, why = checks.classifiers_lose_accuracy(table, n_classes=len(classes))
print(table)
print(why)
assert verdict is not False, "most classifiers should lose accuracy on LAION"
acc
