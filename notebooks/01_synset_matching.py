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
# # 01 · Synset matching: which LAION captions name an ImageNet class
#
# Paper §2, criterion 1 (paper_spec A1-A3). Every caption of every LAION part is searched for the
# lemmas of the ImageNet classes. By default this is the authors' exact rule: a lemma is kept when
# it is unique among ImageNet's lemma strings; a caption matches it when, after every ASCII
# punctuation character became a space, " lemma " is a case-sensitive substring of " caption ".
# `mode="normalized"` matches both sides after NFKC, case folding and punctuation/whitespace
# normalization instead (the fix of paper_spec E.1). A caption is recorded under every lemma it
# contains, so nested lemmas ("lion" in "sea lion") give multi-label rows, which stage 02 drops.
#
# Outputs (runs/<profile>/01_synset_matching/): `matches/part-%05d.parquet` (part, row, key, lemma,
# wnid), `rows/part-%05d.parquet` (part, row, key, wnids, n_classes, multi_label),
# `class_counts.parquet`, `lemma_counts.parquet`, `summary.json`.

# %% tags=["parameters"]
profile: str = "demo"             # profile name or YAML path (figure titles, default folders)
out_dir: str = ""                 # empty: runs/<profile>/01_synset_matching/
figures_dir: str = ""             # empty: figures/<profile>/
laion_parts: str = "runs/demo/00_demo_world/world/laion/*.parquet"  # glob of LAION parquet parts (relative: project root)
classes: str = "imagenet1k"       # imagenet1k, or a text file with one wnid per line
lemma_rule: str = "unique_in_imagenet"  # unique_in_imagenet (paper) | unique_in_wordnet (needs WordNet 3.0)
mode: str = "paper"               # paper (authors' exact matching) | normalized (NFKC + casefold + punctuation)
authors_class_list: bool = False  # True: the authors' 999 classes (crane machine dropped, husky as n02112837)
n_workers: int = 2                # processes matching parts in parallel (1: in this kernel)
batch_size: int = 65536           # captions read and matched at a time (bounds memory per worker)

# %%
import functools
import glob

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from laionet import classes as lc
from laionet import figures, paths, shards, stage
from laionet.io import read_json

STAGE = "01_synset_matching"
P = paths.stage_paths(STAGE, profile, out_dir, figures_dir)
figures.style()
parts = sorted(glob.glob(str(paths.resolve(laion_parts))))
if not parts:
    raise FileNotFoundError(f"laion_parts={laion_parts!r} matches no file (resolved against "
                            f"{paths.project_root()}); point it at LAION parquet parts")
params = {"laion_parts": laion_parts, "classes": classes, "lemma_rule": lemma_rule, "mode": mode,
          "authors_class_list": authors_class_list}
print(f"stage 01 -> {P.out}\n{len(parts)} part(s), e.g. {parts[0]}\nparameters: {params}")

# %% [markdown]
# ## Classes and lemmas

# %%
table = lc.class_table(classes, authors_class_list=authors_class_list)
pairs = lc.lemma_map(table, lemma_rule)
print(f"{len(table)} classes, {len(pairs)} lemmas for {len({w for _, w in pairs})} classes "
      f"(rule {lemma_rule}); synset text example:\n  {table['name_def'].iloc[0]}")
table.head()

# %% [markdown]
# ## Matching, part by part
# One task per part (resumable: a finished part with the same parameters is skipped).

# %%
timings = stage.Timings()
outputs = ["class_counts.parquet", "lemma_counts.parquet", "summary.json"]
if stage.is_current(P.out, params, parts):
    print("up to date: reusing", P.out)
else:
    task = functools.partial(shards.match_part, lemma_pairs=pairs, mode=mode, out_dir=str(P.out),
                             batch_size=batch_size)
    with timings("match"):
        result = shards.map_parts(task, parts, P.out, n_workers=n_workers, desc="matching parts",
                                  fingerprint=stage.fingerprint(params))
    print(f"matched {len(result.done)} part(s), resumed {len(result.skipped)}")
    with timings("summarize"):
        shards.summarize_matches(P.out, table, pairs, mode=mode)
    stage.write_manifest(P.out, STAGE, params, inputs=parts, outputs=outputs, timings=timings)
class_counts = pd.read_parquet(P.out / "class_counts.parquet")
lemma_counts = pd.read_parquet(P.out / "lemma_counts.parquet")
summary = read_json(P.out / "summary.json")
{k: v for k, v in summary.items() if k != "unreachable"}

