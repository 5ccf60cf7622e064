"""Atomic writes: a reader never sees a half-written file.

Every writer goes to a temporary file in the destination folder and is renamed into place
(rename is atomic on POSIX within one file system).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

import pyarrow as pa
import pyarrow.parquet as pq


@contextlib.contextmanager
def atomic_path(dest: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path next to ``dest``; on success rename it onto ``dest``.

    On an exception the temporary file is removed and ``dest`` is left untouched.
    The temporary name ends with ``suffix`` (e.g. ".npy"), so writers that append their own
    extension when it is missing (``numpy.save``) write to exactly this path.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp" + suffix, dir=dest.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def write_parquet(table: pa.Table | Any, dest: str | os.PathLike, **kwargs: Any) -> Path:
    """Write a pyarrow Table or pandas DataFrame to ``dest`` atomically."""
    if not isinstance(table, pa.Table):
        table = pa.Table.from_pandas(table, preserve_index=False)
    with atomic_path(dest) as tmp:
        pq.write_table(table, tmp, **kwargs)
    return Path(dest)


@contextlib.contextmanager
def parquet_writer(dest: str | os.PathLike, schema: pa.Schema, **kwargs: Any
                   ) -> Iterator[pq.ParquetWriter]:
    """A ``pyarrow.parquet.ParquetWriter`` on a temp file beside ``dest``, renamed onto ``dest``
    when the block ends without an error (removed otherwise): a table streamed batch by batch
    (memory: one batch) that readers only ever see whole. An empty block writes an empty table."""
    with atomic_path(dest) as tmp:
        writer = pq.ParquetWriter(tmp, schema, **kwargs)
        try:
            yield writer
        finally:
            writer.close()


def write_json(obj: Any, dest: str | os.PathLike) -> Path:
    with atomic_path(dest) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")
    return Path(dest)


def write_text(text: str, dest: str | os.PathLike) -> Path:
    with atomic_path(dest) as tmp:
        tmp.write_text(text)
    return Path(dest)


def read_json(path: str | os.PathLike) -> Any:
    return json.loads(Path(path).read_text())
