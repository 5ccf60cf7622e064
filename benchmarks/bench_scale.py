"""LAION scale: do stages 01, 02 and 09's indexing keep their memory as the parts add up?

    python benchmarks/bench_scale.py                       # 1 and 4 parts of 1,000,000 rows
    python benchmarks/bench_scale.py --rows 12900000       # the real part size (about 12.9M rows)
    python benchmarks/bench_scale.py --rows 2000 --parts 1,2 --no-encoders   # a smoke run (seconds)

What it does
- Writes LAION-400M-schema parts (``laionet.demo.formats.LAION_SCHEMA``: SAMPLE_ID, URL, TEXT,
  HEIGHT, WIDTH, LICENSE, NSFW, similarity) of ``--rows`` rows each, captions and URLs resampled
  with replacement from the 10,000 real ones in ../shared/reference/img2dataset/test_10000.parquet
  (so the lemma-match rate is a real caption mix's), NSFW tags drawn at LAION's rough shares.
  A real LAION-400M part holds about 12.9M rows (413,871,335 / 32); the default 1M rows (1/13 of
  it) runs in minutes on two shared cores and is large enough that a part's data dominates the
  interpreter's own memory; ``--rows 12900000`` runs the real size.
- For each part count (``--parts``, default 1 and 4) runs stage 01 (``match_parts.match_all`` +
  ``summarize_matches``, one worker), stage 02 (``candidates.build_candidates`` + the streamed
  assembly of candidates.parquet, LAIONet, threshold curves and histogram) and stage 09's caption
  indexing (``laionet.jobs.caption_index.index_parts``, one fixed faiss factory for every part count), each
  in a fresh subprocess, so each peak RSS (``getrusage`` of the process and its children) belongs
  to one configuration. It prints rows/s and peak RSS per stage for each part count and the ratio,
  and fails (exit 1) when peak RSS(4 parts) > 1.25 x peak RSS(1 part) for any stage.
- The encoder of stages 02 and 09 here is a STAND-IN, declared as such: ``HashingEncoder``
  (scikit-learn's HashingVectorizer: word unigrams+bigrams hashed into 512 signed features, L2
  unit rows; deterministic, no model). It measures the pipeline (I/O, joins, store, index), not an
  encoder. The real encoders' rates are measured separately on real captions (``--encoders``:
  all-MiniLM-L6-v2, all-mpnet-base-v2 where its weights are unpacked, open_clip ViT-B-32's text
  tower with random weights: the same architecture and cost as OpenAI's) on this CPU.
- Writes ``bench_scale.json``, ``cost_model.csv`` and ``cost_model.md`` into ``--out``: the cost
  model of the real run (413,871,335 captions in 32 parts; 21M lemma matches; 822k LAIONet rows)
  from these measurements and published GPU anchors (each figure marked measured or anchor).

Not a test: CI never runs it (a smoke run with --rows 2000 is in tests/test_bench_scale.py).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
# BENCH_SCALE_LIB: another checkout's lib/ for one child (--stage09-pythonpath)
sys.path.insert(0, os.environ.get("BENCH_SCALE_LIB") or str(ROOT / "lib"))

REAL = {"captions": 413_871_335, "parts": 32, "matches": 21_000_000, "laionet": 822_000,
        "laionet_classes": 915, "rows_per_part": 413_871_335 // 32}
DEFAULT_ROWS = 1_000_000
INDEX_FACTORY = "IVF1024,PQ32np"  # one factory for every part count (32 bytes of code a caption;
#                                   "np": no polysemous training, which takes minutes and is unused)
NSFW_SHARES = {"UNLIKELY": 0.88, "UNSURE": 0.08, "NSFW": 0.04}  # rough LAION-400M shares
THRESHOLD = 0.2                  # stand-in encoder: any threshold (the LAIONet size is not measured)
RSS_LIMIT = 1.25


# --------------------------------------------------------------------------------------------
# The stand-in encoder

class HashingEncoder:
    """A STAND-IN text encoder for benchmarks: hashed word unigrams and bigrams (scikit-learn's
    HashingVectorizer, 512 signed features, L2-normalised rows). Deterministic, no weights, about
    the cost of tokenising; its similarities mean nothing."""

    name = "hashing-stand-in-512-v1"
    dim = 512
    device = "cpu"

    def __init__(self):
        from sklearn.feature_extraction.text import HashingVectorizer

        self._vec = HashingVectorizer(n_features=self.dim, ngram_range=(1, 2), norm="l2",
                                      alternate_sign=True, dtype=np.float32)

    def embed_texts(self, texts, batch_size=64, progress=False):
        from laionet.models.common import clean_texts

        texts = clean_texts(texts)
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        x = self._vec.transform(texts).toarray().astype(np.float32)
        empty = ~x.any(axis=1)
        x[empty, 0] = 1.0  # a caption with no word gets a fixed unit vector
        return x


# --------------------------------------------------------------------------------------------
# LAION-schema parts from the real captions

def reference_captions() -> Path:
    ref = Path(os.environ.get("LAIONET_REFERENCE", ROOT.parent / "shared" / "reference"))
    path = ref / "img2dataset" / "test_10000.parquet"
    if not path.is_file():
        sys.exit(f"{path} not found: set LAIONET_REFERENCE to the folder holding img2dataset/ "
                 "(the 10k real captions the parts are resampled from)")
    return path


def write_parts(folder: Path, n_parts: int, rows: int, seed: int = 0,
                row_group: int = 131_072) -> list[Path]:
    """``n_parts`` LAION parts of ``rows`` rows (written row group by row group: the generator's
    memory is one row group); existing parts of the same size are reused."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from laionet.demo.formats import LAION_PART_NAME, LAION_SCHEMA

    src = pq.read_table(reference_captions(), columns=["URL", "TEXT"])
    text, url = src["TEXT"].combine_chunks(), src["URL"].combine_chunks()
    tags = np.array(list(NSFW_SHARES), dtype=object)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for p in range(n_parts):
        path = folder / LAION_PART_NAME.format(p)
        out.append(path)
        if path.is_file() and pq.ParquetFile(path).metadata.num_rows == rows:
            continue
        rng = np.random.default_rng([seed, p])
        tmp = path.with_name(f".{path.name}.tmp")
        with pq.ParquetWriter(tmp, LAION_SCHEMA) as w:
            for start in range(0, rows, row_group):
                n = min(row_group, rows - start)
                idx = pa.array(rng.integers(0, len(text), n))
                w.write_table(pa.table({
                    "SAMPLE_ID": pa.array(np.arange(start, start + n, dtype=np.float64) + p * 1e9),
                    "URL": url.take(idx), "TEXT": text.take(idx),
                    "HEIGHT": pa.array(rng.integers(64, 1024, n)),
                    "WIDTH": pa.array(rng.integers(64, 1024, n)),
                    "LICENSE": pa.array(np.full(n, "?", dtype=object), pa.string()),
                    "NSFW": pa.array(rng.choice(tags, n, p=list(NSFW_SHARES.values())),
                                     pa.string()),
                    "similarity": pa.array(rng.uniform(0.3, 0.45, n)),
                }, schema=LAION_SCHEMA))
        os.replace(tmp, path)
    return out


