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
# # 08 · Text alone cannot explain why an image is in ImageNet (§4.3)
#
# ImageNet-Captions gives the original Flickr text (title, tags, description) of ImageNet train
# images. If ImageNet had been selected by its text, its captions would be as similar to their
# synset texts as LAIONet's are (B16), and each caption would rank its own class first. Most
# captions do rank their class near the top (B17: the proportion of false classes more similar
# than the true one is small), yet many are barely similar to it at all: the text is not what
# put the image in ImageNet. Spec: paper_spec A18, C.6, E.17.

# %% tags=["parameters"]
profile: str = "demo"            # profile name or YAML path (folders and figure titles)
out_dir: str = ""                # empty -> runs/<profile>/08_text_alone/
figures_dir: str = ""            # empty -> figures/<profile>/
world_dir: str = ""              # demo world folder (fills the captions default)
captions_json: str = ""          # imagenet_captions.json (empty -> <world_dir>/imagenet_captions/...)
laionet_path: str = ""           # stage 02 laionet.parquet (empty -> runs/<profile>/02_caption_filtering/)
classes: str = "imagenet1k"      # the comparison set of classes: imagenet1k or a file of wnids
exclude_wnids: list = []         # classes left out of the comparison set (paper: [n03126707])
paper_denominator: bool = False  # True: the authors denominator (all classes incl. the true one)
                                 # and p: 0 for captions of excluded classes (E.17)
text_encoder: str = "open_clip:ViT-B-32:openai"  # the papers CLIP ViT-B/32 text tower
query: str = "name_def"          # synset text form
bins: int = 50                   # own-similarity bins of B17 (c) (the authors 50)
p_at: float = 0.05               # the CDF guide line: share of captions with p <  p_at
block_size: int = 8192           # captions per similarity block
batch_size: int = 64             # text-embedding batch size

# %%
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from laionet import text_alone as ta
from laionet.classes import class_table
from laionet.datasets import read_imagenet_captions
from laionet.encoders import EmbeddingCache
from laionet.encoders.cache import embed_with_cache
from laionet.encoders.text import load_text_encoder
from laionet.figures import DATASET_COLORS, save_figure, save_table, style
from laionet.io import write_json, write_parquet
from laionet.paths import resolve, stage_output, stage_paths
from laionet.selection import synset_texts
from laionet.stage import Timings, write_manifest

STAGE = "08_text_alone"
paths = stage_paths(STAGE, profile, out_dir, figures_dir)
style()
timings = Timings()
world = resolve(world_dir) if world_dir else None
cap_path = (resolve(captions_json) if captions_json
            else world / "imagenet_captions" / "imagenet_captions.json")
laionet_file = (resolve(laionet_path) if laionet_path
                else stage_output("02_caption_filtering", profile) / "laionet.parquet")
class_file = classes if classes == "imagenet1k" else str(resolve(classes))
print("captions:", cap_path, "| LAIONet:", laionet_file, "| classes:", class_file)

# %% [markdown]
# ## Captions and the class texts
# Caption = `' '.join([title] + tags + [description])`, one row per file name (A18).

# %%
caps = read_imagenet_captions(cap_path)
table = class_table(class_file)
texts = synset_texts(table, query)
excluded = texts.index.isin(list(exclude_wnids))
true_index = texts.index.get_indexer(caps["wnid"])      # -1: class not in the comparison set
print(f"{len(caps):,} captions ({caps.attrs.get('n_duplicates_dropped', 0)} duplicate file names "
      f"dropped), {caps['wnid'].nunique()} classes; comparison set {len(texts)} classes, "
      f"{int(excluded.sum())} excluded; {int((true_index < 0).sum())} captions of classes outside it")

# %% [markdown]
# ## Similarities, one block of captions at a time (no captions x classes table is kept)

# %%
with timings("embed"):
    enc = load_text_encoder(text_encoder)
    class_emb = enc.embed_texts(texts.tolist(), batch_size=batch_size)
    cache = EmbeddingCache(stage_output("cache", profile) / "text_embeddings_imagenet_captions",
                           enc.name)
    cap_emb = embed_with_cache(enc, ta.caption_ids(caps["image_key"]),
                               caps["text"].to_numpy(object), cache, batch_size=batch_size)
with timings("false_class_proportion"):
    res = ta.false_class_proportion_from_embeddings(cap_emb, class_emb, true_index, excluded,
                                                    paper=paper_denominator, block_size=block_size)
