"""LAION part numbers and row keys: the one rule for both.

A LAION-400M part is named ``part-NNNNN-<uuid>-c000.snappy.parquet``; its number is ``NNNNN``.
A caption is identified across the dataset by its row key, the authors' global index
``key = part * KEY_STRIDE + row`` (``row``: the 0-based row inside its part). Every stage that
reads parts (01, 02, 09) numbers them with ``part_number``/``part_numbers`` and builds or splits
keys with ``row_key``/``split_key``, so a part stage 01 accepts is a part every later stage accepts.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path

import numpy as np

KEY_STRIDE = 100_000_000  # rows per part the key leaves room for (a LAION part holds ~3M)
_PART_RE = re.compile(r"part-(\d+)")


def part_number(path: str | os.PathLike) -> int:
    """The number of a LAION part from its file name (``part-00042-...parquet`` -> 42).

    Raises ValueError naming the file when its name holds no ``part-NNNNN``: row keys are built
    from this number, so a file cannot be numbered by its position in a list.
    """
    m = _PART_RE.search(Path(path).name)
    if not m:
        raise ValueError(f"{path}: a LAION part file must be named part-NNNNN-...parquet (its "
                         "number NNNNN is the first half of every row key); rename the file")
    return int(m.group(1))


def part_numbers(paths: Iterable[str | os.PathLike]) -> dict[Path, int]:
    """Part number of each file (sorted by path); raises when a name has no number or when two
    files share one (their outputs and row keys would collide)."""
    nums: dict[Path, int] = {}
    seen: dict[int, Path] = {}
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
