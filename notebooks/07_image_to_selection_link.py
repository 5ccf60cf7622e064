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
# # 07 · Introducing an image-to-selection link makes LAIONet more like ImageNet (§4.2)
#
# LAION rows are kept when their caption is similar to the synset text (text similarity > t)
# **and** their image is similar to the same synset text (image similarity > i). Along the
# frontier of (t, i) pairs that keep the dataset size of the reference (0.82, 0.20 in the
# paper), lowering t and raising i swaps the text link for an image link. Datasets D, C, B, A
# go from the strongest to the weakest image link; the paper finds D *more* homogeneous than
# ImageNet and only A (close to text-only LAIONet) with about half its classes below ImageNet.
# Figures B14 (frontier) and B15 (a-d). Spec: paper_spec A17, C.5, E.10, E.13.

# %% tags=["parameters"]
profile: str = "demo"            # profile name or YAML path (folders and figure titles)
out_dir: str = ""                # empty -> runs/<profile>/07_image_to_selection_link/
figures_dir: str = ""            # empty -> figures/<profile>/
candidates_dir: str = ""         # stage 02 output (empty -> runs/<profile>/02_caption_filtering)
world_dir: str = ""              # demo world: its http/ is served on 127.0.0.1, empty: real URLs
imagenet_val_dir: str = ""       # ImageNet val images (empty -> <world_dir>/imagenet/val)
imagenet_devkit_dir: str = ""    # ILSVRC2012 devkit (empty -> <world_dir>/imagenet/devkit)
text_encoder: str = "open_clip:ViT-B-32:openai"   # synset-text tower (the paper: CLIP ViT-B/32)
image_encoder: str = "open_clip:ViT-B-32:openai"  # image tower in the same space (empty -> demo tower)
intra_encoders: list = []        # encoders for intra-class similarity, [] -> [image_encoder]
threshold_mode: str = "absolute" # absolute: t_ref/i_ref/t_min are similarities, quantile:
                                 # quantiles of the SFW candidates text (t) / image (i) similarity
t_ref: float = 0.82              # reference text threshold (LAIONets)
i_ref: float = 0.20              # reference image threshold
t_min: float = 0.72              # lowest text threshold of the frontier (also the download floor)
n_grid: int = 11                 # text thresholds: linspace(t_min, t_ref, n_grid)
picks: list = [0, 4, 7, 9]       # frontier positions of D, C, B, A (paper: 0.72/0.76/0.79/0.81)
inclusive: bool = False          # False: strict >, as the datasets were built. True: the notebook rule
nsfw_rule: str = "paper"         # NSFW rule of stage 02 (paper: only UNLIKELY)
n_per_class: int = 100           # images per class for intra-class similarity (A14)
coverage_thresholds: list = []   # extension: LAIONet at these text thresholds (no image bar),
                                 # class coverage vs intra-class similarity, [] -> the frontier grid
zero_shot_model: str = "zero-shot"  # extension: per-class zero-shot recall from stage 04 (its
                                 # model name there), empty -> skip
evaluation_dir: str = ""         # stage 04 output (empty -> runs/<profile>/04_evaluation)
seed: int = 0                    # sampling and resampling seed
download_processes: int = 2      # img2dataset processes
image_size: int = 256            # downloaded images: smaller side (as stage 03, so the shared
resize_only_if_bigger: bool = True  # embedding cache sees the same pixels for a row key)

# %%

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from laionet import frontier as fr
from laionet import similarity as sim
from laionet.classes import class_table
from laionet.datasets import iter_images, read_imagenet_val
from laionet.demo.checks import model_paths  # the demo world's checkpoints
from laionet.demo.world import WorldPaths
from laionet.download import download_laionet, iter_downloaded
from laionet.encoders.image import load_image_encoder
from laionet.encoders.text import load_text_encoder
from laionet.figures import save_figure, save_table, style
from laionet.io import write_json, write_parquet
from laionet.paths import resolve, stage_output, stage_paths
from laionet.selection import nsfw_mask, synset_texts
from laionet.stage import Timings, write_manifest

STAGE = "07_image_to_selection_link"
paths = stage_paths(STAGE, profile, out_dir, figures_dir)
style()
timings = Timings()
cand_dir = resolve(candidates_dir) if candidates_dir else stage_output("02_caption_filtering", profile)
world = resolve(world_dir) if world_dir else None
val_dir = resolve(imagenet_val_dir) if imagenet_val_dir else world / "imagenet" / "val"
devkit_dir = resolve(imagenet_devkit_dir) if imagenet_devkit_dir else world / "imagenet" / "devkit"
clip_spec = image_encoder or f"demo-tower:{model_paths(WorldPaths(world))['image_tower']}"
encoder_specs = list(intra_encoders) or [clip_spec]
image_cache = sim.image_cache_dir(profile)
print("candidates:", cand_dir, "| out:", paths.out, "| figures:", paths.figures)

