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
# # 03 · Download LAIONet's images, once (paper §2, A10)
#
# How many of LAIONet's images can still be fetched, and which classes lose theirs? img2dataset
# fetches every URL into webdataset shards and the stage writes one `manifest.parquet` with a
# status per row. Every later stage reads these shards, never the network, so all analyses share
# one downloaded set (the authors re-downloaded per analysis, E.8).
#
# Differences from the authors' downloader (A10), on purpose: retries, opt-out headers respected,
# non-RGB images converted instead of rejected (E.7), images resized on download (smaller side =
# `image_size`; the demo's 64-px images are kept as they are). `full_size=True` stores them as
# served, JPEGs byte for byte: the paper. The shards are kept under the fingerprint of everything
# that makes them (rows, URLs, shard size, image settings): another setting is another download,
# going back reuses the old one, and a killed run resumes with its finished shards.
#
# Last, the **recognised-text step** of the TMLR version (A7, step 1): an OCR engine reads the
# text in every image; stage 04 drops the rows whose image shows their class's name. The authors'
# EAST + TrOCR weights are not reachable offline: `ocr_engine` picks an installed engine (the
# default by measured recall: `benchmarks/bench_recognised_text.py`).

# %% tags=["parameters"]
full_size: bool = False               # True: images stored as served, no resize or re-encode (the paper, A10); image_size unused
image_size: int = 256                 # smaller side after resize (keep_ratio)
resize_only_if_bigger: bool = True    # keep images smaller than image_size as they are (demo: 64 px)
retries: int = 2                      # retries per URL
timeout: int = 10                     # seconds per request
recognise_text: bool = True           # read the text in each image (A7); False: texts null, nothing flagged in 04
ocr_engine: str = "rapidocr"          # rapidocr | easyocr | tesseract (see laionet.jobs.ocr)
ocr_detector_side: int = 736          # rapidocr: px of the detector input's smaller side (its default)
# where and how it runs
profile: str = "demo"                 # profile name or YAML path
laionet_path: str = ""                # LAIONet table (key, wnid, URL); empty: stage 02's laionet.parquet
out_dir: str = ""                     # empty: runs/<profile>/03_download/
figures_dir: str = ""                 # empty: figures/<profile>/
number_sample_per_shard: int = 1000   # rows per webdataset shard
processes_count: int = 2              # img2dataset processes
thread_count: int = 16                # download threads per process
distributor: str = "multiprocessing"  # multiprocessing | pyspark | ray (img2dataset distributors)
ocr_batch_size: int = 64              # images recognised per cache file (a kill loses at most one batch)

# %%
import pandas as pd
from IPython.display import display

from laionet.demo import truth as demo_truth
from laionet.jobs import download, ocr
from laionet.method import recognised_text
from laionet.pipeline.stage import open_stage
from laionet.plots import download as download_plots

S = open_stage("03_download", globals())
laionet = pd.read_parquet(S.inputs.laionet_path, columns=["key", "wnid", "URL"])
with S.timings("download"):  # the demo world's loopback host runs only inside this call
    manifest = download.download_laionet(
        laionet, S.out, serve_root=S.inputs.http_root, image_size=image_size,
        resize_mode="no" if full_size else "keep_ratio", skip_reencode=full_size,
        resize_only_if_bigger=resize_only_if_bigger, retries=retries, timeout=timeout,
        number_sample_per_shard=number_sample_per_shard, processes_count=processes_count,
        thread_count=thread_count, distributor=distributor)
print(f"{len(laionet):,} LAIONet rows -> {download.shard_dir(S.out)}")

# %% [markdown]
# ## Success rate, error kinds, class attrition
# How many rows came back, why the others did not, and how many classes keep at least one image.

# %%
report = download.report(manifest)
for name, table in report.items():
    S.table(table, f"03_download_{name}")
display(*(report[k] for k in ("overall", "status", "error_kinds", "class_attrition")))
n = report["overall"].iloc[0]
S.figure(download_plots.plot_success(report), "03_download_success",
         title=f"Download of LAIONet ({int(n['downloaded']):,} of {int(n['rows']):,} images)")

# %% [markdown]
# ## A few downloaded images, read back from the shards as later stages read them
# One image of each of the first classes: what the classifiers of stage 04 will see.

# %%
fig = download_plots.plot_examples(download.example_images(S.out, manifest))
if fig is not None:
    S.figure(fig, "03_download_examples", title="Downloaded LAIONet images")

# %% [markdown]
# ## Text in the images (A7, step 1)
# What the engine read; stage 04 applies the authors' rule (the class's head name in the text).
# On the demo world, whose hidden truth says which images got their class's name written into
# them, the last table says how many of those names the engine found (to judge the engine).

# %%
with S.timings("recognise_text"):
    texts = ocr.download_step(S.out, S.cache_dir("recognised_text"), enabled=recognise_text,
                              engine=ocr_engine, batch_size=ocr_batch_size,
                              detector_side=ocr_detector_side)
print(f"{texts.attrs.get('recognised', 0):,} images read by {texts.attrs.get('engine', 'no engine')}, "
      f"{texts.attrs.get('cache_hits', 0):,} from the cache")
S.table(recognised_text.outcomes(texts), "03_download_recognised_text", float_format="%.4f")
display(recognised_text.outcomes(texts), texts[texts[recognised_text.TEXT_COL].str.len().gt(0)
        & ~texts[recognised_text.TEXT_COL].isin(recognised_text.SPECIAL)].head(10))
if S.inputs.truth and recognise_text:
    display(demo_truth.text_recall(texts, demo_truth.text_truth(S.inputs.truth)))
