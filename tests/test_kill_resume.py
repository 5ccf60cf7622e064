"""A SIGKILL in the middle of stage 04's and stage 09's work loses nothing and redoes nothing
(issue 11: per-shard results of 04, per-part caption index of 09).

Real processes: the runner (``python -m laionet.pipeline.runner run --only 04`` / ``--only 09``) in a
session of its own, killed with SIGKILL of its process group once some but not all of the
stage's per-shard / per-part outputs exist; the rerun must finish with outputs identical to an
uninterrupted run's, no (image, model) row missing or twice, and no finished output rewritten.
The helpers (``Run``) are test_kill's. Each scenario runs in scratch projects of its own (the
caption index is a per-project cache): a tiny demo world without trained models, a LAIONet table
of 60 world rows downloaded from the world's loopback host, timm resnet10t checkpoints of fixed
seeds as classifiers and image encoder.
"""

from __future__ import annotations

import json
import signal
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import test_kill
from test_kill import Run

ROOT = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs /proc")]
N_ROWS = 60
RUN_LIMIT_S = 600  # a runner run here (test_kill's limit is for its own, shorter runs)


@pytest.fixture(autouse=True)
def _longer_runs(monkeypatch):
    monkeypatch.setattr(test_kill, "RUN_LIMIT_S", RUN_LIMIT_S)


def _project(base: Path, name: str, world_src: Path | None = None) -> Path:
    scratch = base / name
    scratch.mkdir()
    for n in ("notebooks", "profiles", "pyproject.toml"):
        (scratch / n).symlink_to(ROOT / n)
    if world_src is not None:  # the same world, shared read-only
        (scratch / "runs" / "tiny").mkdir(parents=True)
        (scratch / "runs" / "tiny" / "00_demo_world").symlink_to(world_src)
    return scratch


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """The world (in project "a"), the downloaded LAIONet table, checkpoints and a model list."""
    import timm
    import torch

    from laionet.demo import build_world
    from laionet.jobs import download as dl
    from laionet.sources.laion import row_key

    base = tmp_path_factory.mktemp("kill_resume")
    a = _project(base, "a")
    world = build_world(a / "runs" / "tiny" / "00_demo_world" / "world", "tiny", 0,
                        train_models=False)
    wnids = world.classes_txt.read_text().split()
    part0 = sorted(world.laion.glob("part-*.parquet"))[0]
    urls = pd.read_parquet(part0, columns=["URL"])["URL"].head(N_ROWS)
    from laionet.sources.laion import part_number
    table = pd.DataFrame({"key": row_key(part_number(part0), np.arange(N_ROWS)),
                          "wnid": [wnids[i % len(wnids)] for i in range(N_ROWS)], "URL": urls})
    table_path = base / "laionet.parquet"
    table.to_parquet(table_path)
    download = base / "download"
    dl.download_laionet(table, download, serve_root=world.http, processes_count=1,
                        thread_count=4, number_sample_per_shard=10, resize_only_if_bigger=True)
    models = base / "models"  # a demo-style model folder: <arch>.pth, .wnids.txt, .json (64 px)
    models.mkdir()
    for seed, arch in enumerate(("resnet10t", "mobilenetv3_small_050")):
        torch.manual_seed(seed)
        torch.save(timm.create_model(arch, num_classes=len(wnids)).state_dict(),
                   models / f"{arch}.pth")
        (models / f"{arch}.wnids.txt").write_text("\n".join(wnids) + "\n")
        (models / f"{arch}.json").write_text(json.dumps(
            {"name": f"{arch}-{seed}", "group": "demo", "input_size": [3, 64, 64],
             "mean": [0.5] * 3, "std": [0.25] * 3, "crop_pct": 1.0}))
    torch.manual_seed(2)
    enc = base / "encoder.pth"
    torch.save(timm.create_model("mobilenetv3_small_050", num_classes=0).state_dict(), enc)
    return {"base": base, "a": a, "world": a / "runs" / "tiny" / "00_demo_world",
            "laionet": table_path, "download": download, "classifiers": f"demo:{models}",
            "encoder": f"timm:mobilenetv3_small_050:{enc}"}


def _runner(project: Path, stage: str, params: dict, log: str) -> Run:
    args = [sys.executable, "-m", "laionet.pipeline.runner", "run", "--profile", "tiny", "--only", stage]
    for k, v in params.items():
        args += ["-p", f"{stage}.{k}", str(v)]
    return Run(project, project / f"{log}.log", args)


def _finish(run: Run) -> None:
    try:
        assert run.wait() == 0, run.output()
    finally:
        run.close()