# %% [markdown]
# ## Candidates: single-label, SFW rows with their caption-to-synset similarity (stage 02)

# %%
cand = pd.read_parquet(cand_dir / "candidates.parquet")
cand = cand[nsfw_mask(cand["NSFW"], nsfw_rule) & cand["similarity"].notna().to_numpy()]
if threshold_mode == "quantile":
    t_ref_v, t_min_v = (float(np.quantile(cand["similarity"], q)) for q in (t_ref, t_min))
elif threshold_mode == "absolute":
    t_ref_v, t_min_v = float(t_ref), float(t_min)
else:
    raise ValueError(f"threshold_mode must be 'absolute' or 'quantile', got {threshold_mode!r}")
# Step 1 of A17: the large subset, text similarity above the frontier's lowest threshold.
large = cand[fr.passes(cand["similarity"].to_numpy(), t_min_v, inclusive)].reset_index(drop=True)
print(f"{len(cand):,} SFW candidates; text thresholds t_min={t_min_v:.4f}, t_ref={t_ref_v:.4f}; "
      f"{len(large):,} rows with text above t_min in {large['wnid'].nunique()} classes")

# %% [markdown]
# ## Images of the large subset (img2dataset, once; reruns resume)

# %%
download_dir = paths.out / "download"
with timings("download"):
    manifest = download_laionet(large[["key", "wnid", "URL"]], download_dir,
                                serve_root=world / "http" if world else None,
                                processes_count=download_processes, image_size=image_size,
                                resize_only_if_bigger=resize_only_if_bigger)
ok_keys = manifest.loc[manifest["status"].eq("success"), "key"].to_numpy(np.int64)
print(f"downloaded {len(ok_keys):,} of {len(manifest):,} images; failures by kind:")
print(manifest.loc[~manifest["status"].eq("success"), "error_kind"].value_counts().to_string())

# %% [markdown]
# ## Image-to-synset-text similarity per row (row-wise cosine, no B x B logits: E.13)

# %%
classes = class_table(sorted(large["wnid"].unique()))
texts = synset_texts(classes)
with timings("image_to_synset"):
    tenc = load_text_encoder(text_encoder)
    class_emb = tenc.embed_texts(texts.tolist())
    clip = load_image_encoder(clip_spec)
    emb = sim.embed_dataset(clip, iter_downloaded(download_dir, ok_keys), image_cache, "laion",
                            keys=ok_keys)
rows = large.set_index("key").loc[ok_keys].reset_index()
rows["image_similarity"] = fr.image_to_synset_similarity(
    emb.emb, class_emb, texts.index.get_indexer(rows["wnid"]))
if threshold_mode == "quantile":  # i_ref: quantile of image similarity within the reference
    ref_rows = rows[fr.passes(rows["similarity"].to_numpy(), t_ref_v, True)]
    i_ref_v = float(np.quantile(ref_rows["image_similarity"], i_ref))
else:
    i_ref_v = float(i_ref)
write_parquet(rows[["key", "part", "row", "wnid", "similarity", "image_similarity"]],
              paths.out / "image_similarity.parquet")
print(rows[["similarity", "image_similarity"]].describe().round(3).to_string())

# %% [markdown]
# ## The frontiers (B14): fixed dataset size and fixed number of classes

# %%
grid = np.linspace(t_min_v, t_ref_v, n_grid)
n_ref = fr.reference_count(rows, t_ref_v, i_ref_v, inclusive)
n_cls_ref = fr.reference_count(rows, t_ref_v, i_ref_v, inclusive, unit="classes")
front = fr.frontier_fixed_size(rows, grid, n_ref, inclusive)
front_cls = fr.frontier_fixed_classes(rows, grid, n_cls_ref, inclusive)
print(f"reference (t={t_ref_v:.4f}, i={i_ref_v:.4f}, {'>=' if inclusive else '>'}): "
      f"{n_ref:,} rows, {n_cls_ref} classes")
write_parquet(pd.concat([front, front_cls]), paths.out / "frontier.parquet")
save_table(pd.concat([front, front_cls]), "07_B14_frontier", paths.figures)

fig, ax = plt.subplots(figsize=(3.4, 2.5))
ax.plot(front["text_threshold"], front["image_threshold"], "o-", ms=3, label="fixed #samples")
ax.plot(front_cls["text_threshold"], front_cls["image_threshold"], "s--", ms=3,
        label="fixed #classes")
