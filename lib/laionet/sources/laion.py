"""LAION parts: their numbers, row keys, and reading their columns.

A LAION-400M part is named ``part-NNNNN-<uuid>-c000.snappy.parquet``; its number is ``NNNNN``. A
caption is identified across the dataset by its row key, the authors' global index ``key = part *
KEY_STRIDE + row`` (``row``: the 0-based row inside its part). Every stage that reads parts (01,
02, 09) numbers them and builds or splits keys here, so a part stage 01 accepts is a part every
later stage accepts."""

import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from laionet.paper import KEY_STRIDE
from laionet.util.paths import project_root, resolve

_PART_RE = re.compile(r"part-(\d+)")


def part_number(path: str | os.PathLike) -> int:
    """The number of a LAION part from its file name (``part-00042-...parquet`` -> 42); a name
    without ``part-NNNNN`` is an error (row keys are built from it, never from list positions)."""
    m = _PART_RE.search(Path(path).name)
    if not m:
        raise ValueError(f"{path}: a LAION part file must be named part-NNNNN-...parquet (its "
                         "number NNNNN is the first half of every row key); rename the file")
    return int(m.group(1))


def part_numbers(paths: Iterable[str | os.PathLike]) -> dict[Path, int]:
    """Part number of each file (sorted by path); raises when a name has no number or when two
    files share one (their outputs and row keys would collide)."""
    nums: dict[Path, int] = {}
    seen: dict[int, Path] = {}  # number -> file
    for p in sorted(Path(p) for p in paths):
        n = part_number(p)
        if n in seen:
            raise ValueError(f"parts {seen[n]} and {p} both have part number {n}; "
                             "give them distinct part-NNNNN numbers")
        nums[p], seen[n] = n, p
    return nums


def row_key(part, row):
    """``part * KEY_STRIDE + row`` as int64 (scalars or numpy arrays, broadcast)."""
    key = np.asarray(part, dtype=np.int64) * KEY_STRIDE + np.asarray(row, dtype=np.int64)
    return int(key) if key.ndim == 0 else key


def split_key(key):
    """``(part, row)`` of row keys (scalars or numpy arrays): the inverse of ``row_key``."""
    k = np.asarray(key, dtype=np.int64)
    part, row = k // KEY_STRIDE, k % KEY_STRIDE
    return (int(part), int(row)) if k.ndim == 0 else (part, row)


def check_keys(rows: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    """(part, row) of a table of stage-01 rows, after checking its keys are ``row_key(part, row)``."""
    part, row, key = (rows[c].to_numpy() for c in ("part", "row", "key"))
    bad = np.flatnonzero(key != row_key(part, row))
    if len(bad):
        i = bad[0]
        raise ValueError(f"row key {key[i]} != part {part[i]} * {KEY_STRIDE} + row {row[i]}: "
                         "stage 01 keys are corrupt; rerun stage 01")
    return part, row


LAION_COLUMNS = ("TEXT", "URL", "NSFW", "HEIGHT", "WIDTH")


def part_files(laion_parts: str | Iterable[str | Path]) -> dict[int, Path]:
    """part number -> file, from a glob (relative to the project root) or a list of paths."""
    if isinstance(laion_parts, (str, Path)):
        pattern = str(laion_parts)
        base = project_root() if not Path(pattern).is_absolute() else Path("/")
        files = sorted(base.glob(pattern.lstrip("/")) if any(ch in pattern for ch in "*?[")
                       else [resolve(pattern)])
    else:
        files = [resolve(p) for p in laion_parts]
    out = {n: f for f, n in part_numbers(files).items()}
    if not out:
        raise FileNotFoundError(f"laion_parts {laion_parts!r} matches no file")
    return out


def join_laion_columns(rows: pa.Table, parts: dict[int, Path],
                       columns: Sequence[str] = LAION_COLUMNS) -> pa.Table:
    """Add LAION ``columns`` to ``rows`` (part, row, ...) by row position, one part at a time:
    only the needed columns are read, then ``take(row)``. Output keeps ``rows``' order."""
    if rows.num_rows == 0:
        empty = {c: pa.array([], pa.string() if c in ("TEXT", "URL", "NSFW") else pa.int64())
                 for c in columns}
        return pa.Table.from_pydict({**rows.to_pydict(), **empty})
    part, row = check_keys(rows)
    order = np.argsort(part, kind="stable")
    pieces, positions = [], []
    for p in np.unique(part):
        if int(p) not in parts:
            raise FileNotFoundError(f"part {int(p)} has matches but no LAION file among "
                                    f"laion_parts (have parts {sorted(parts)}); fix laion_parts")
        sel = order[np.searchsorted(part[order], p, "left"):np.searchsorted(part[order], p, "right")]
        table = read_part(parts[int(p)], columns=list(columns))
        too_far = row[sel] >= table.num_rows
        if too_far.any():
            raise IndexError(f"{parts[int(p)]}: row {int(row[sel][too_far][0])} is past its "
                             f"{table.num_rows} rows; stage 01 ran on another version of this part")
        pieces.append(table.take(pa.array(row[sel])))
        positions.append(sel)
    joined = pa.concat_tables(pieces).take(pa.array(np.argsort(np.concatenate(positions))))
    out = rows
    for c in columns:
        out = out.append_column(c, joined[c])
    return out


class PartError(RuntimeError):
    """A part that cannot be processed (unreadable, wrong schema); the message names the file."""


def read_part(path: str | os.PathLike, columns: list[str] | None = None) -> pa.Table:
    """``columns`` of a parquet part; a missing column or an unreadable file (truncated, corrupt
    pages) is a ``PartError`` with the file and pyarrow's whole message."""
    try:
        return pq.read_table(path, columns=columns)
    except (OSError, pa.ArrowException) as exc:
        raise PartError(f"{path}: cannot read {columns or 'the part'} ({type(exc).__name__}: "
                        f"{str(exc).strip()}); re-copy or remove the part") from exc
