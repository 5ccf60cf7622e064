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
# # 03 · Download LAIONet's images, once
#
# img2dataset fetches every LAIONet URL into webdataset shards (`shards/00000.tar`, ...) and
# stage 03 writes one `manifest.parquet` with a status per row. Every later stage reads the
# shards (`laionet.download.iter_downloaded`), never the network, so all analyses share the same
# downloaded set (the authors re-downloaded per analysis, paper_spec E.8).
#
# Differences from the authors' downloader (A10), on purpose: retries, img2dataset's opt-out
# headers respected, non-RGB images converted to RGB instead of rejected (E.7), images resized
# on download (smaller side = `image_size`, aspect ratio kept; smaller images are kept as they
# are when `resize_only_if_bigger`, which the demo's 64-px images use).
#
# For the demo world (`world_dir` set) the notebook serves `<world_dir>/http` on 127.0.0.1 and
# rewrites `http://laion-demo.invalid/...` URLs to it; the host stops at the end, also on failure.
# A rerun resumes: finished shards are kept, unfinished ones redone.

# %% tags=["parameters"]
profile: str = "demo"                 # profile name or YAML path
out_dir: str = ""                     # empty: runs/<profile>/03_download/
figures_dir: str = ""                 # empty: figures/<profile>/
laionet_path: str = ""                # empty: runs/<profile>/02_caption_filtering/laionet.parquet
world_dir: str = ""                   # non-empty: demo world: serve <world_dir>/http on loopback
image_size: int = 256                 # smaller side after resize (keep_ratio)
resize_only_if_bigger: bool = True    # keep images smaller than image_size as they are (demo: 64 px)
processes_count: int = 2              # img2dataset processes
thread_count: int = 16                # download threads per process
retries: int = 2                      # retries per URL
timeout: int = 10                     # seconds per request
number_sample_per_shard: int = 1000   # rows per webdataset shard
distributor: str = "multiprocessing"  # multiprocessing | pyspark | ray (img2dataset distributors)

# %%

import matplotlib.pyplot as plt
import pandas as pd

from laionet import download, figures, paths, stage

STAGE = "03_download"
P = paths.stage_paths(STAGE, profile, out_dir, figures_dir)
src = paths.resolve(laionet_path) if laionet_path else (
    paths.stage_output("02_caption_filtering", profile) / "laionet.parquet")
if not src.is_file():
    raise FileNotFoundError(f"{src} does not exist: run stage 02 first or set laionet_path")
figures.style()
params = dict(laionet_path=str(src), image_size=image_size, resize_only_if_bigger=resize_only_if_bigger,
              number_sample_per_shard=number_sample_per_shard)
laionet = pd.read_parquet(src, columns=["key", "wnid", "URL"])
print(f"{len(laionet):,} LAIONet rows from {src}; shards -> {P.out / download.SHARDS}/<input fingerprint>")

# %%
timings = stage.Timings()
if stage.is_current(P.out, params, [src]):
    manifest = download.load_manifest(P.out)
    print("download up to date: manifest reused")
else:
    with timings("download"):  # a demo world's loopback host runs only inside this call
        manifest = download.download_laionet(
            laionet, P.out, serve_root=paths.resolve(world_dir) / "http" if world_dir else None,
            image_size=image_size, resize_only_if_bigger=resize_only_if_bigger,
            processes_count=processes_count, thread_count=thread_count, retries=retries,
            timeout=timeout, number_sample_per_shard=number_sample_per_shard,
            distributor=distributor, incremental=True)
    stage.write_manifest(P.out, STAGE, params, [src], outputs=[download.MANIFEST],
                         timings=dict(timings))
print(dict(timings))

# %% [markdown]
# ## Success rate, error kinds, class attrition

# %%
ok = manifest["status"].eq("success")
overall = pd.DataFrame({"rows": [len(manifest)], "downloaded": [int(ok.sum())],
                        "success_rate": [ok.mean() if len(manifest) else float("nan")]})
kinds = (manifest.loc[~ok, "error_kind"].value_counts().rename_axis("error_kind")
         .reset_index(name="rows"))
status = manifest["status"].value_counts().rename_axis("status").reset_index(name="rows")
per_class = (manifest.assign(ok=ok).groupby("wnid")["ok"].agg(rows="size", downloaded="sum")
             .assign(success_rate=lambda d: d["downloaded"] / d["rows"]).reset_index()
             .sort_values("rows", ascending=False))
attrition = pd.DataFrame({"classes with rows": [per_class.shape[0]],
                          "classes with >= 1 image": [int((per_class["downloaded"] > 0).sum())]})
for name, table in [("03_download_overall", overall), ("03_download_status", status),
                    ("03_download_error_kinds", kinds), ("03_download_per_class", per_class),
                    ("03_download_class_attrition", attrition)]:
    figures.save_table(table, name, P.figures)
display(overall, status, kinds, attrition)

# %%
fig, ax = plt.subplots(1, 2, figsize=(10, 3))
ax[0].bar(per_class["wnid"], per_class["success_rate"], color="tab:blue")
ax[0].axhline(overall["success_rate"][0], c="k", ls="--", label="overall")
ax[0].set(ylabel="success rate", xlabel="class (most rows first)", ylim=(0, 1.05))
ax[0].tick_params(axis="x", labelrotation=90, labelsize=6)
ax[0].legend()
ax[1].barh(kinds["error_kind"], kinds["rows"], color="tab:red")
ax[1].set(xlabel="rows", title="why downloads failed")
figures.save_figure(fig, "03_download_success", P.figures, P.profile,
                    title=f"Download of LAIONet ({int(ok.sum()):,} of {len(manifest):,} images)")

# %% [markdown]
# ## A few downloaded images (read back from the shards, as later stages do)

# %%
sample = manifest[ok].groupby("wnid").head(1).head(8)
imgs = {k: (w, im) for k, w, im in download.iter_downloaded(P.out, keys=sample["key"])}
if imgs:
    fig, axes = plt.subplots(1, len(imgs), figsize=(1.6 * len(imgs), 1.9), squeeze=False)
    for a, (k, (w, im)) in zip(axes[0], sorted(imgs.items())):
        a.imshow(im)
        a.set_title(w, fontsize=7)
        a.axis("off")
    figures.save_figure(fig, "03_download_examples", P.figures, P.profile,
                        title="Downloaded LAIONet images")