def write_classes(dest: Path) -> Path:
    """ImageNet-1k's lemmas (the authors' rule) and synset texts, computed once for the children."""
    if dest.is_file():
        return dest
    from laionet.sources import classes as lc
    from laionet.util.files import write_json

    table = lc.class_table("imagenet1k")
    pairs = lc.lemma_map(table, "unique_in_imagenet")
    write_json({"pairs": [list(p) for p in pairs], "wnid": table["wnid"].tolist(),
                "head": table["head"].tolist(), "name_def": table["name_def"].tolist()}, dest)
    return dest


# --------------------------------------------------------------------------------------------
# One configuration in one process

def _peak_rss_mb() -> float:
    """Peak resident memory of this process (VmHWM: per address space, so not inherited from
    the parent that started it, unlike getrusage's ru_maxrss) and of its finished children
    (getrusage RUSAGE_CHILDREN), MiB."""
    own = 0.0
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                own = float(line.split()[1])  # KiB
    except OSError:
        own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, kids) / 1024


def _size(path: Path) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file()) if path.exists() else 0


def run_stage(stage: str, parts: list[Path], work: Path, classes_json: Path) -> dict:
    """Run one stage on ``parts`` inside this process; returns what it measured."""
    import pandas as pd

    from laionet.util.files import read_json

    cls = read_json(classes_json)
    n_rows = sum(_num_rows(p) for p in parts)
    t0, cpu0 = time.perf_counter(), _cpu_seconds()
    info: dict = {}
    if stage == "01":
        from laionet.jobs import match_parts

        out = work / "01"
        table = pd.DataFrame({"wnid": cls["wnid"], "head": cls["head"]})
        pairs = [tuple(p) for p in cls["pairs"]]
        res = match_parts.match_all(parts, pairs, out, n_workers=1)
        _, _, summary = match_parts.summarize_matches(out, table, pairs)
        info = {"n_matched_rows": summary["n_matched_rows"], "n_matches": summary["n_matches"],
                "parts_computed": len(res.done)}
        written = _size(out)
    elif stage == "02":
        from laionet.jobs.embedding_store import EmbeddingStore
        from laionet.jobs import candidates as candidates_job
        from laionet.method import selection

        out = work / "02"
        enc = HashingEncoder()
        store = EmbeddingStore(work / "cache" / enc.name, enc.name)
        texts = pd.Series(cls["name_def"], index=cls["wnid"])
        res = candidates_job.build_candidates(work / "01", parts, texts, enc, store, out)
        counts = candidates_job.candidate_counts(out)
        candidates_job.assemble_candidates(out, out / "candidates.parquet")
        files = candidates_job.CandidateFiles(out)
        laionet = selection.select_laionet(files, THRESHOLD)
        stats = selection.sfw_stats(files)
        selection.threshold_curves(files, np.linspace(stats["min"], stats["max"], 60))
        selection.similarity_histogram(files)
        info = {**counts, "n_laionet_stand_in": len(laionet), "parts_computed": len(res.done)}
        written = _size(out) + _size(work / "cache")
    elif stage == "09":
        try:
            from laionet.jobs.caption_index import index_parts
        except ImportError as exc:
            return {"stage": stage, "skipped": f"laionet.jobs.caption_index.index_parts not in this "
                                               f"checkout ({exc})"}
        from laionet.sources.laion import part_numbers

        out = work / "09"
        enc = HashingEncoder()
        index = index_parts({n: p for p, n in part_numbers(parts).items()}, enc, out,
                            factory=INDEX_FACTORY, n_total=n_rows)
        info = {"ntotal": int(index.ntotal), "factory": index.factory,
                "bytes_per_caption": float(index.bytes_per_caption())}
        written = _size(out)
    else:
        raise ValueError(f"unknown stage {stage!r}")
    seconds = time.perf_counter() - t0
    cpu = _cpu_seconds() - cpu0
    return {"stage": stage, "n_parts": len(parts), "rows": n_rows, "seconds": round(seconds, 2),
            "rows_per_s": round(n_rows / seconds, 1), "cpu_seconds": round(cpu, 2),
            "rows_per_cpu_s": round(n_rows / max(cpu, 1e-9), 1),
            "peak_rss_mb": round(_peak_rss_mb(), 1), "disk_bytes": written, **info}


