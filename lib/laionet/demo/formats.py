"""Writers for the real on-disk formats: LAION-400M parts, ImageNet train/val + devkit,
ImageNetV2 class-index folders + class_info.json, ImageNet-Captions JSON, image files.

Everything is byte-deterministic: fixed JPEG settings, no timestamps (the MAT-file header's
creation date is replaced by a fixed text), sorted iteration, parquet without pandas metadata.
"""

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
from PIL import Image

from laionet.sources.imagenet import VAL_NAME  # noqa: F401 (the world names its val files with it)
from laionet.sources.loopback import DEMO_URL_PREFIX  # noqa: F401 (the world writes its URLs with it)
from laionet.util.files import write_parquet, write_text

LAION_PART_NAME = "part-{:05d}-5b54c5d5-bbcf-484d-a2ce-0d6f73df1a36-c000.snappy.parquet"
#: LAION-400M metadata schema (paper_spec A0): SAMPLE_ID is a float in the released parts.
LAION_SCHEMA = pa.schema([
    ("SAMPLE_ID", pa.float64()), ("URL", pa.string()), ("TEXT", pa.string()),
    ("HEIGHT", pa.int64()), ("WIDTH", pa.int64()), ("LICENSE", pa.string()),
    ("NSFW", pa.string()), ("similarity", pa.float64()),
])
JPEG_QUALITY = 90
_MAT_HEADER = b"MATLAB 5.0 MAT-file, written by laionet.demo (deterministic header)"


def write_parquet_deterministic(table: pa.Table | pd.DataFrame, dest: Path) -> Path:
    """Atomic snappy parquet with no pandas metadata (nor index) and no statistics that could vary."""
    if isinstance(table, pd.DataFrame):
        table = pa.Table.from_pandas(table, preserve_index=False)
    return write_parquet(table.replace_schema_metadata(None), dest, compression="snappy")


def write_laion_part(df: pd.DataFrame, laion_dir: Path, part: int) -> Path:
    """One LAION part with exactly LAION_SCHEMA's columns and types, named like the real ones."""
    table = pa.Table.from_pandas(df[LAION_SCHEMA.names], schema=LAION_SCHEMA, preserve_index=False)
    return write_parquet_deterministic(table, laion_dir / LAION_PART_NAME.format(part))


def encode_image(pixels: np.ndarray, mode: str = "RGB", fmt: str = "JPEG") -> bytes:
    """Encode one [H, W, 3] uint8 image, converted to ``mode``, as JPEG or PNG bytes."""
    img = Image.fromarray(pixels, "RGB")
    if mode != "RGB":
        img = img.convert(mode) if mode != "P" else img.quantize(64, dither=Image.Dither.NONE)
    buf = io.BytesIO()
    img.save(buf, fmt, optimize=False, **({"quality": JPEG_QUALITY, "progressive": False,
                                            "subsampling": 0} if fmt == "JPEG" else {}))
    return buf.getvalue()


def write_bytes(path: Path, data: bytes) -> None:
    """Plain write; the whole world is built in a temporary folder renamed when complete."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def write_imagenet_devkit(classes: pd.DataFrame, val_labels: np.ndarray, devkit_dir: Path) -> None:
    """``data/ILSVRC2012_validation_ground_truth.txt`` (one ILSVRC2012_ID per val image, in file
    order) and ``data/meta.mat`` with the devkit's ``synsets`` struct (IDs 1..K = label + 1)."""
    from scipy.io import savemat

    data = devkit_dir / "data"
    write_text("".join(f"{int(i) + 1}\n" for i in val_labels),
               data / "ILSVRC2012_validation_ground_truth.txt")
    synsets = np.empty((len(classes), 1), dtype=[(f, "O") for f in (
        "ILSVRC2012_ID", "WNID", "words", "gloss", "num_children", "children", "wordnet_height",
        "num_train_images")])
    for i, row in enumerate(classes.itertuples()):  # K rows (the class list), not a hot path
        synsets[i, 0] = (np.array([[i + 1]], dtype=np.uint16), row.wnid, ", ".join(row.lemmas),
                         row.gloss, np.array([[0]], dtype=np.uint8), np.zeros((1, 0), np.uint8),
                         np.array([[0]], dtype=np.uint8), np.array([[0]], dtype=np.uint16))
    buf = io.BytesIO()
    savemat(buf, {"synsets": synsets}, format="5", oned_as="column")
    raw = bytearray(buf.getvalue())
    raw[:116] = _MAT_HEADER.ljust(116, b" ")  # the 116-byte text header carries a timestamp
    write_bytes(data / "meta.mat", bytes(raw))


def write_class_info(imagenet1k: pd.DataFrame, dest: Path) -> Path:
    """ImageNetV2's class_info.json, all 1,000 classes as in the release:
    [{cid, wnid, synset: [lemmas], gloss}], cid = row position of ``imagenet1k`` (class-index
    order, columns wnid, lemmas, definition)."""
    rows = [{"cid": i, "wnid": w, "synset": list(lem), "gloss": g} for i, (w, lem, g) in
            enumerate(zip(imagenet1k["wnid"], imagenet1k["lemmas"], imagenet1k["definition"]))]
    return write_text(json.dumps(rows, indent=4) + "\n", dest)


def write_imagenet_captions(records: pd.DataFrame, dest: Path) -> Path:
    """imagenet_captions.json: a list of {filename, title, tags, description, wnid}."""
    rows = records[["filename", "title", "tags", "description", "wnid"]].to_dict("records")
    return write_text(json.dumps(rows, ensure_ascii=False) + "\n", dest)

