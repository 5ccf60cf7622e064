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
# # 02 · Caption filtering: from lemma matches to LAIONet
#
# Paper §2, criterion 2 and Appendices A/B (paper_spec A4-A6, A8, A9). A row of LAION matched by
# stage 01 enters LAIONet when
# 1. its caption matched lemmas of exactly **one** class (multi-label rows get no similarity),
# 2. its `NSFW` tag is exactly `"UNLIKELY"`,
# 3. the cosine similarity between its caption and its class's synset text
#    ("`<head> which is <definition>`") is **strictly above** the threshold.
#
# The paper uses CLIP ViT-B/32's text tower (threshold 0.82) and, in Appendix A, all-mpnet-base-v2
# (0.58). The demo world uses the shipped all-MiniLM-L6-v2, whose similarities live on another
# scale; its threshold is calibrated below with the same plots. Caption embeddings are cached on
# disk per encoder, so a threshold sweep (`./run_all.sh sweep 02 threshold 0.4 0.5 0.6`) costs
# seconds per value.

# %% tags=["parameters"]
profile: str = "demo"           # profile name or YAML path (figure titles, default folders)
out_dir: str = ""               # empty: runs/<profile>/02_caption_filtering/
figures_dir: str = ""           # empty: figures/<profile>/
matches_dir: str = ""           # stage 01 output folder; empty: runs/<profile>/01_synset_matching/
laion_parts: str = ""           # glob of LAION parquet parts (same as stage 01)
classes: str = "imagenet1k"     # class list: imagenet1k or a file of wnids (same as stage 01)
text_encoder: str = "minilm"    # minilm | sentence-transformers:<name|path> | open_clip:<arch>:<tag|file>
threshold: float = 0.6          # keep similarity > threshold (paper: 0.82 CLIP B/32, 0.58 mpnet; MiniLM demo: 0.6, calibrated below)
query: str = "name_def"         # synset text form: name_def (paper) | name | lemmas_or | a_photo_of_name_def ...
nsfw_rule: str = "paper"        # paper (NSFW exactly UNLIKELY) | unlikely_or_unsure | ignore (LAIONet v1)
top_k: int = 50                 # Appendix B skim: the top_k most similar rows per class
batch_size: int = 64            # text-embedding batch size (the authors 64)
example_wnid: str = "n02125311"  # class for the per-lemma histograms (cougar: puma, painter, ...)
device: str = "auto"            # auto | cpu | cuda
precision: str = "fp32"         # fp32 | fp16 | bf16 (CUDA only; open_clip towers)

# %%
import json

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from laionet import classes as lc
from laionet import figures, paths, selection, stage
from laionet.encoders import EmbeddingCache, load_text_encoder
from laionet.io import write_json, write_parquet

STAGE = "02_caption_filtering"
P = paths.stage_paths(STAGE, profile, out_dir, figures_dir)
matches = paths.resolve(matches_dir) if matches_dir else paths.stage_output("01_synset_matching", profile)
cache_root = paths.project_root() / "runs" / P.profile / "cache" / "text_embeddings"
figures.style()
params = dict(matches_dir=str(matches), laion_parts=laion_parts, classes=classes,
              text_encoder=text_encoder, threshold=threshold, query=query, nsfw_rule=nsfw_rule,
              top_k=top_k)
inputs = sorted(matches.glob("*/part-*.parquet")) + sorted(selection.part_files(laion_parts).values())
print(f"stage 02 -> {P.out}\nmatches: {matches}\n{len(inputs)} input files, encoder {text_encoder}")

# %% [markdown]
# ## Candidates and their similarity
# Single-label matched rows joined to their LAION columns by (part, row); captions embedded
# through the cache (only rows not cached yet are embedded), each synset text once.

# %%
timings = stage.Timings()
cand_path = P.out / "candidates.parquet"
# candidates depend on everything except the threshold-like parameters: reuse them across a sweep
cand_params = {k: params[k] for k in ("matches_dir", "laion_parts", "classes", "text_encoder", "query")}
cand_dir = P.out / "_candidates"
class_tab = lc.class_table(classes)
if stage.is_current(cand_dir, cand_params, inputs) and cand_path.is_file():
    candidates = pd.read_parquet(cand_path)
    counts = json.loads((cand_dir / "counts.json").read_text())
    print(f"candidates up to date: {len(candidates):,} rows")
else:
    with timings("load"):
        candidates, counts = selection.load_candidates(matches, laion_parts)
        texts = selection.synset_texts(class_tab, query)
    with timings("embed"):
        encoder = load_text_encoder(text_encoder, device=device, precision=precision)
        cache = EmbeddingCache(cache_root, encoder.name)
        candidates = selection.add_similarity(candidates, texts, encoder, cache,
                                              batch_size=batch_size, progress=True)
    candidates["lemmas"] = candidates["lemmas"].map(list)
    write_parquet(candidates, cand_path)
    write_json(counts, cand_dir / "counts.json")
    stage.write_manifest(cand_dir, STAGE + "/candidates", cand_params, inputs,
                         outputs=["counts.json"], timings=dict(timings))