# %% [markdown]
# ## Class coverage: matched classes, and why the others are unreachable

# %%
order = ["matched", "never matched", f"all lemmas have punctuation ({mode} mode)",
         "all lemmas empty after normalization", "no unique lemma"]
status = class_counts["status"].value_counts().reindex(order).dropna().astype(int)
fig, ax = plt.subplots(figsize=(6.5, 2.6))
ax.barh(status.index[::-1], status.values[::-1],
        color=["tab:blue" if s == "matched" else "tab:gray" for s in status.index[::-1]])
for i, v in enumerate(status.values[::-1]):
    ax.text(v, i, f" {v}", va="center")
ax.set_xlabel("classes")
figures.save_figure(fig, "01_class_coverage", P.figures, P.profile,
                    title=f"Class coverage: {summary['n_matched_classes']} of {len(table)} classes "
                          f"matched ({mode} mode, {lemma_rule})")
unreachable = class_counts[class_counts["status"] != "matched"][["wnid", "head", "status", "n_lemmas"]]
figures.save_table(unreachable.sort_values(["status", "wnid"]), "01_unreachable_classes", P.figures)
unreachable.groupby("status").head(5)

# %% [markdown]
# ## Matches per class (log scale)
# All matching captions and the single-label ones (those stage 02 can keep).

# %%
cc = class_counts.sort_values("n_rows", ascending=False).reset_index(drop=True)
fig, ax = plt.subplots(figsize=(6.5, 3.2))
ax.plot(np.arange(1, len(cc) + 1), cc["n_rows"].clip(lower=0.8), label="all matching captions")
ax.plot(np.arange(1, len(cc) + 1), cc["n_single_label"].clip(lower=0.8), label="single-label captions")
ax.set_yscale("log")
ax.set_xlabel("class rank")
ax.set_ylabel("captions")
ax.legend()
figures.save_figure(fig, "01_matches_per_class", P.figures, P.profile,
                    title="Matching captions per class")
cc.head(10)

# %% [markdown]
# ## Lemma-level counts
# The most frequent lemmas, and how many of each class's lemmas ever match.

# %%
top = lemma_counts.sort_values("n_rows", ascending=False).head(25)
fig, axes = plt.subplots(1, 2, figsize=(9, 4.2))
axes[0].barh(top["lemma"][::-1], top["n_rows"][::-1].clip(lower=0.8))
axes[0].set_xscale("log")
axes[0].set_xlabel("captions containing the lemma")
matched_lemmas = lemma_counts.assign(hit=lemma_counts["n_rows"] > 0).groupby("wnid")["hit"].sum()
axes[1].hist(matched_lemmas, bins=np.arange(matched_lemmas.max() + 2) - 0.5)
axes[1].set_xlabel("lemmas of a class that match at least once")
axes[1].set_ylabel("classes")
figures.save_figure(fig, "01_lemma_counts", P.figures, P.profile,
                    title=f"Lemma counts ({summary['n_lemmas_matched']} of {summary['n_lemmas']} "
                          f"lemmas match; {summary['n_unmatchable_lemmas']} can never match)")
figures.save_table(lemma_counts.sort_values("n_rows", ascending=False), "01_lemma_counts", P.figures)

# %% [markdown]
# ## Multi-label share
# A caption matching lemmas of several classes is multi-label; nested lemmas ("lion" / "sea lion")
# make some classes lose most of their captions here.

# %%
rows = pd.concat([pd.read_parquet(f, columns=["n_classes"])
                  for f in sorted((P.out / "rows").glob("part-*.parquet"))] or
                 [pd.DataFrame({"n_classes": pd.Series([], dtype="int16")})])
fig, axes = plt.subplots(1, 2, figsize=(8, 3))
share = summary["multi_label_share"]
axes[0].bar(["single-label", "multi-label"], [1 - share, share], color=["tab:blue", "tab:orange"])
axes[0].set_ylabel("share of matching captions")
counts = rows["n_classes"].value_counts().sort_index()
axes[1].bar(counts.index.astype(str), counts.values)
axes[1].set_yscale("log")
axes[1].set_xlabel("classes matched by one caption")
axes[1].set_ylabel("captions")
figures.save_figure(fig, "01_multi_label", P.figures, P.profile,
                    title=f"Multi-label share: {share:.1%} of {summary['n_matched_rows']:,} "
                          f"matching captions ({summary['n_rows']:,} captions, "
                          f"{summary['n_null_captions']} null)")
