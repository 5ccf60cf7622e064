"""Per-part processing: the part rule and row keys, stage 01's task (outputs, summary), the
generic mapper (resume, atomicity, bad input, any executor including Dask)."""

from __future__ import annotations

import concurrent.futures as cf
import functools

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from laionet.jobs import match_parts
from laionet.jobs import parts as shards
from laionet.method.matching import match_naive
from laionet.sources import laion as keys

PAIRS = [("lion", "n02129165"), ("sea lion", "n02077923"), ("pizza", "n07873807"),
         ("pizza pie", "n07873807"), ("tiger", "n02129604"), ("tiger cat", "n02123159")]
TABLE_WNIDS = ["n02129165", "n02077923", "n07873807", "n02129604", "n02123159", "n03126707"]
CAPTIONS = ["a lion", "a sea lion", None, "pizza pie", "tiger cat and tiger", "nothing", "",
            "Lion", "lion, pizza"]


def _write_part(folder, number, texts, **extra):
    n = len(texts)
    cols = {"SAMPLE_ID": pa.array(np.arange(n, dtype=np.float64)), "URL": pa.array(["u"] * n),
            "TEXT": pa.array(texts, pa.string()), "NSFW": pa.array(["UNLIKELY"] * n), **extra}
    path = folder / f"part-{number:05d}-5b54c5d5-bbcf-484d-a2ce-0d6f73df1a36-c000.snappy.parquet"
    pq.write_table(pa.table(cols), path, row_group_size=4)
    return path


def _task(out):
    return functools.partial(match_parts.match_part, lemma_pairs=PAIRS, mode="paper", out_dir=str(out),
                             batch_size=3)


@pytest.fixture
def parts(tmp_path):
    src = tmp_path / "laion"
    src.mkdir()
    return [_write_part(src, 0, CAPTIONS), _write_part(src, 7, CAPTIONS[::-1]),
            _write_part(src, 3, [])]


def test_match_part_outputs_equal_the_naive_loop(parts, tmp_path):
    out = tmp_path / "out"
    stats = match_parts.match_part(parts[1], PAIRS, "paper", out, batch_size=2)
    m = pq.read_table(shards.part_file(out, "matches", 7))
    assert m.schema == match_parts.MATCHES_SCHEMA
    rows, lids = match_naive(CAPTIONS[::-1], [lem for lem, _ in PAIRS])
    assert m["row"].to_pylist() == rows.tolist()
    assert m["lemma"].to_pylist() == [PAIRS[j][0] for j in lids]
    assert m["wnid"].to_pylist() == [PAIRS[j][1] for j in lids]
    assert m["key"].to_pylist() == [7 * keys.KEY_STRIDE + r for r in rows]
    r = pq.read_table(shards.part_file(out, "rows", 7)).to_pylist()
    by_row = {x["row"]: x for x in r}
    tiger_row = CAPTIONS[::-1].index("tiger cat and tiger")
    assert by_row[tiger_row]["wnids"] == ["n02123159", "n02129604"]  # sorted unique
    assert by_row[tiger_row]["n_classes"] == 2 and by_row[tiger_row]["multi_label"]
    assert stats == {**stats, "n_rows": 9, "n_null": 1, "n_matched_rows": len(r),
                     "n_matches": len(rows), "n_multi_label": sum(x["multi_label"] for x in r)}


def test_empty_part_gives_empty_tables(parts, tmp_path):
    stats = match_parts.match_part(parts[2], PAIRS, "paper", tmp_path / "o")
    assert stats["n_rows"] == 0
    for kind, schema in (("matches", match_parts.MATCHES_SCHEMA), ("rows", match_parts.ROWS_SCHEMA)):
        t = pq.read_table(shards.part_file(tmp_path / "o", kind, 3))
        assert t.num_rows == 0 and t.schema == schema