print(counts, dict(timings))
candidates.head()

# %% [markdown]
# ## LAIONet and the top-k skim

# %%
laionet = selection.select_laionet(candidates, threshold, nsfw_rule=nsfw_rule)
skim = selection.skim_top_k(laionet, k=top_k)
write_parquet(laionet, P.out / "laionet.parquet")
write_parquet(skim, P.out / f"laionet_top{top_k}.parquet")
n_matched = int(candidates["wnid"].nunique())
summ = selection.summary(candidates, laionet, counts, threshold, n_matched)
summ.update(encoder=text_encoder, nsfw_rule=nsfw_rule, query=query, n_top_k=len(skim),
            n_classes_full_top_k=int((skim["wnid"].value_counts() == top_k).sum()),
            n_classes_in_list=len(class_tab))
write_json(summ, P.out / "summary.json")
figures.save_table(pd.DataFrame([summ]).T.reset_index().set_axis(["quantity", "value"], axis=1)
                   .astype(str), "02_summary", P.figures)
pd.Series(summ)

# %% [markdown]
# ## B1 · Similarity distribution and the threshold
# Histogram over single-label rows that pass the NSFW rule, with the threshold; classes with at
# least one row and dataset size against the threshold (computed exactly: sort once, search).

# %%
ok = candidates[selection.nsfw_mask(candidates["NSFW"], nsfw_rule)]
grid = np.linspace(float(np.nanmin(ok["similarity"])), float(np.nanmax(ok["similarity"])), 60)
curves = selection.threshold_curves(candidates, grid, nsfw_rule=nsfw_rule)
fig, ax = plt.subplots(1, 3, figsize=(11, 3))
ax[0].hist(ok["similarity"].dropna(), bins=60, color="tab:blue")
ax[0].axvline(threshold, c="k", ls="--", label=f"threshold {threshold}")
ax[0].set(xlabel="text-to-synset similarity", ylabel="rows")
ax[0].legend()
ax[1].plot(curves["threshold"], curves["n_classes"])
ax[1].axvline(threshold, c="k", ls="--")
ax[1].set(xlabel="threshold", ylabel="classes with >= 1 row")
ax[2].plot(curves["threshold"], curves["n_rows"])
ax[2].axvline(threshold, c="k", ls="--")
ax[2].set(xlabel="threshold", ylabel="dataset size", yscale="log")
figures.save_figure(fig, "02_B1_similarity_threshold", P.figures, P.profile,
                    title=f"Text-to-synset similarity ({text_encoder})")
figures.save_table(curves, "02_threshold_curves", P.figures)
# The paper's 0.82 keeps 915 of the 978 matched classes (93.6 %) and ~6.6 % of the single-label
# SFW rows. Same rule on this encoder: the highest threshold still keeping that share of classes.
PAPER_CLASS_SHARE = 915 / 978
fine = np.linspace(grid[0], grid[-1], 400)
fine_curves = selection.threshold_curves(candidates, fine, nsfw_rule=nsfw_rule)
keeps = fine_curves[fine_curves["n_classes"] >= PAPER_CLASS_SHARE * n_matched]
if len(keeps):
    t_rule = keeps["threshold"].max()
    print(f"highest threshold keeping >= {PAPER_CLASS_SHARE:.1%} of the {n_matched} matched classes: "
          f"{t_rule:.3f} ({int(keeps['n_rows'].iloc[-1]):,} rows, "
          f"{keeps['n_rows'].iloc[-1] / max(len(ok), 1):.1%} of single-label SFW rows); "
          f"this run uses {threshold}")

# %% [markdown]
# ### Calibrating the MiniLM threshold (demo world only)
# The paper's 0.82 for CLIP sits where the class curve is still flat and the size curve has
# dropped to the clearly on-topic captions. For MiniLM we use the same two plots, plus what only
# the demo world can tell: its hidden truth says which rows really show their class, so precision
# (share of LAIONet rows whose image shows the matched class) can be read against the threshold.
# The truth is read **only here**, for the justification; the selection never sees it.
#
# On the demo world (seed 0) both rules agree on **0.6**: it is the highest threshold that keeps
# the paper's share of classes (20 of 21 matched, vs 915 of 978), and the truth gives a precision
# of about 0.94 there (0.89 at 0.5; >= 0.95 only from ~0.65, where 3 classes are lost).

# %%
world_truth = None
if laion_parts:
    truth_dir = selection.part_files(laion_parts)
    truth_dir = next(iter(truth_dir.values())).parent.parent / "truth"
    if (truth_dir / "laion.parquet").is_file() and (truth_dir / "classes.parquet").is_file():
        tl = pd.read_parquet(truth_dir / "laion.parquet", columns=["key", "label", "kind"])
        tc = pd.read_parquet(truth_dir / "classes.parquet", columns=["wnid", "label"])
        world_truth = tl.merge(tc.rename(columns={"wnid": "true_wnid"}), on="label", how="left")