def _kill_when(run: Run, outputs, low: int, high: int) -> list[Path]:
    """SIGKILL the runner's group once ``low`` <= outputs() < ``high``; the outputs seen then."""
    while time.monotonic() - run.t0 < RUN_LIMIT_S:
        seen = outputs()
        if len(seen) >= low:
            run.signal_group(signal.SIGKILL)
            assert len(seen) < high, f"the stage was done before the kill: {len(seen)} outputs"
            run.wait()
            return seen
        assert run.proc.poll() is None, f"the runner ended early:\n{run.output()}"
        time.sleep(0.02)
    raise AssertionError(f"no {low} outputs after {RUN_LIMIT_S}s:\n{run.output()}")


def _stamps(files) -> dict[Path, int]:
    return {f: f.stat().st_mtime_ns for f in files}


def test_stage_04_killed_mid_shards_resumes_to_the_uninterrupted_results(inputs):
    from laionet.jobs.evaluation import PARTS, RESULT_FILES

    project = _project(inputs["base"], "e04", inputs["world"])
    params = {"classifiers": inputs["classifiers"], "download_dir": inputs["download"],
              "laionet_path": inputs["laionet"], "val_shard_size": 6, "batch_size": 4,
              "max_models": 1, "n_workers": 2,
              "drop_recognised_text": False}  # download_laionet alone runs no OCR (stage 03 does)

    def out(name):
        return dict(params, out_dir=project / "runs" / name, figures_dir=project / "fig" / name)

    _finish(_runner(project, "04", out("whole"), "whole"))
    parts = project / "runs" / "killed" / PARTS
    n_files = len(list((project / "runs" / "whole" / PARTS).rglob("*/*/*.parquet")))
    assert n_files == 2 * (6 + 1 + 10)  # 2 models x (6 LAIONet tars + missing + 10 val shards)
    run = _runner(project, "04", out("killed"), "killed")
    try:
        seen = _kill_when(run, lambda: [f for f in parts.rglob("*/*/*.parquet")
                                        if "models" not in f.parts], 3, n_files)
    finally:
        run.close()
    before = _stamps(seen)
    print(f"stage 04 killed with {len(seen)} of {n_files} (model, shard) results")
    _finish(_runner(project, "04", out("killed"), "resumed"))
    assert _stamps(before) == before  # a finished (model, shard) is never recomputed
    for name in RESULT_FILES.values():
        whole = pd.read_parquet(project / "runs" / "whole" / name)
        got = pd.read_parquet(project / "runs" / "killed" / name)
        assert not got.duplicated(["image_key", "model"]).any()
        pd.testing.assert_frame_equal(got, whole)
    assert len(pd.read_parquet(project / "runs" / "killed" / RESULT_FILES["LAIONet"])) == 2 * N_ROWS


def test_stage_09_killed_mid_index_resumes_to_the_uninterrupted_retrieval(inputs):
    params = {"laionet_path": inputs["laionet"], "download_dir": inputs["download"],
              "image_encoder": inputs["encoder"], "n_per_class": 4, "chunk_rows": 50,
              "batch_size": 16, "download_processes": 1}

    def out(project, name):
        return dict(params, out_dir=project / "runs" / name, figures_dir=project / "fig" / name)

    whole = _project(inputs["base"], "r09a", inputs["world"])
    _finish(_runner(whole, "09", out(whole, "whole"), "whole"))
    project = _project(inputs["base"], "r09b", inputs["world"])  # its own caches: a fresh index
    index = project / "runs" / "tiny" / "cache" / "caption_index"
    run = _runner(project, "09", out(project, "killed"), "killed")
    try:
        seen = _kill_when(run, lambda: sorted(index.rglob("part-*.json")), 1, 2)
    finally:
        run.close()
    done = _stamps(f.with_suffix(".faiss") for f in seen)
    print(f"stage 09 killed with {len(seen)} of 2 parts indexed")
    _finish(_runner(project, "09", out(project, "killed"), "resumed"))
    assert _stamps(done) == done  # the finished part's index file is not rewritten
    got = pd.read_parquet(project / "runs" / "killed" / "retrieved.parquet")
    ref = pd.read_parquet(whole / "runs" / "whole" / "retrieved.parquet")
    assert not got.duplicated(["image_key", "key"]).any()
    pd.testing.assert_frame_equal(got, ref)
    markers = {f.name: f.read_text() for f in index.rglob("part-*.json")}
    ref_markers = {f.name: f.read_text() for f in
                   (whole / "runs" / "tiny" / "cache" / "caption_index").rglob("part-*.json")}
    assert markers == ref_markers and len(markers) == 2