def _cpu_seconds() -> float:
    """User + system CPU time of this process and its finished children: the cost per item
    that does not depend on how busy the (shared) machine is."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _num_rows(path: Path) -> int:
    import pyarrow.parquet as pq

    return pq.ParquetFile(path).metadata.num_rows


def run_encoder(spec: str, n: int = 256, batch_size: int = 64) -> dict:
    """Captions per second of a real encoder on ``n`` real captions (after a warm-up batch)."""
    import pyarrow.parquet as pq
    import torch

    from laionet.models import load_text_encoder

    torch.set_num_threads(max(1, os.cpu_count() or 1))
    texts = pq.read_table(reference_captions(), columns=["TEXT"])["TEXT"].to_pylist()[:n]
    enc = load_text_encoder(spec, device="cpu")
    enc.embed_texts(texts[:batch_size], batch_size=batch_size)
    t0, cpu0 = time.perf_counter(), _cpu_seconds()
    enc.embed_texts(texts, batch_size=batch_size)
    s, cpu = time.perf_counter() - t0, _cpu_seconds() - cpu0
    out = {"encoder": spec, "name": enc.name, "captions": n, "seconds": round(s, 2),
           "captions_per_s": round(n / s, 1), "cpu_seconds": round(cpu, 2),
           "captions_per_cpu_s": round(n / max(cpu, 1e-9), 1), "threads": torch.get_num_threads(),
           "peak_rss_mb": round(_peak_rss_mb(), 1)}
    if spec.startswith("open_clip"):  # FLOPs per caption, as the pipeline runs it (bucketed)
        from torch.utils.flop_counter import FlopCounterMode

        with FlopCounterMode(display=False) as fc:
            enc.embed_texts(texts[:256], batch_size=batch_size)
        out["flops_per_caption"] = fc.get_total_flops() / 256
    if "mpnet" in enc.name:
        out["gpu_anchor"], out["gpu_source"] = ANCHORS["mpnet_per_s_v100"], ANCHOR_SOURCES["mpnet"]
    if "MiniLM" in enc.name:
        out["gpu_anchor"] = ANCHORS["minilm_per_s_v100"]
        out["gpu_source"] = "anchor: sbert.net pretrained models table, 14,200 sentences/s (V100)"
    return out


def mpnet_spec() -> str | None:
    """all-mpnet-base-v2 from the unpacked PyPI volumes, when they are unpacked (or unpackable)."""
    try:
        from laionet.models.assets import mpnet_path

        return f"sentence-transformers:{mpnet_path()}"
    except Exception:  # noqa: BLE001, S110 - not in this checkout, or volumes missing
        pass
    for cand in (Path.home() / ".cache/laionet/all-mpnet-base-v2/all-mpnet-base-v2",):
        if (cand / "model.safetensors").is_file():
            return f"sentence-transformers:{cand}"
    return None


def _child_classes(dest: Path) -> Path:
    """``write_classes`` in a subprocess: WordNet and timm stay out of this (parent) process."""
    if not dest.is_file():
        _child(["--_child", "classes", str(dest)])
    return dest


def _child(argv: list[str], env_extra: dict | None = None) -> dict:
    env = dict(os.environ, **(env_extra or {}))
    env["PYTHONPATH"] = os.pathsep.join([env.get("BENCH_SCALE_LIB") or str(ROOT / "lib"),
                                         env.get("PYTHONPATH", "")])
    proc = subprocess.run([sys.executable, __file__, *argv], capture_output=True, text=True,
                          env=env, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"child {argv} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------------------------
# The cost model of the real run

# Published anchors (not measured here: no GPU on this machine). Each is cited where it is used.
ANCHORS = {
    # rom1504/clip-retrieval README: "clip inference allows you to quickly (1500 sample/s on a
    # 3080) compute image and text embeddings"; "100M text+image embeddings can be processed in
    # 20h using a 3080" (ViT-B/32, its default). Image side incl. decoding; one consumer GPU.
    "clip_b32_image_text_per_s_3080": 1_500,
    # rom1504/img2dataset README: "Can download, resize and package 100M urls in 20h on one
    # machine" = 1,389 images/s.
    "img2dataset_per_s_node": 100_000_000 / (20 * 3600),
    # sbert.net pretrained-models table ("Speed", sentences/s, V100): all-mpnet-base-v2 2,800,
    # all-MiniLM-L6-v2 14,200.
    "mpnet_per_s_v100": 2_800,
    "minilm_per_s_v100": 14_200,
    # NVIDIA A100 datasheet: 312 TFLOP/s dense FP16/BF16 tensor; utilisation assumed 30 % for a
    # 12-layer, width-512 transformer at LAION caption lengths (an assumption, stated as such).
    "a100_fp16_flops": 312e12,
    "assumed_utilisation": 0.30,
}
ANCHOR_SOURCES = {
    "clip_text": "derived: FLOPs/caption measured here (open_clip ViT-B-32 text tower, length-"
                 "bucketed real captions) / (A100 312 TFLOP/s fp16 x 30 % assumed)",
    "clip_image": "anchor: clip-retrieval README, 1500 samples/s ViT-B/32 on an RTX 3080 "
                  "(image+text, decoding included; a floor for an A100)",
    "img2dataset": "anchor: img2dataset README, 100M urls in 20 h on one machine",
    "mpnet": "anchor: sbert.net pretrained models table, 2,800 sentences/s (V100)",
}


def clip_text_rate(encoders: list[dict]) -> float | None:
    """Captions/s of CLIP B/32's text tower on an A100, derived from the FLOPs per caption
    measured here (``run_encoder`` on the open_clip tower) and the A100's datasheet peak."""
    flops = next((e.get("flops_per_caption") for e in encoders if e.get("flops_per_caption")), None)
    if not flops:
        return None
    return ANCHORS["a100_fp16_flops"] * ANCHORS["assumed_utilisation"] / flops