def test_map_parts_resume_and_summary(parts, tmp_path):
    out = tmp_path / "out"
    first = shards.map_parts(_task(out), parts, out, n_workers=1, fingerprint="a")
    assert sorted(first.done) == [0, 3, 7] and not first.skipped
    again = shards.map_parts(_task(out), parts, out, n_workers=1, fingerprint="a")
    assert sorted(again.skipped) == [0, 3, 7] and not again.done
    changed = shards.map_parts(_task(out), parts, out, n_workers=1, fingerprint="b")
    assert sorted(changed.done) == [0, 3, 7]  # other parameters: redone, not reused
    pq.write_table(pq.read_table(parts[0]), parts[0], row_group_size=2)  # a changed part is redone
    assert sorted(shards.map_parts(_task(out), parts, out, n_workers=1,
                                   fingerprint="b").done) == [0]

    import pandas as pd
    table = pd.DataFrame({"wnid": TABLE_WNIDS, "head": TABLE_WNIDS})
    cc, lemmas, summary = match_parts.summarize_matches(out, table, PAIRS)
    counts = cc.set_index("wnid")
    # "a lion", "a sea lion" (nested), "lion, pizza" in each of two parts
    assert counts.loc["n02129165", "n_rows"] == 6
    assert counts.loc["n02129165", "n_single_label"] == 2  # only "a lion" is single-label
    assert counts.loc["n03126707", "status"] == "no unique lemma"
    assert summary["n_rows"] == 18 and summary["n_null_captions"] == 2
    assert summary["unreachable"] == {"no unique lemma": ["n03126707"]}
    assert (out / "summary.json").is_file() and (out / "class_counts.parquet").is_file()
    assert lemmas.set_index("lemma").loc["sea lion", "n_rows"] == 2


def test_bad_parts_are_reported_with_their_path(parts, tmp_path):
    src = parts[0].parent
    broken = src / "part-00011-broken.parquet"
    broken.write_bytes(b"not parquet")
    no_text = src / "part-00012-x.parquet"
    pq.write_table(pa.table({"CAPTION": ["lion"]}), no_text)
    ints = src / "part-00013-x.parquet"
    pq.write_table(pa.table({"TEXT": [1, 2]}), ints)
    out = tmp_path / "out"
    res = shards.map_parts(_task(out), [*parts, broken, no_text, ints], out, n_workers=1,
                           on_error="skip")
    assert sorted(res.done) == [0, 3, 7]  # good parts are kept
    assert "not a readable parquet" in res.failed[str(broken)]
    assert "no TEXT column (columns: ['CAPTION'])" in res.failed[str(no_text)]
    assert "column TEXT has type int64" in res.failed[str(ints)]
    assert not shards.part_file(out, "done", 11, "json").exists()
    with pytest.raises(shards.PartError, match="part-00011-broken.parquet"):
        shards.map_parts(_task(out), [*parts, broken], out, n_workers=1)


def test_writes_are_atomic(parts, tmp_path, monkeypatch):
    out = tmp_path / "out"
    match_parts.match_part(parts[0], PAIRS, "paper", out)
    before = shards.part_file(out, "rows", 0).read_bytes()

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(pq.ParquetWriter, "write_table", crash)  # the tables stream batch by batch
    res = shards.map_parts(_task(out), [parts[0]], out, n_workers=1, on_error="skip")
    assert "disk full" in res.failed[str(parts[0])]
    assert shards.part_file(out, "rows", 0).read_bytes() == before  # old output untouched
    assert not [p for p in out.rglob("*") if p.name.startswith(".")]  # no temp files left
    assert not shards.part_file(out, "done", 0, "json").exists()


def test_one_part_rule_and_key_scheme(tmp_path):
    assert keys.part_number("a/part-00004-q.parquet") == 4
    with pytest.raises(ValueError, match=r"x\.parquet: a LAION part file must be named part-NNNNN"):
        keys.part_number("b/x.parquet")  # no file position fallback: keys are built from it
    assert shards.part_numbers(["b/part-00002-y.parquet", "a/part-00004-q.parquet"]) == {
        shards.Path("a/part-00004-q.parquet"): 4, shards.Path("b/part-00002-y.parquet"): 2}
    with pytest.raises(ValueError, match="both have part number 1"):
        shards.part_numbers(["part-00001-a.parquet", "part-00001-b.parquet"])
    with pytest.raises(ValueError, match="y.parquet: a LAION part file"):  # before any part runs
        shards.map_parts(lambda p, part: {}, ["part-00001-a.parquet", "y.parquet"], tmp_path)
    assert keys.row_key(7, 3) == 7 * keys.KEY_STRIDE + 3
    k = keys.row_key(np.array([0, 7]), np.array([5, 2_999_999]))
    assert k.dtype == np.int64 and keys.split_key(k)[0].tolist() == [0, 7]
    assert keys.split_key(k)[1].tolist() == [5, 2_999_999] and keys.split_key(int(k[1])) == (7, 2_999_999)


