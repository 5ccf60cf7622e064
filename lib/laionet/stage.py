"""Stage manifests: what a stage run used and produced, so reruns can skip finished work.

A stage writes ``manifest.json`` in its output folder: parameters, the fingerprints of its
inputs, package versions, timings and the list of outputs. ``is_current`` tells a notebook
that the same parameters and inputs already produced every output, so it can skip the work.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import time
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable, Iterator

from .io import read_json, write_json

MANIFEST = "manifest.json"
_VERSIONED = ("laionet", "numpy", "pandas", "pyarrow", "torch", "timm", "open_clip_torch",
              "sentence-transformers", "img2dataset", "nltk")


def fingerprint(obj: Any) -> str:
    """A stable short hash of a JSON-able object (parameters, input lists)."""
    blob = json.dumps(obj, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def file_fingerprint(path: str | os.PathLike) -> dict[str, Any]:
    """Cheap identity of an input file: name, size and modification time (not its bytes)."""
    st = Path(path).stat()
    return {"path": str(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in _VERSIONED:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def is_current(out_dir: str | os.PathLike, params: dict[str, Any],
               inputs: Iterable[str | os.PathLike] = ()) -> bool:
    """True when ``manifest.json`` records these parameters and inputs and every output exists."""
    path = Path(out_dir) / MANIFEST
    if not path.is_file():
        return False
    try:
        man = read_json(path)
    except (OSError, ValueError):
        return False
    if man.get("params_hash") != fingerprint(params):
        return False
    if man.get("inputs_hash") != fingerprint([file_fingerprint(p) for p in inputs]):
        return False
    return all((Path(out_dir) / o).exists() for o in man.get("outputs", []))


def write_manifest(out_dir: str | os.PathLike, stage: str, params: dict[str, Any],
                   inputs: Iterable[str | os.PathLike] = (), outputs: Iterable[str] = (),
                   timings: dict[str, float] | None = None, **extra: Any) -> Path:
    inputs = list(inputs)
    man = {
        "stage": stage,
        "params": params,
        "params_hash": fingerprint(params),
        "inputs": [str(p) for p in inputs],
        "inputs_hash": fingerprint([file_fingerprint(p) for p in inputs]),
        "outputs": sorted(str(o) for o in outputs),
        "timings_s": timings or {},
        "versions": versions(),
        "written_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **extra,
    }
    return write_json(man, Path(out_dir) / MANIFEST)


class Timings(dict):
    """``with timings("embed"): ...`` records wall seconds per named step."""

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self[name] = round(self.get(name, 0.0) + time.perf_counter() - t0, 3)