def cost_model(results: list[dict], encoders: list[dict], cores: int = 16) -> list[dict]:
    """Stage rows for LAION-400M on one node: one A100-class GPU and ``cores`` CPU cores.

    CPU figures are measured here (CPU seconds per item, user + system, so a busy shared machine
    does not inflate them; the stand-in encoder's share included); GPU rates are
    anchors or derived from measured FLOPs (no GPU here). Stage 01 runs ``cores`` parts at once
    (``n_workers``); stages 02 and 09 run in one process: wall = CPU pipeline + GPU encoder.
    Disk and peak memory scale the measured per-item bytes and per-process peaks.
    """
    by = {(r["stage"], r["n_parts"]): r for r in results if "skipped" not in r}
    big = max((r["n_parts"] for r in results if "skipped" not in r), default=1)
    text_gpu = clip_text_rate(encoders)
    rows = []

    def r_of(stage):
        return by.get((stage, big))

    m = r_of("01")
    if m:
        per = m["cpu_seconds"] / m["rows"]
        workers = min(cores, REAL["parts"])
        rows.append({
            "stage": "01 synset matching", "items": REAL["captions"], "item": "caption",
            "cpu_s_per_item": per, "cpu_source": "measured",
            "gpu_rate_per_s": None, "gpu_source": "- (CPU stage)",
            "disk_gb": m["disk_bytes"] / max(m["n_matches"], 1) * REAL["matches"] / 1e9,
            "disk_source": f"measured bytes per match x {REAL['matches']:,}",
            "peak_mem_gb": m["peak_rss_mb"] / 1024 * workers,
            "mem_source": f"measured per worker x {workers} workers",
            "wall_h": per * REAL["captions"] / workers / 3600,
            "note": f"lemma-match rate of the resampled real captions: "
                    f"{m['n_matches'] / m['rows']:.2%} of rows (LAION-400M: "
                    f"{REAL['matches'] / REAL['captions']:.2%})"})
    c = r_of("02")
    if c:
        per = c["cpu_seconds"] / max(c["n_candidates"], 1)
        n = REAL["matches"]  # upper bound: every lemma match a single-label candidate
        gpu_h = n / text_gpu / 3600 if text_gpu else None
        rows.append({
            "stage": "02 caption filtering (CLIP B/32 text)", "items": n,
            "item": "candidate", "cpu_s_per_item": per,
            "cpu_source": "measured (join, store, similarity, assembly; stand-in encoder)",
            "gpu_rate_per_s": text_gpu, "gpu_source": ANCHOR_SOURCES["clip_text"],
            "disk_gb": c["disk_bytes"] / max(c["n_candidates"], 1) * n / 1e9,
            "disk_source": "measured bytes per candidate (candidates/ + candidates.parquet + "
                           "store: 2 KB of float32 a caption) x 21M",
            "peak_mem_gb": c["peak_rss_mb"] / 1024, "mem_source": "measured (one process)",
            "wall_h": per * n / 3600 + (gpu_h or 0),
            "note": "CPU pipeline + GPU encoder, one process"})
    i = r_of("09")
    if i:
        per = i["cpu_seconds"] / i["rows"]
        n = REAL["captions"]
        gpu_h = n / text_gpu / 3600 if text_gpu else None
        rows.append({
            "stage": "09 caption index (CLIP B/32 text + faiss IVF-PQ)", "items": n,
            "item": "caption", "cpu_s_per_item": per,
            "cpu_source": "measured (read, embed, faiss train/add on CPU; stand-in encoder)",
            "gpu_rate_per_s": text_gpu, "gpu_source": ANCHOR_SOURCES["clip_text"],
            "disk_gb": i["bytes_per_caption"] * n / 1e9,
            "disk_source": f"measured {i['bytes_per_caption']:.1f} bytes per caption "
                           f"({i['factory']})",
            "peak_mem_gb": i["peak_rss_mb"] / 1024, "mem_source": "measured (one process)",
            "wall_h": per * n / 3600 + (gpu_h or 0),
            "note": "CPU pipeline + GPU encoder, one process"})
    rows.append({
        "stage": "03 download LAIONet images (img2dataset)", "items": REAL["laionet"],
        "item": "image", "cpu_s_per_item": None, "cpu_source": "not measured (network-bound)",
        "gpu_rate_per_s": None, "gpu_source": "-",
        "disk_gb": REAL["laionet"] * 20e3 / 1e9,
        "disk_source": "assumed ~20 KB per 256-px JPEG",
        "peak_mem_gb": None, "mem_source": "-",
        "wall_h": REAL["laionet"] / ANCHORS["img2dataset_per_s_node"] / 3600,
        "note": ANCHOR_SOURCES["img2dataset"]})
    img = ANCHORS["clip_b32_image_text_per_s_3080"]
    rows.append({
        "stage": "05/07 CLIP B/32 image embeddings of LAIONet", "items": REAL["laionet"],
        "item": "image", "cpu_s_per_item": None, "cpu_source": "not measured here",
        "gpu_rate_per_s": img, "gpu_source": ANCHOR_SOURCES["clip_image"],
        "disk_gb": REAL["laionet"] * 512 * 4 / 1e9, "disk_source": "float32 512-d embeddings",
        "peak_mem_gb": None, "mem_source": "-",
        "wall_h": REAL["laionet"] / img / 3600, "note": "one image-tower pass"})
    for e in encoders:
        if "captions_per_s" in e:
            rows.append({
                "stage": f"(rate) {e['name']} on this CPU", "items": None, "item": "caption",
                "cpu_s_per_item": 1 / e["captions_per_cpu_s"],
                "cpu_source": f"measured (CPU s, {e['threads']} threads, batch 64, real captions)",
                "gpu_rate_per_s": e.get("gpu_anchor"), "gpu_source": e.get("gpu_source", "-"),
                "disk_gb": None, "disk_source": "-",
                "peak_mem_gb": e["peak_rss_mb"] / 1024, "mem_source": "measured",
                "wall_h": REAL["matches"] / e["captions_per_cpu_s"] / cores / 3600,
                "note": f"wall: stage 02's 21M candidates with this encoder on {cores} CPU "
                        "cores, no GPU"})
    main_rows = [r for r in rows if not r["stage"].startswith("(")]
    rows.append({"stage": "total (one GPU node, stages above in sequence)", "items": None,
                 "item": "", "cpu_s_per_item": None, "cpu_source": "", "gpu_rate_per_s": None,
                 "gpu_source": "", "disk_gb": sum(r["disk_gb"] or 0 for r in main_rows),
                 "disk_source": "", "peak_mem_gb": max((r["peak_mem_gb"] or 0) for r in main_rows),
                 "mem_source": "", "wall_h": sum(r["wall_h"] or 0 for r in main_rows),
                 "note": "sum of wall times; the largest peak"})
    return rows