def test_match_all_resumes_and_redoes_on_other_lemmas(parts, tmp_path):
    out = tmp_path / "out"
    first = match_parts.match_all(parts, PAIRS, out, n_workers=1, batch_size=3)
    assert sorted(first.done) == [0, 3, 7]
    assert sorted(match_parts.match_all(parts, PAIRS, out, n_workers=1).skipped) == [0, 3, 7]
    assert sorted(match_parts.match_all(parts, PAIRS[:2], out, n_workers=1).done) == [0, 3, 7]
    assert sorted(match_parts.match_all(parts, PAIRS[:2], out, n_workers=1,
                                        mode="normalized").done) == [0, 3, 7]
    n = match_parts.classes_per_caption(out)  # lion, sea lion; normalized: "Lion" matches too
    assert n.to_dict() == {1: 6, 2: 2}  # "a lion", "Lion", "lion, pizza" / "a sea lion", 2 parts
    cc, _, _ = match_parts.summarize_matches(out, _class_table(), PAIRS[:2], write=False)
    bad = match_parts.unreachable_classes(cc)
    assert bad["status"].tolist() == ["no unique lemma"] * 4 and bad["wnid"].is_monotonic_increasing


def _class_table():
    import pandas as pd
    return pd.DataFrame({"wnid": TABLE_WNIDS, "head": TABLE_WNIDS})


def test_any_executor_process_pool_and_dask(parts, tmp_path):
    distributed = pytest.importorskip("distributed")
    out_pool, out_dask = tmp_path / "pool", tmp_path / "dask"
    with cf.ThreadPoolExecutor(2) as ex:
        shards.map_parts(_task(tmp_path / "threads"), parts, tmp_path / "threads", executor=ex)
    shards.map_parts(_task(out_pool), parts, out_pool, n_workers=2)  # own process pool
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        res = shards.map_parts(_task(out_dask), parts, out_dask, executor=client.get_executor())
    assert sorted(res.done) == [0, 3, 7]
    for kind in ("matches", "rows"):
        for part in (0, 3, 7):
            tables = [pq.read_table(shards.part_file(o, kind, part))
                      for o in (out_pool, out_dask, tmp_path / "threads")]
            assert tables[0].equals(tables[1]) and tables[0].equals(tables[2])


def test_stage_01_figures(parts, tmp_path):
    import matplotlib.pyplot as plt

    from laionet.plots import matching as matching_plots

    out = tmp_path / "out"
    match_parts.match_all(parts, PAIRS, out, n_workers=1)
    cc, lemmas, summary = match_parts.summarize_matches(out, _class_table(), PAIRS, write=False)
    fig = matching_plots.class_coverage(cc)
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["no unique lemma", "matched"]
    fig = matching_plots.matches_per_class(cc)
    assert fig.axes[0].get_lines()[0].get_ydata().tolist()[0] == cc["n_rows"].max()
    fig = matching_plots.lemma_counts(lemmas, top=3)
    assert len(fig.axes[0].patches) == 3
    per_caption = match_parts.classes_per_caption(out)
    fig = matching_plots.multi_label(summary["multi_label_share"], per_caption)
    assert [p.get_height() for p in fig.axes[1].patches] == per_caption.tolist()
    plt.close("all")


def _corrupt_page_header(path):
    """Overwrite the first page header after the magic bytes: pyarrow's message for it spans
    two lines ("Couldn't deserialize thrift: ...\\nDeserializing page header failed.\\n")."""
    data = bytearray(path.read_bytes())
    data[4:40] = b"\xff" * 36
    path.write_bytes(bytes(data))
    return path


def test_a_part_with_corrupt_pages_reports_the_whole_cause(tmp_path):
    """The failure names the file and carries pyarrow's whole message, not its last line ")"."""
    src = tmp_path / "laion"
    src.mkdir()
    bad = src / "part-00005-x.parquet"  # TEXT first: its page header right after the magic
    pq.write_table(pa.table({"TEXT": [f"a lion number {i}" for i in range(50)]}), bad,
                   compression="none")
    _corrupt_page_header(bad)
    out = tmp_path / "out"
    with pytest.raises(shards.PartError) as err:
        shards.map_parts(_task(out), [bad], out, n_workers=1)
    text = str(err.value)
    assert str(bad) in text and "reading TEXT failed after 0 rows" in text, text
    assert "Couldn't deserialize thrift" in text and "Deserializing page header failed" in text
    assert not text.rstrip().endswith(": )"), text