if world_truth is not None:
    t = ok.merge(world_truth, on="key", how="left")
    t["correct"] = t["true_wnid"].eq(t["wnid"])
    s = np.sort(t["similarity"].to_numpy())
    order = np.argsort(t["similarity"].to_numpy())
    correct_sorted = t["correct"].to_numpy()[order]
    # precision of rows above each threshold = correct rows above / rows above (suffix sums)
    suffix_correct = np.cumsum(correct_sorted[::-1])[::-1]
    pos = np.searchsorted(s, grid, "right")
    n_above = len(s) - pos
    prec = np.where(n_above > 0, suffix_correct[np.minimum(pos, len(s) - 1)] / np.maximum(n_above, 1), np.nan)
    recall = np.where(n_above > 0, suffix_correct[np.minimum(pos, len(s) - 1)], 0) / max(t["correct"].sum(), 1)
    calib = pd.DataFrame({"threshold": grid, "precision": prec, "recall_of_true_rows": recall,
                          "n_rows": n_above})
    fig, ax = plt.subplots(figsize=(5, 3))
    ax.plot(grid, prec, label="precision (truth)")
    ax.plot(grid, recall, label="recall of true rows")
    ax.axvline(threshold, c="k", ls="--", label=f"threshold {threshold}")
    ax.set(xlabel="threshold", ylabel="share")
    ax.legend()
    figures.save_figure(fig, "02_threshold_calibration_truth", P.figures, P.profile,
                        title="MiniLM threshold vs demo truth")
    figures.save_table(calib, "02_threshold_calibration_truth", P.figures)
    by_kind = t.assign(kept=selection.above(t["similarity"], threshold)).groupby("kind")["kept"].agg(["mean", "size"])
    display(by_kind.rename(columns={"mean": "share kept", "size": "rows"}))
    print(f"at threshold {threshold}: precision {np.interp(threshold, grid, prec):.3f}, "
          f"recall {np.interp(threshold, grid, recall):.3f}")
    # the calibration rule: the smallest threshold whose kept rows are >= 95 % truly on-class
    good = calib[(calib["precision"] >= 0.95) & (calib["n_rows"] > 0)]
    if len(good):
        print(f"smallest threshold with precision >= 0.95: {good['threshold'].iloc[0]:.3f} "
              f"({int(good['n_rows'].iloc[0]):,} rows, "
              f"{good['n_rows'].iloc[0] / max(len(ok), 1):.1%} of single-label SFW rows)")
else:
    print("no demo-world truth next to the LAION parts: calibration plot skipped (real data)")

# %% [markdown]
# ## B2 · Per-lemma similarity of one multi-lemma class
# A row is counted under every lemma it matched. "mountain lion" contains "lion", so its rows
# are multi-label and dropped (0 rows, as in the paper); "painter" is mostly the artist.

# %%
lemmas_of = class_tab.set_index("wnid")["lemmas"]
if example_wnid in set(candidates["wnid"]):
    long, per_lemma = selection.lemma_similarities(candidates, example_wnid, lemmas_of.get(example_wnid, []))
    shown = [lem for lem in per_lemma.index if per_lemma[lem] > 0]
    fig, axes = plt.subplots(1, max(len(shown), 1), figsize=(2.6 * max(len(shown), 1), 2.6),
                             sharex=True, squeeze=False)
    bins = np.linspace(np.nanmin(long["similarity"]), np.nanmax(long["similarity"]), 25)
    for a, lem in zip(axes[0], shown):
        a.hist(long.loc[long["lemma"] == lem, "similarity"], bins=bins, color="tab:blue")
        a.axvline(threshold, c="k", ls="--")
        a.set(title=f"{lem} ({per_lemma[lem]})", xlabel="similarity")
    figures.save_figure(fig, "02_B2_lemma_histograms", P.figures, P.profile,
                        title=f"Per-lemma similarity, {example_wnid}")
    figures.save_table(per_lemma.rename_axis("lemma").reset_index(), "02_B2_lemma_counts", P.figures)
    display(per_lemma)
else:
    print(f"{example_wnid} has no single-label candidates in this run; B2 skipped")

# %% [markdown]
# ## B3 · Relative frequency of LAIONet classes (log scale)

# %%
freq = selection.class_frequency(laionet)
fig, ax = plt.subplots(figsize=(6, 3))
ax.plot(np.arange(1, len(freq) + 1), freq["rel_freq"], ".-")
ax.set(xlabel="class rank", ylabel="relative frequency", yscale="log")
figures.save_figure(fig, "02_B3_relative_class_frequency", P.figures, P.profile,
                    title=f"LAIONet class frequency (n = {len(laionet):,})")
figures.save_table(freq, "02_B3_relative_class_frequency", P.figures)
print(f"LAIONet: {len(laionet):,} rows, {laionet['wnid'].nunique()} of {n_matched} matched classes; "
      f"top-{top_k}: {len(skim):,} rows")

# %%
stage.write_manifest(P.out, STAGE, params, inputs,
                     outputs=["candidates.parquet", "laionet.parquet", f"laionet_top{top_k}.parquet",
                              "summary.json"], timings=dict(timings))