ax.set(xlabel="text-to-synset similarity threshold", ylabel="image-to-synset threshold")
ax.legend()
_ = save_figure(fig, "07_B14_frontier_fixed_n_sample", paths.figures, profile,
            title="Multimodal threshold frontier")
front.round(4)

# %% [markdown]
# ## Datasets D, C, B, A (built with '>' on both similarities, A17 step 4)

# %%
datasets = fr.build_datasets(rows, front, picks=list(picks), inclusive=inclusive)
summary = fr.datasets_summary(datasets)
write_parquet(datasets[["dataset", "key", "wnid", "similarity", "image_similarity",
                        "text_threshold", "image_threshold"]].astype({"dataset": str}),
              paths.out / "datasets.parquet")
summary

# %% [markdown]
# ## Intra-class similarity vs ImageNet val, per encoder (B15)

# %%
val = read_imagenet_val(val_dir, devkit_dir)
per_class, pooled, shares = [], [], []
for spec in encoder_specs:
    enc = clip if spec == clip_spec else load_image_encoder(spec)
    with timings(f"intra_{enc.name}"):
        v = sim.embed_dataset(enc, iter_images(val), image_cache, "imagenet_val",
                              keys=val["image_key"].to_numpy())
        ref = v.by_class(val.set_index("image_key")["wnid"])
        by_ds = {}
        for name, d in datasets.groupby("dataset", observed=True):
            sample = sim.sample_per_class(d.rename(columns={"key": "image_key"}), n_per_class, seed)
            e = sim.embed_dataset(enc, iter_downloaded(download_dir, sample["image_key"]),
                                  image_cache, "laion", keys=sample["image_key"].to_numpy())
            by_ds[name] = e.by_class(sample.set_index("image_key")["wnid"])
    common = fr.common_classes(ref, *[{w for w, E in b.items() if len(E) >= 2}
                                      for b in by_ds.values()])
    ref_stats = sim.pairwise_stats({w: ref[w] for w in common}).set_index("wnid")["mean"]
    stats = pd.concat([sim.pairwise_stats({w: b[w] for w in common}).assign(dataset=n)
                       for n, b in by_ds.items()])
    share = fr.share_at_or_below(stats, ref_stats)
    for n, b in {**by_ds, "ImageNet": ref}.items():
        vals = sim.pooled_resample(b, 100, seed, classes=common)["similarity"]
        pooled.append({"encoder": enc.name, "dataset": n, "avg_similarity": float(vals.mean()),
                       "values": vals.to_numpy()})
    per_class.append(stats.assign(encoder=enc.name))
    shares.append(share.assign(encoder=enc.name, n_common=len(common)))
shares = pd.concat(shares, ignore_index=True)
avg = pd.DataFrame([{k: v for k, v in p.items() if k != "values"} for p in pooled])
write_parquet(pd.concat(per_class, ignore_index=True), paths.out / "intra_class_stats.parquet")
save_table(shares, "07_B15_share_at_or_below_imagenet", paths.figures)
save_table(avg, "07_B15_avg_intra_class_similarity", paths.figures)
print(shares.to_string(index=False))
print(avg.to_string(index=False))

# %%
enc0 = pooled[0]["encoder"]
vals0 = {p["dataset"]: p["values"] for p in pooled if p["encoder"] == enc0}
show = {k: vals0[k] for k in ("A", "B", "D") if k in vals0}
fig = sim.histogram_figure(show, colors={"A": "tab:blue", "B": "tab:green", "D": "tab:red"})
_ = save_figure(fig, "07_B15a_datasets_intra_class_histograms", paths.figures, profile,
            title=f"Intra-class similarity of A, B, D ({enc0})")

a0 = avg[avg["encoder"] == enc0]
fig, ax = plt.subplots(figsize=(3.4, 2.5))
lai = a0[a0["dataset"] != "ImageNet"]
ax.plot(lai["dataset"], lai["avg_similarity"], "o-", color="tab:blue", label="LAIONet variants")
ax.axhline(float(a0.loc[a0["dataset"] == "ImageNet", "avg_similarity"].iloc[0]), color="tab:red",
           ls="--", label="ImageNet avg. sim.")
ax.set(xlabel="dataset (stronger image link to the left)", ylabel="avg. intra-class similarity")
ax.legend()
_ = save_figure(fig, "07_B15b_datasets_avg_similarity", paths.figures, profile,
            title=f"Average intra-class similarity ({enc0})")

