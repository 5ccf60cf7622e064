"""A smoke run of benchmarks/bench_scale.py's pieces (not the benchmark: CI never runs that):
LAION-schema parts resampled from the real captions, stages 01 and 02 on 1 and 2 parts, the
cost-model table. In one process, with a handful of classes, so it takes seconds."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_scale", ROOT / "benchmarks" / "bench_scale.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_bench_scale_smoke(bench, reference, tmp_path):
    reference("img2dataset", "test_10000.parquet")
    parts = bench.write_parts(tmp_path / "parts", 2, 2000)
    t = pq.read_table(parts[1])
    assert t.num_rows == 2000 and t.schema.names[:3] == ["SAMPLE_ID", "URL", "TEXT"]
    assert bench.write_parts(tmp_path / "parts", 2, 2000) == parts  # reused, not rewritten
    classes = tmp_path / "classes.json"
    pairs = [["dog", "n02084071"], ["cat", "n02121808"], ["car", "n02958343"],
             ["shirt", "n04197391"], ["table", "n04379243"]]
    classes.write_text(json.dumps({
        "pairs": pairs, "wnid": [w for _, w in pairs], "head": [lem for lem, _ in pairs],
        "name_def": [f"{lem} which is a {lem}" for lem, _ in pairs]}))
    results = []
    for n in (1, 2):
        for stage in ("01", "02"):
            r = bench.run_stage(stage, parts[:n], tmp_path / f"work-{n}", classes)
            assert r["rows"] == 2000 * n and r["peak_rss_mb"] > 0 and r["disk_bytes"] > 0
            results.append(r)
    m1, c1, m2, c2 = results
    assert 0 < m1["n_matches"] < m2["n_matches"]          # real captions name these lemmas
    assert 0 < c1["n_candidates"] < c2["n_candidates"] <= m2["n_matched_rows"]
    rows = bench.cost_model(results, [{"name": "x", "captions_per_cpu_s": 100.0, "threads": 1,
                                       "captions_per_s": 50.0, "peak_rss_mb": 10.0,
                                       "flops_per_caption": 3e9}])
    md = bench.write_tables(tmp_path, rows)
    assert "01 synset matching" in md and "02 caption filtering" in md and "total" in md
    assert (tmp_path / "cost_model.csv").is_file()
    total = rows[-1]
    assert total["wall_h"] > 0 and total["disk_gb"] > 0
