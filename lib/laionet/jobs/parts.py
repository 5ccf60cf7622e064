"""The generic part mapper: one task per LAION part, through any ``concurrent.futures.Executor``
(a local process pool by default; ``distributed.Client(...).get_executor()`` for Dask). Parts are
numbered by ``laionet.sources.laion.part_numbers``. A part is done when its ``Marker``
``done/part-%05d.json``, written after the task's outputs, holds the fingerprint of the task's
parameters, of the input file and of the other files the part depends on.
"""

import concurrent.futures as cf
import multiprocessing
import os
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

    def raise_for_failures(self) -> None:
        """One PartError listing every failed part with its whole (maybe multi-line) message."""
        if self.failed:
            lines = "\n".join(f"  {p}: " + msg.strip().replace("\n", "\n    ")
                              for p, msg in self.failed.items())
            raise PartError(f"{len(self.failed)} part(s) failed (finished parts are kept; rerun "
                            f"to resume):\n{lines}")


def _outcome(call: Callable[[], dict | None]) -> dict:
    """A task's stats, or its error as text (a worker's, one that died, a pickling error ...)."""
    try:
        return {"ok": True, "stats": call()}
    except Exception as exc:  # noqa: BLE001 - reported with the path, never swallowed
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}


def map_parts(fn: Callable[..., dict], parts: Sequence[str | os.PathLike],
              out_dir: str | os.PathLike, executor: cf.Executor | None = None,
              desc: str = "parts", n_workers: int = 2, fingerprint: str = "",
              on_error: str = "raise",
              part_inputs: Callable[[int], Sequence[Path]] | None = None) -> MapResult:
    """Run ``fn(path, part=n) -> stats`` once per part not done yet, in ``executor`` (else a
    forkserver pool of ``n_workers``; inline when <= 1). ``fingerprint``: of the parameters that
    change a part's outputs; ``part_inputs``: part -> other files it depends on."""
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
            outcomes = ((path, part, _outcome(lambda: fn(path, part=part))) for path, part in todo)
        else:
            futures = {executor.submit(fn, path, part=part): (path, part) for path, part in todo}
            outcomes = ((*futures[f], _outcome(f.result)) for f in cf.as_completed(futures))
        for path, part, out in outcomes:
            if out["ok"]:
                result.done[part] = dict(out["stats"] or {}, part=part, path=str(path))
                markers[part].done(stats=result.done[part])
            else:
                result.failed[str(path)] = out["error"]
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