def _fmt(v, kind: str = "") -> str:
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return "-"
    if kind == "sci":
        return f"{v:.2e}"
    if isinstance(v, float):
        return f"{v:,.2f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def write_tables(out: Path, rows: list[dict]) -> str:
    import pandas as pd

    df = pd.DataFrame(rows)
    df.to_csv(out / "cost_model.csv", index=False)
    cols = [("stage", ""), ("items", ""), ("cpu_s_per_item", "sci"), ("cpu_source", ""),
            ("gpu_rate_per_s", ""), ("gpu_source", ""), ("disk_gb", ""), ("peak_mem_gb", ""),
            ("wall_h", "")]
    head = ["stage", "items", "CPU s/item (here)", "CPU source", "GPU items/s", "GPU source",
            "disk GB", "peak mem GB", "wall h (1 node)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        lines.append("| " + " | ".join(_fmt(r[c], k) for c, k in cols) + " |")
    md = "\n".join(lines) + "\n"
    (out / "cost_model.md").write_text(md)
    return md


# --------------------------------------------------------------------------------------------

def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=DEFAULT_ROWS, help="rows per part (real: 12.9M)")
    ap.add_argument("--parts", default="1,4", help="part counts to compare (first vs last)")
    ap.add_argument("--stages", default="01,02,09")
    ap.add_argument("--out", default=str(ROOT / "runs" / "bench_scale"))
    ap.add_argument("--encoders", default="minilm,mpnet,clip",
                    help="real encoders whose CPU rate is measured ('' or --no-encoders: none)")
    ap.add_argument("--no-encoders", action="store_true")
    ap.add_argument("--stage09-pythonpath", default="",
                    help="another checkout's lib/ for the stage-09 child (one with "
                         "laionet.jobs.caption_index.index_parts, before it is merged)")
    ap.add_argument("--classes", default="",
                    help="JSON of lemma pairs and synset texts (default: ImageNet-1k, built once)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--from-json", nargs="+", default=[],
                    help="no run: rebuild the cost model from these bench_scale.json files "
                         "(e.g. stages measured in separate runs) into --out")
    ap.add_argument("--_child", nargs="*", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a._child:  # one configuration, in a fresh process
        kind = a._child[0]
        if kind == "encoder":
            print(json.dumps(run_encoder(a._child[1])))
        elif kind == "classes":
            print(json.dumps({"classes": str(write_classes(Path(a._child[1])))}))
        else:
            stage, n, work, classes = a._child
            parts = sorted(Path(a.out, "parts").glob("part-*.parquet"))[:int(n)]
            print(json.dumps(run_stage(stage, parts, Path(work), Path(classes))))
        return 0

    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    if a.from_json:
        saved = [json.loads(Path(f).read_text()) for f in a.from_json]
        results = [r for d in saved for r in d["results"] if "skipped" not in r]
        encoders = [e for d in saved for e in d["encoders"]]
        print(write_tables(out, cost_model(results, encoders)))
        return 0
    counts = [int(x) for x in a.parts.split(",")]
    stages = [s.strip() for s in a.stages.split(",") if s.strip()]
    print(f"writing {max(counts)} LAION-schema part(s) of {a.rows:,} rows (real part: "
          f"{REAL['rows_per_part']:,})", flush=True)
    t0 = time.perf_counter()
    write_parts(out / "parts", max(counts), a.rows, a.seed)
    classes = Path(a.classes) if a.classes else _child_classes(out / "classes.json")
    print(f"  parts ready in {time.perf_counter() - t0:.0f} s", flush=True)
    results = []
    for n in counts:
        work = out / f"work-{n}parts"
        import shutil

        shutil.rmtree(work, ignore_errors=True)
        for stage in stages:
            env = {"BENCH_SCALE_LIB": a.stage09_pythonpath} if stage == "09" and \
                a.stage09_pythonpath else None
            r = _child(["--out", str(out), "--_child", stage, str(n), str(work), str(classes)],
                       env)
            results.append(r)
            print(f"  stage {stage}, {n} part(s): " + (r["skipped"] if "skipped" in r else
                  f"{r['rows']:,} rows in {r['seconds']} s = {r['rows_per_s']:,.0f} rows/s, "
                  f"peak RSS {r['peak_rss_mb']:.0f} MiB"), flush=True)
    encoders = []
    specs = [] if a.no_encoders else [s for s in a.encoders.split(",") if s]
    for s in specs:
        spec = {"minilm": "minilm", "clip": "open_clip:ViT-B-32:random",
                "mpnet": mpnet_spec()}.get(s, s)
        if spec is None:
            encoders.append({"encoder": s, "skipped": "all-mpnet-base-v2 weights not unpacked"})
            continue
        try:
            encoders.append(_child(["--out", str(out), "--_child", "encoder", spec]))
        except RuntimeError as exc:
            encoders.append({"encoder": s, "skipped": str(exc).splitlines()[0]})
        print(f"  encoder {s}: {encoders[-1]}", flush=True)

    lo, hi = min(counts), max(counts)
    print(f"\nper stage: rows/s and peak RSS, {lo} vs {hi} part(s) of {a.rows:,} rows "
          f"(stand-in encoder {HashingEncoder.name})")
    print(f"{'stage':6} {'rows/s ' + str(lo):>14} {'rows/s ' + str(hi):>14} "
          f"{'RSS MiB ' + str(lo):>13} {'RSS MiB ' + str(hi):>13} {'ratio':>6}")
    ok = True
    ratios = {}
    for stage in stages:
        r1 = next((r for r in results if r["stage"] == stage and r.get("n_parts") == lo), None)
        r4 = next((r for r in results if r["stage"] == stage and r.get("n_parts") == hi), None)
        if not r1 or not r4:
            print(f"{stage:6} skipped: {next(r for r in results if r['stage'] == stage)['skipped']}")
            continue
        ratio = r4["peak_rss_mb"] / r1["peak_rss_mb"]
        ratios[stage] = round(ratio, 3)
        ok &= ratio <= RSS_LIMIT
        print(f"{stage:6} {r1['rows_per_s']:>14,.0f} {r4['rows_per_s']:>14,.0f} "
              f"{r1['peak_rss_mb']:>13.0f} {r4['peak_rss_mb']:>13.0f} {ratio:>6.2f}"
              f"{'' if ratio <= RSS_LIMIT else '  > ' + str(RSS_LIMIT) + ' FAIL'}")
    rows = cost_model(results, encoders)
    md = write_tables(out, rows)
    (out / "bench_scale.json").write_text(json.dumps(
        {"rows_per_part": a.rows, "parts": counts, "results": results, "encoders": encoders,
         "rss_ratio": ratios, "rss_limit": RSS_LIMIT, "ok": bool(ok), "anchors": ANCHORS,
         "cpu_count": os.cpu_count(), "encoder": HashingEncoder.name}, indent=2))
    print("\ncost model of the real run (LAION-400M), also in", out / "cost_model.md")
    print(md)
    print(f"OK: peak RSS({hi} parts) <= {RSS_LIMIT} x peak RSS({lo} part) for every stage"
          if ok else "FAIL: a stage's peak RSS grew with the number of parts")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