res.insert(0, "image_key", caps["image_key"].to_numpy())
res.insert(1, "wnid", caps["wnid"].to_numpy())
write_parquet(res, paths.out / "false_class_proportion.parquet")
rep = ta.report(res)
share = float(ta.cdf(res["p"].to_numpy(), [p_at])[0])
print(rep)
print(f"share of captions with p <= {p_at}: {share:.3f} (paper, CLIP on 443,798 captions: "
      f"{ta.PAPER_SHARE_AT})")

# %% [markdown]
# ## B16 · Caption-to-synset similarity: ImageNet-Captions vs LAIONet
# LAIONet's similarity is truncated at its threshold by construction; ImageNet's captions spread
# far below it. Both come from the same encoder here (the authors' stored figure mixed MPNet
# and CLIP, E.18): LAIONet's similarity is recomputed with this notebook's encoder.

# %%
lai = pd.read_parquet(laionet_file, columns=["key", "wnid", "TEXT"])
lai_cache = EmbeddingCache(stage_output("cache", profile) / "text_embeddings", enc.name)
lai_emb = embed_with_cache(enc, lai["key"].to_numpy(np.int64), lai["TEXT"].to_numpy(object),
                           lai_cache, batch_size=batch_size)
lai_idx = texts.index.get_indexer(lai["wnid"])
if (lai_idx < 0).any():
    raise KeyError(f"{laionet_file}: wnids {sorted(set(lai['wnid'][lai_idx < 0]))[:5]} are not in "
                   f"the class list {class_file!r}; use stage 02's class list here")
lai_sim = np.einsum("ij,ij->i", lai_emb, class_emb[lai_idx])
fig, ax = plt.subplots(figsize=(3.4, 2.5))
ax.hist(lai_sim, bins=20, density=True, alpha=0.4, color=DATASET_COLORS["LAIONet"], label="LAIONet")
ax.hist(res["own_similarity"].dropna(), bins=50, density=True, alpha=0.4,
        color=DATASET_COLORS["ImageNet"], label="ImageNet-Captions")
ax.set(xlim=(min(0, float(res["own_similarity"].min())), 1),
       xlabel="text-to-synset similarity", ylabel="pdf")
ax.legend()
_ = save_figure(fig, "08_B16_text_to_synset_similarity", paths.figures, profile,
            title="Caption-to-synset similarity")

# %% [markdown]
# ## B17 · Proportion of false classes more similar to the caption than its own class

# %%
grid = np.linspace(0, 1, 1001)
cdf = ta.cdf(res["p"].to_numpy(), grid)
binned = ta.binned_proportion(res["own_similarity"].to_numpy(), res["p"].to_numpy(), bins=bins)
save_table(binned, "08_B17_false_class_proportion_binned", paths.figures)
fig, axes = plt.subplots(1, 2, figsize=(6.8, 2.6))
axes[0].step(grid, cdf, where="post", color="black")
axes[0].axvline(p_at, color="gray", ls="--")
axes[0].axhline(share, color="gray", ls="--")
axes[0].set(xlim=(-0.01, 0.4), ylim=(max(0.0, min(0.7, float(cdf[0]) - 0.05)), 1.0),
            xlabel="proportion of false classes more similar", ylabel="CDF",
            title=f"{share:.1%} of captions at p <= {p_at}")
ok = binned["n"] > 0
b = binned[ok]
axes[1].plot(b["center"], b["mean_p"], color="black")
axes[1].fill_between(b["center"], b["mean_p"] - b["half_width"], b["mean_p"] + b["half_width"],
                     color="black", alpha=0.2)
ax2 = axes[1].twinx()
ax2.plot(b["center"], b["n"] / b["n"].sum(), color="tab:red", lw=0.8)
ax2.set(ylabel="share of captions", yticks=[])
axes[1].set(xlabel="caption-to-own-synset similarity", ylabel="mean proportion +- 95% CI")
_ = save_figure(fig, "08_B17_false_class_proportion", paths.figures, profile,
            title="Text alone does not single out the class")

# %%
params = {k: globals()[k] for k in ("world_dir", "captions_json", "laionet_path", "classes",
                                    "exclude_wnids", "paper_denominator", "text_encoder", "query",
                                    "bins", "p_at")}
write_json({**rep, "share_p_at_most": share, "p_at": p_at,
            "mean_own_similarity_imagenet_captions": float(res["own_similarity"].mean()),
            "mean_similarity_laionet": float(lai_sim.mean())}, paths.out / "summary.json")
write_manifest(paths.out, STAGE, params, inputs=[cap_path, laionet_file],
               outputs=["false_class_proportion.parquet", "summary.json"], timings=dict(timings))