fig, axes = plt.subplots(1, 2, figsize=(6.8, 2.5), sharey=True)
s0 = shares[shares["encoder"] == enc0]
axes[0].plot(s0["dataset"].astype(str), s0["share_at_or_below"], "o-", color="tab:blue")
for enc_name, s in shares.groupby("encoder", sort=False):
    axes[1].plot(s["dataset"].astype(str), s["share_at_or_below"], "o-", label=enc_name)
for ax in axes:
    ax.axhline(0.5, color="gray", ls="--")
    ax.set(xlabel="dataset", ylim=(0, 1))
axes[0].set(ylabel="share of classes at or below ImageNet", title=enc0)
axes[1].set(title="all encoders")
axes[1].legend(fontsize=6)
_ = save_figure(fig, "07_B15cd_datasets_share_lower", paths.figures, profile,
            title="Classes with intra-class similarity at or below ImageNet")

# %% [markdown]
# ## Check: a stronger image threshold gives more homogeneous classes
# On the demo world the truth is known (ImageNet's annotators select typical images), so D
# (strongest image link) must have the highest average similarity and the smallest share of
# classes at or below ImageNet.

# %%
order = list(summary["dataset"])
trend = a0.set_index("dataset").loc[order, "avg_similarity"]
print("avg intra-class similarity D->A:", trend.round(4).to_dict())
print("share at or below ImageNet D->A:", s0.set_index("dataset").loc[order,
      "share_at_or_below"].round(3).to_dict())
print("image threshold D->A:", summary.set_index("dataset")["image_threshold"].round(4).to_dict())
homogeneity_decreases = bool(trend.iloc[0] > trend.iloc[-1])
print("stronger image threshold -> more homogeneous (D > A):", homogeneity_decreases)

# %% [markdown]
# ## B19 · Image-to-synset similarity: LAIONet vs ImageNet (A20)
# LAIONet = the rows above the reference text threshold (no image bar). If LAIONet images were
# less relevant to their synsets than ImageNet's, their lower intra-class similarity could be
# label noise; the paper finds them at least as relevant.

# %%
val_in = val[val["wnid"].isin(texts.index)].reset_index(drop=True)
v_clip = sim.embed_dataset(clip, iter_images(val_in), image_cache, "imagenet_val",
                           keys=val_in["image_key"].to_numpy())
val_in["image_similarity"] = fr.image_to_synset_similarity(
    v_clip.emb, class_emb, texts.index.get_indexer(val_in["wnid"]))
laionet_rows = rows[fr.passes(rows["similarity"].to_numpy(), t_ref_v, inclusive)]
m = pd.DataFrame({"LAIONet": laionet_rows.groupby("wnid")["image_similarity"].mean(),
                  "ImageNet": val_in.groupby("wnid")["image_similarity"].mean()}).dropna()
b19 = {"n_classes": len(m), "share_laionet_higher": float((m["LAIONet"] > m["ImageNet"]).mean()),
       "mean_laionet": float(laionet_rows["image_similarity"].mean()),
       "mean_imagenet": float(val_in["image_similarity"].mean())}
print(b19)
lo = min(laionet_rows["image_similarity"].min(), val_in["image_similarity"].min())
hi = max(laionet_rows["image_similarity"].max(), val_in["image_similarity"].max())
fig = sim.histogram_figure({"LAIONet": laionet_rows["image_similarity"].to_numpy(),
                            "ImageNet": val_in["image_similarity"].to_numpy()}, bins=60,
                           xlim=(float(lo), float(hi)), xlabel="image-to-synset-text similarity")
_ = save_figure(fig, "07_B19_image_to_synset_similarity", paths.figures, profile,
            title="Image-to-synset similarity")

# %% [markdown]
# ## Extension · LAIONet at several text thresholds: class coverage vs intra-class similarity
# Text-only selection at each threshold (no image bar): how many classes survive and how
# homogeneous they are, against ImageNet (first intra-class encoder).

# %%
cov_grid = list(coverage_thresholds) or list(grid)
enc_cov = clip if encoder_specs[0] == clip_spec else load_image_encoder(encoder_specs[0])
ref_cov = sim.embed_dataset(enc_cov, iter_images(val), image_cache, "imagenet_val",
                            keys=val["image_key"].to_numpy()).by_class(
                                val.set_index("image_key")["wnid"])
