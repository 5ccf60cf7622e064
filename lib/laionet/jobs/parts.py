"""The generic part mapper: one task per LAION part, through any ``concurrent.futures.Executor``.

A local process pool by default; ``distributed.Client(...).get_executor()`` for a Dask cluster,
unchanged. Parts are numbered by ``laionet.sources.laion.part_numbers`` (``part-NNNNN`` in the
file name). A part is done when its ``Marker`` ``done/part-%05d.json`` holds the fingerprint of
the task's parameters and of the input file (and of the other files the part depends on); it is
written after the task's own outputs. Stage 01's task is ``laionet.jobs.match_parts``.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from laionet.sources.laion import PartError, part_numbers
from laionet.util.files import read_json
from laionet.util.fingerprint import Marker, file_fingerprint
from laionet.util.fingerprint import fingerprint as fingerprint_of

__all__ = ["MapResult", "PartError", "done_stats", "map_parts", "part_file", "part_numbers"]


def part_file(out_dir: str | os.PathLike, kind: str, part: int, ext: str = "parquet") -> Path:
    return Path(out_dir) / kind / f"part-{part:05d}.{ext}"


@dataclass
class MapResult:
    """What ``map_parts`` did: stats per finished part, skipped (resumed) parts, failures."""

    done: dict[int, dict[str, Any]] = field(default_factory=dict)
    skipped: list[int] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # part path -> error message
    tracebacks: dict[str, str] = field(default_factory=dict)  # part path -> worker traceback

    def raise_for_failures(self) -> None:
        """One PartError listing every failed part with its whole message (a pyarrow message
        can span lines: its last line alone may be a lone ")")."""
        if self.failed:
            lines = "\n".join(f"  {p}: " + msg.strip().replace("\n", "\n    ")
                              for p, msg in self.failed.items())
            raise PartError(f"{len(self.failed)} part(s) failed (finished parts are kept; rerun "
                            f"to resume):\n{lines}")


def _call(fn: Callable[..., dict], path: Path, part: int) -> dict:
    """Run one task; errors come back as text with the part's path (picklable everywhere)."""
    try:
        return {"ok": True, "stats": fn(path, part=part)}
    except Exception as exc:  # noqa: BLE001 - reported with the path, never swallowed
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}",
                "traceback": traceback.format_exc()}


def _result(f: cf.Future) -> dict:
    try:
        return f.result()
    except Exception as exc:  # noqa: BLE001 - a worker that died, a pickling error ...
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}


def map_parts(fn: Callable[..., dict], parts: Sequence[str | os.PathLike],
              out_dir: str | os.PathLike, executor: cf.Executor | None = None,
              desc: str = "parts", n_workers: int = 2, fingerprint: str = "",
              on_error: str = "raise",
              part_inputs: Callable[[int], Sequence[Path]] | None = None) -> MapResult:
    """Run ``fn(path, part=n) -> stats dict`` once per part that is not done yet.

    executor: any Executor (the caller owns it). None: a process pool of ``n_workers``
        (forkserver: no fork of a process running Arrow threads), or inline when n_workers <= 1.
    fingerprint: of the parameters that change a part's outputs (never the worker count).
    on_error: "raise" (after every other part finished) or "skip" (failures in the result).
    part_inputs: part number -> other files its output depends on (stage 02: stage 01's tables
        of the part); a changed one redoes the part.
    """
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be raise or skip, not {on_error!r}")
    nums = part_numbers(parts)
    def key(path: Path, part: int) -> str:
        extra = part_inputs(part) if part_inputs else ()
        return fingerprint_of([fingerprint, file_fingerprint(path), *(
            file_fingerprint(p) if Path(p).exists() else "missing" for p in extra)])

    markers = {part: Marker(part_file(out_dir, "done", part, "json"), key(path, part))
               for path, part in nums.items()}
    result = MapResult(skipped=[part for part in nums.values() if markers[part].current()])
    todo = [(path, part) for path, part in nums.items() if part not in result.skipped]
    own = executor is None and n_workers > 1 and len(todo) > 1
    if own:
        executor = cf.ProcessPoolExecutor(min(n_workers, len(todo)),
                                          mp_context=multiprocessing.get_context("forkserver"))
    bar = tqdm(total=len(nums), initial=len(result.skipped), desc=desc, unit="part")
    try:
        if executor is None:
            outcomes = ((path, part, _call(fn, path, part)) for path, part in todo)
        else:
            futures = {executor.submit(_call, fn, path, part): (path, part) for path, part in todo}
            outcomes = ((*futures[f], _result(f)) for f in cf.as_completed(futures))
        for path, part, out in outcomes:
            if out["ok"]:
                result.done[part] = dict(out["stats"] or {}, part=part, path=str(path))
                markers[part].done(stats=result.done[part])
            else:
                result.failed[str(path)] = out["error"]
                result.tracebacks[str(path)] = out.get("traceback", "")
            bar.update(1)
    finally:
        bar.close()
        if own:
            executor.shutdown()
    if on_error == "raise":
        result.raise_for_failures()
    return result


def done_stats(out_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """The stats of every finished part (from the markers), sorted by part."""
    return [read_json(f)["stats"] for f in sorted((Path(out_dir) / "done").glob("part-*.json"))]
