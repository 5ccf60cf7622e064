"""Atomic writes (a reader never sees a half-written file) and reading LAION parts.

Every writer goes to a temporary file in the destination folder and is renamed into place
(rename is atomic on POSIX within one file system). A process killed between the two leaves
its temporary file (``.<name>.<random>.tmp[suffix]``): ``remove_stale_temp_files`` clears a
folder of them before a stage starts again. ``read_part`` reads columns of a LAION part and
turns any reading error into a ``PartError`` naming the file with the full cause.
"""

import contextlib
import json
import math
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

TEMP_GLOB = ".*.tmp*"  # the names ``atomic_path`` gives its temporary files


def remove_stale_temp_files(folder: str | os.PathLike) -> list[Path]:
    """Remove the temporary files ``atomic_path`` left under ``folder`` when its process was
    killed between writing and renaming (never a finished file). Call it only while no writer
    runs there (the runner does, before a stage starts). Returns what was removed."""
    removed = []
    root = Path(folder)
    if not root.is_dir():
        return removed
    for p in sorted(root.rglob(TEMP_GLOB)):
        if p.is_file() and not p.is_symlink():
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
                removed.append(p)
    return removed


def same_bytes(a: str | os.PathLike, b: str | os.PathLike, chunk: int = 1 << 20) -> bool:
    """True when both files exist and hold the same bytes (compared chunk by chunk)."""
    try:
        if os.path.getsize(a) != os.path.getsize(b):
            return False
        with open(a, "rb") as fa, open(b, "rb") as fb:
            while True:
                x, y = fa.read(chunk), fb.read(chunk)
                if x != y:
                    return False
                if not x:
                    return True
    except OSError:
        return False


@contextlib.contextmanager
def atomic_path(dest: str | os.PathLike, suffix: str = "", keep_same: bool = False) -> Iterator[Path]:
    """Yield a temporary path next to ``dest``; on success rename it onto ``dest``.

    On an exception the temporary file is removed and ``dest`` is left untouched.
    The temporary name ends with ``suffix`` (e.g. ".npy"), so writers that append their own
    extension when it is missing (``numpy.save``) write to exactly this path.
    keep_same: when ``dest`` already holds exactly the new bytes, keep it (and its modification
    time, which fingerprints of large files use), so a rerun that makes the same table does not
    make downstream stages redo their work.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp" + suffix, dir=dest.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if keep_same and same_bytes(tmp_path, dest):
            tmp_path.unlink()
        else:
            os.replace(tmp_path, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def write_parquet(table: pa.Table | Any, dest: str | os.PathLike, **kwargs: Any) -> Path:
    """Write a pyarrow Table or pandas DataFrame to ``dest`` atomically; a file already holding
    exactly these bytes is kept as it is (its modification time too)."""
    if not isinstance(table, pa.Table):
        table = pa.Table.from_pandas(table, preserve_index=False)
    with atomic_path(dest, keep_same=True) as tmp:  # the same table: the file is left alone
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


def _strict(obj: Any) -> Any:
    """``obj`` with NaN and infinities as None: json.dumps would write them as NaN/Infinity,
    which is not JSON (browsers, jq and most readers refuse the file)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _strict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_strict(v) for v in obj]
    if hasattr(obj, "item") and getattr(obj, "ndim", None) == 0:  # numpy scalars
        return _strict(obj.item())
    return obj


def write_json(obj: Any, dest: str | os.PathLike) -> Path:
    """Strict JSON (NaN and infinities written as null), keys sorted, atomically."""
    with atomic_path(dest) as tmp:
        tmp.write_text(json.dumps(_strict(obj), indent=2, sort_keys=True, default=str) + "\n")
    return Path(dest)


def write_text(text: str, dest: str | os.PathLike) -> Path:
    with atomic_path(dest) as tmp:
        tmp.write_text(text)
    return Path(dest)


def read_json(path: str | os.PathLike) -> Any:
    return json.loads(Path(path).read_text())