ref_cov_stats = sim.pairwise_stats(ref_cov).set_index("wnid")["mean"]
cov_rows = []
for t in cov_grid:
    d = rows[fr.passes(rows["similarity"].to_numpy(), t, inclusive)]
    sample = sim.sample_per_class(d.rename(columns={"key": "image_key"}), n_per_class, seed)
    e = sim.embed_dataset(enc_cov, iter_downloaded(download_dir, sample["image_key"]), image_cache,
                          "laion", keys=sample["image_key"].to_numpy())
    by = {w: E for w, E in e.by_class(sample.set_index("image_key")["wnid"]).items() if len(E) >= 2}
    st = sim.pairwise_stats(by).assign(dataset=f"{t:.4f}")
    sh = fr.share_at_or_below(st, ref_cov_stats)
    cov_rows.append({"text_threshold": float(t), "n_rows": len(d), "n_classes": d["wnid"].nunique(),
                     "avg_similarity": float(sim.pooled_resample(by, 100, seed)["similarity"].mean()),
                     "share_at_or_below": float(sh["share_at_or_below"].iloc[0]) if len(sh) else np.nan})
coverage = pd.DataFrame(cov_rows)
save_table(coverage, "07_EXT_laionet_thresholds_coverage_vs_similarity", paths.figures)
fig, ax = plt.subplots(figsize=(3.6, 2.6))
ax.plot(coverage["n_classes"], coverage["avg_similarity"], "o-", color="tab:blue")
for r in coverage.itertuples():
    ax.annotate(f"{r.text_threshold:.2f}", (r.n_classes, r.avg_similarity), fontsize=6,
                xytext=(2, 2), textcoords="offset points")
ax.axhline(float(sim.pooled_resample(ref_cov, 100, seed)["similarity"].mean()), color="tab:red",
           ls="--", label="ImageNet")
ax.set(xlabel="classes covered", ylabel="avg. intra-class similarity")
ax.legend()
_ = save_figure(fig, "07_EXT_laionet_thresholds_coverage_vs_similarity", paths.figures, profile,
            title="LAIONet text threshold: coverage vs homogeneity")
coverage

# %% [markdown]
# ## Extension · per-class zero-shot recall on LAIONet vs ImageNet (stage 04's results)

# %%
from laionet.evaluation.aggregate import per_class_recall

eval_dir = resolve(evaluation_dir) if evaluation_dir else stage_output("04_evaluation", profile)
res_files = [eval_dir / "results_laionet.parquet", eval_dir / "results_imagenet.parquet"]
if zero_shot_model and all(f.is_file() for f in res_files):
    res = pd.concat([pd.read_parquet(f) for f in res_files], ignore_index=True)
    res = res[res["model"] == zero_shot_model]
    if res.empty:
        print(f"stage 04 has no model {zero_shot_model!r}: set its zero_shot_encoder, or "
              "zero_shot_model here to one of its models")
    else:
        rec = per_class_recall(res, 1).pivot(index="wnid", columns="dataset", values="recall").dropna()
        save_table(rec.reset_index(), "07_EXT_zero_shot_per_class_recall", paths.figures)
        fig, ax = plt.subplots(figsize=(3.2, 3.0))
        ax.scatter(rec["ImageNet"], rec["LAIONet"], s=8, alpha=0.6)
        ax.plot([0, 1], [0, 1], "k--", lw=0.8)
        ax.set(xlabel="ImageNet recall@1", ylabel="LAIONet recall@1", xlim=(0, 1.02), ylim=(0, 1.02))
        _ = save_figure(fig, "07_EXT_zero_shot_per_class_recall", paths.figures, profile,
                    title=f"Per-class zero-shot recall ({zero_shot_model})")
        print(f"{len(rec)} classes; LAIONet recall lower in {(rec['LAIONet'] < rec['ImageNet']).mean():.1%}")
else:
    print(f"skipped: zero_shot_model={zero_shot_model!r}, stage 04 results present: "
          f"{[f.is_file() for f in res_files]}")

# %%
params = {k: globals()[k] for k in ("candidates_dir", "world_dir", "text_encoder", "image_encoder",
                                    "intra_encoders", "threshold_mode", "t_ref", "i_ref", "t_min",
                                    "n_grid", "picks", "inclusive", "nsfw_rule", "n_per_class",
                                    "coverage_thresholds", "zero_shot_model", "seed")}
write_json({"t_ref": t_ref_v, "i_ref": i_ref_v, "t_min": t_min_v, "n_ref": n_ref,
            "n_classes_ref": n_cls_ref, "image_to_synset_B19": b19, "homogeneity_decreases_D_to_A": homogeneity_decreases,
            "summary": summary.astype({"dataset": str}).to_dict("records")},
           paths.out / "summary.json")
write_manifest(paths.out, STAGE, params, inputs=[cand_dir / "candidates.parquet"],
               outputs=["image_similarity.parquet", "frontier.parquet", "datasets.parquet",
                        "intra_class_stats.parquet", "summary.json"], timings=dict(timings))
