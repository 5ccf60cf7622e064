# ---
# jupyter:
#   jupytext:
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
# work offline and the paper's claims can be checked where the truth is known (DESIGN.md §5).
# Each image is a **class prototype** (shape, colours, texture, habitat) plus **nuisance** (pose,
# scale, position, colour shift, clutter, occlusion); its **typicality** = exp(−‖z‖²/2d) says how
# close the nuisance is to zero. Captions see the class and only a little of the image.
# ImageNet-mini is found by text but **kept by annotators who look at the image**; LAION-mini is
# whatever the web shows. 5 % of LAION images show their class's name as text in the pixels
# (never in captions), for the recognised-text exclusion of stages 03-04. Simulated: these
# numbers test the pipeline, not the real world.

# %% tags=["parameters"]
world_size: str = "demo"       # demo (24 classes, 24k LAION rows) | tiny (6 classes, 1.5k rows)
seed: int = 0                  # the world's seed: same seed, byte-identical files
train_models: bool = True      # also train the demo image tower and classifiers
profile: str = "demo"          # profile name (folder names and figure titles)
out_dir: str = ""              # stage folder (empty: runs/<profile>/00_demo_world)
figures_dir: str = ""          # figure folder (empty: figures/<profile>)

# %%
from laionet.demo import build_world, checks, plots
from laionet.pipeline.stage import open_stage

S = open_stage("00_demo_world", globals())
with S.timings("world"):
    world = build_world(S.out / "world", size=world_size, seed=seed, train_models=train_models)
print(f"world ready in {S.timings['world']:.1f} s:", world.info()["counts"])
classes, laion = world.truth_table("classes"), world.truth_table("laion")
names = checks.class_names(world)
print(f"{int(laion['text_in_image'].notna().sum())} of {len(laion)} LAION images show a class "
      f"name as text ({int(laion['text_is_head'].sum())} of them the head name)")
classes[["wnid", "cid", "head", "lemmas", "class_freq"]]

# %% [markdown]
# ## Sample images per class at several typicalities
# Columns: LAION-mini class images at typicality quantiles 0.95 … 0.05 (left = most typical):
# the same class drifts from its prototype as the nuisance grows.

# %%
S.figure(plots.samples_by_typicality(world), "00_demo_samples_by_typicality",
         title="Demo world: class images by typicality")

# %% [markdown]
# ## Captions by kind; class frequencies (long-tailed)
# Three captions of each kind, and what the image really shows: only "unique" and "nested"
# captions name the class of their image; the others are what a text filter must reject.

# %%
S.figure(plots.class_frequencies(laion, names), "00_demo_class_frequencies",
         title="Demo world: class frequencies and caption kinds")
sample = checks.caption_samples(laion, names, seed=seed)
S.table(sample, "00_demo_caption_samples")
sample

# %% [markdown]
# ## Verify the causal structure
# 1. Image-based selection (ImageNet-mini) keeps more typical images than text-based selection
#    (LAION images whose caption names their class).

# %%
sets = checks.comparison_sets(world)
typ, gap = checks.typicality_summary(sets)
print(typ, f"typicality gap ImageNet-mini train - LAION text-selected = {gap:+.3f} "
      f"(must be > {checks.MIN_TYPICALITY_GAP})", sep="\n")
assert checks.typicality_raised(gap), "image-based selection should raise typicality"
S.figure(plots.typicality_histogram(sets), "00_demo_typicality",
         title="Typicality: text- vs image-selected")

# %% [markdown]
# 2. Higher intra-class similarity in ImageNet-mini than in text-selected LAION images of the
#    same classes (mean pairwise cosine per class; pixel vectors, and the demo tower when trained).

# %%
summary = checks.intra_class_summary(*checks.set_embeddings(world, sets), seed=seed)
S.table(summary.reset_index(), "00_demo_intra_class_similarity")
assert checks.imagenet_more_similar(summary), "ImageNet-mini should be more similar within classes"
summary

# %% [markdown]
# 3. Classifiers trained on ImageNet-mini (each well above chance on its own val set) lose
#    accuracy on all readable LAION images of the classes.

# %%
acc, table = checks.accuracy_table(world, sets)
S.table(table.reset_index(), "00_demo_classifier_accuracy")
verdict, why = checks.classifiers_lose_accuracy(table, n_classes=len(classes))
print(table, why, sep="\n")
assert verdict or not train_models, why
acc
