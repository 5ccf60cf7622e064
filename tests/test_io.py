"""Atomic writes leave either the old file or the complete new one, never a partial file."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from laionet.util.files import atomic_path, read_json, write_json, write_parquet


def test_numpy_save_through_atomic_path_lands_in_place(tmp_path):
    dest = tmp_path / "emb.npy"
    with atomic_path(dest, suffix=".npy") as tmp:
        np.save(tmp, np.arange(5))
    assert np.array_equal(np.load(dest), np.arange(5))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["emb.npy"]


def test_failed_write_keeps_the_old_file_and_no_temp(tmp_path):
    dest = write_json({"v": 1}, tmp_path / "m.json")
    with pytest.raises(RuntimeError):
        with atomic_path(dest) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash mid-write")
    assert read_json(dest) == {"v": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json"]


def test_write_parquet_accepts_pandas(tmp_path):
    dest = write_parquet(pd.DataFrame({"a": [1, 2]}), tmp_path / "t.parquet")
    assert pd.read_parquet(dest)["a"].tolist() == [1, 2]


def test_read_part_names_the_file_and_the_whole_cause(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from laionet.sources.laion import PartError, read_part

    path = tmp_path / "part-00000-x.parquet"
    pq.write_table(pa.table({"TEXT": [f"caption {i}" for i in range(50)]}), path, compression="none")
    assert read_part(path, ["TEXT"]).num_rows == 50
    data = bytearray(path.read_bytes())
    data[4:40] = b"\xff" * 36  # the first page header
    path.write_bytes(bytes(data))
    with pytest.raises(PartError, match=r"(?s)part-00000-x\.parquet: cannot read \['TEXT'\].*"
                                        r"Deserializing page header failed"):
        read_part(path, ["TEXT"])


def test_rewriting_the_same_table_keeps_the_file_and_its_mtime(tmp_path):
    """Stage 02 rerun with nothing changed must not touch laionet.parquet: a large file is
    fingerprinted by size and mtime, so a rewrite would make stages 03-05 redo their work."""
    import os

    df = pd.DataFrame({"key": [3, 1, 2], "wnid": ["a", "b", "c"]})
    dest = write_parquet(df, tmp_path / "laionet.parquet")
    os.utime(dest, ns=(1_000_000_000, 1_000_000_000))
    write_parquet(df.copy(), dest)
    assert dest.stat().st_mtime_ns == 1_000_000_000
    write_parquet(df.iloc[:2], dest)
    assert dest.stat().st_mtime_ns != 1_000_000_000 and len(pd.read_parquet(dest)) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["laionet.parquet"]


def test_write_json_is_strict_json(tmp_path):
    """NaN and infinities (an empty comparison's means) are written as null: Python's json would
    write NaN / Infinity, which browsers, jq and strict readers refuse."""
    path = write_json({"mean": float("nan"), "x": [np.float32(0.5), np.inf], "n": np.int64(3)},
                      tmp_path / "s.json")

    def refuse(token):
        raise ValueError(token)

    import json

    assert json.loads(path.read_text(), parse_constant=refuse) == {"mean": None, "x": [0.5, None],
                                                                    "n": 3}
