"""The one way to decide what is current: a fingerprint of what made a product, and its marker.

Every product reused instead of remade (a stage's outputs, a part's files, a download's shards,
a model's per-shard results, an index part) is keyed by ``fingerprint`` of everything that made
it: its inputs' content (``path_fingerprint``, ``spec_fingerprint``; arrays and bytes by their
bytes), the parameters that change it (never worker counts) and the code where it matters
(``library_digest``, ``versions``). A ``Marker`` written after the product holds that key.
Embedding-store entries are keyed by content and encoder (``laionet.jobs.embedding_store``).
"""

import hashlib
import json
import os
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

from laionet.util.files import read_json, write_json
from laionet.util.paths import resolve

SMALL_FILE = 64 << 20         # files up to this size are fingerprinted by their bytes
VOLATILE = {"manifest.json", "_stage", "_source"}  # never part of a folder's fingerprint
_VERSIONED = ("laionet", "numpy", "pandas", "pyarrow", "torch", "timm", "open_clip_torch",
              "sentence-transformers", "img2dataset", "nltk")


def _jsonable(obj: Any) -> Any:
    """Bytes and numpy arrays by the sha256 of their bytes; anything else as text."""
    if getattr(obj, "ndim", 0) > 0 and hasattr(obj, "tobytes"):
        obj = obj.tobytes() if obj.dtype != object else "\0".join(map(str, obj)).encode()
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return hashlib.sha256(obj).hexdigest()
    return str(obj)


def fingerprint(obj: Any) -> str:
    """A stable short hash of a JSON-able object (parameters, input lists, arrays)."""
    blob = json.dumps(obj, sort_keys=True, default=_jsonable).encode()
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


def spec_files(spec: str) -> list[Path]:
    """Local files named inside a model spec (``demo-tower:/x.safetensors``, ``demo:/models``)."""
    parts = [p for p in str(spec).split(":") if p and ("/" in p or p.startswith("~"))]
    return [resolve(p) for p in parts if resolve(p).exists()]  # relative: from the project root


def spec_fingerprint(specs: Any) -> str:
    """Model spec string(s) and the content of every local file they name."""
    specs = [str(s) for s in specs] if isinstance(specs, (list, tuple)) else [str(specs)]
    return fingerprint(specs + [path_fingerprint(p) for s in specs for p in spec_files(s)])


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


class Marker:
    """A product's done marker: ``{"fingerprint": key, **info}`` in a JSON file written
    atomically after the product, so a crash never leaves one that looks finished. ``current()``:
    the marker holds ``key`` and every path of ``products`` exists. The key goes to the
    constructor or to ``current``/``done`` (``Marker(path).current(key)``)."""

    def __init__(self, path: str | os.PathLike, key: str = "", *products: str | os.PathLike):
        self.path, self.key, self.products = Path(path), key, [Path(p) for p in products]

    def read(self) -> dict[str, Any]:
        try:
            return read_json(self.path)
        except (OSError, ValueError):
            return {}

    def current(self, key: str | None = None) -> bool:
        return (self.read().get("fingerprint") == (self.key if key is None else key)
                and all(p.exists() for p in self.products))

    def done(self, key: str | None = None, **info: Any) -> None:
        write_json({"fingerprint": self.key if key is None else key, **info}, self.path)
