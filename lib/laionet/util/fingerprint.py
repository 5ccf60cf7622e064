"""The one fingerprint: what made a cached or resumable product, as a short stable hash.

Every product that is reused instead of remade (a stage's outputs, a part's file, a download's
shards, a model's per-shard results, an embedding store entry) is keyed by ``fingerprint`` of
everything that made it: its inputs' content (``path_fingerprint``), the parameters that change
it, and the code (``library_digest``).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

SMALL_FILE = 64 << 20         # files up to this size are fingerprinted by their bytes
VOLATILE = {"manifest.json", "_stage", "_source"}  # never part of a folder's fingerprint
_VERSIONED = ("laionet", "numpy", "pandas", "pyarrow", "torch", "timm", "open_clip_torch",
              "sentence-transformers", "img2dataset", "nltk")


def fingerprint(obj: Any) -> str:
    """A stable short hash of a JSON-able object (parameters, input lists)."""
    blob = json.dumps(obj, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def file_fingerprint(path: str | os.PathLike) -> dict[str, Any]:
    """Identity of one file: its bytes' hash when small, else its size and modification time."""
    p = Path(path)
    s = p.stat()
    if s.st_size <= SMALL_FILE:
        return {"path": p.name, "size": s.st_size, "sha256": hashlib.sha256(p.read_bytes()).hexdigest()[:16]}
    return {"path": p.name, "size": s.st_size, "mtime_ns": s.st_mtime_ns}


def path_fingerprint(path: str | os.PathLike) -> str:
    """A file's fingerprint, or a folder's: every file below it (relative name, size, mtime),
    skipping the runner's own bookkeeping (manifest, ``_stage/``, executed notebooks)."""
    p = Path(path)
    if p.is_file():
        return fingerprint(file_fingerprint(p))
    rows = []
    for dirpath, dirnames, filenames in os.walk(p):
        dirnames[:] = sorted(d for d in dirnames if d not in VOLATILE)
        for f in sorted(filenames):
            if f in VOLATILE or f.endswith((".ipynb", ".html")) or ".tmp" in f:
                continue
            s = os.stat(os.path.join(dirpath, f))
            rows.append((os.path.relpath(os.path.join(dirpath, f), p), s.st_size, s.st_mtime_ns))
    return fingerprint(rows)


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in _VERSIONED:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


_LIBRARY_DIGEST: list[str] = []


def library_digest() -> str:
    """sha256 of the laionet package's source: a stage's result depends on the library too, so a
    changed library reruns stages (users who do not edit it never notice)."""
    if not _LIBRARY_DIGEST:
        h = hashlib.sha256()
        pkg = Path(__file__).resolve().parent.parent
        for f in sorted(pkg.rglob("*")):
            if f.is_file() and f.suffix in (".py", ".csv", ".json", ".txt") and "__pycache__" not in f.parts:
                h.update(str(f.relative_to(pkg)).encode() + b"\0" + f.read_bytes())
        _LIBRARY_DIGEST.append(h.hexdigest()[:16])
    return _LIBRARY_DIGEST[0]


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16] if path.is_file() else ""
