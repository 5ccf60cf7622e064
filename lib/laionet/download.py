"""Stage 03: download LAIONet's images once with img2dataset, and read them back offline.

``download_laionet`` hands img2dataset a URL list sorted by row key, lets it write webdataset
shards (``shards/<input fingerprint>/00000.tar`` + per-shard ``.parquet`` and ``_stats.json``) and
assembles ONE ``manifest.parquet`` with a status for every input row. Every later stage reads
the shards through ``iter_downloaded`` and never touches the network (paper_spec E.8: the
authors re-downloaded per analysis and got a different subset each time).

Deviations from the authors' own downloader (A10), all deliberate and documented:
- non-RGB images (L, P, RGBA, CMYK) are kept and converted to RGB (E.7), not rejected;
- retries and img2dataset's opt-out header handling (X-Robots-Tag noai, ...) are on;
- images are resized on download (keep_ratio, smaller side = ``image_size``) unless
  ``resize_only_if_bigger`` keeps small images as they are.

Resume: img2dataset's incremental mode treats a shard as finished when its ``*_stats.json``
exists; a rerun redoes only the others. Shard membership depends on input order, so the input
is always sorted by key and its fingerprint is checked before resuming.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import signal
import tarfile
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from .io import write_json, write_parquet

SHARDS = "shards"
MANIFEST = "manifest.parquet"
INPUT_FINGERPRINT = "download_input.json"
# img2dataset owns the column name "key" (its own per-shard sample key), so ours travels as:
KEY_COL = "laion_key"
NOT_ATTEMPTED = "not_attempted"  # the row's shard never finished (crash, killed run)

MANIFEST_COLUMNS = ["key", "wnid", "status", "error_message", "error_kind", "sha256", "size",
                    "width", "height", "original_width", "original_height", "shard", "member"]

# error message (img2dataset's str(exception)) -> kind; first match wins, order matters.
_ERROR_KINDS: list[tuple[str, str]] = [
    (r"HTTP Error (\d{3})", "http_{0}"),
    (r"X-Robots-Tag", "opted_out"),
    (r"Connection refused", "connection_refused"),
    (r"timed out|Timeout", "timeout"),
    (r"Name or service not known|nodename nor servname|Temporary failure in name resolution"
     r"|getaddrinfo failed|No address associated", "dns"),
    (r"Remote end closed|Connection reset|IncompleteRead|BadStatusLine", "connection_broken"),
    (r"decoding error|Image decoding|cannot identify|decode", "corrupt_image"),
    (r"image too small|aspect ratio|area too large", "filtered_size"),
    (r"hash mismatch", "hash_mismatch"),
]


# --------------------------------------------------------------------------------------------
# input preparation


def prepare_input(table: pd.DataFrame | pa.Table, url_rewrite: Callable[[str], str] | None = None
                  ) -> pa.Table:
    """The URL list for img2dataset: columns url, laion_key, wnid, sorted by key.

    Raises ValueError naming the column when key/wnid/URL are missing, or the keys when a key
    repeats (each LAIONet row has exactly one label, so a repeat means a broken upstream table).
    """
    df = table.to_pandas() if isinstance(table, pa.Table) else table
    missing = [c for c in ("key", "wnid", "URL") if c not in df.columns]
    if missing:
        raise ValueError(f"download input lacks column(s) {missing}; expected stage 02's "
                         f"laionet.parquet columns (key, wnid, URL, ...), got {list(df.columns)}")
    df = df[["key", "wnid", "URL"]].sort_values("key", kind="stable")
    dup = df["key"][df["key"].duplicated()]
    if len(dup):
        raise ValueError(f"download input: duplicate row keys {dup.head(5).tolist()} "
                         f"({len(dup)} in all); every LAIONet row must appear once")
    null_url = df["key"][df["URL"].isna()]
    urls = df["URL"].fillna("")  # img2dataset records an empty URL as a failed download
    if url_rewrite is not None:
        urls = urls.map(url_rewrite)
    out = pa.table({"url": pa.array(urls.tolist(), pa.string()),
                    KEY_COL: pa.array(df["key"].to_numpy(np.int64)),
                    "wnid": pa.array(df["wnid"].astype(str).tolist(), pa.string())})
    if len(null_url):
        print(f"[download] {len(null_url)} row(s) have no URL (e.g. key {int(null_url.iloc[0])});"
              " they are recorded as failed_to_download")
    return out


def _input_fingerprint(prepared: pa.Table, number_sample_per_shard: int) -> str:
    """Identity of what goes into which shard: the keys in order (URLs may differ per run,
    e.g. the demo host's port) and the shard size."""
    h = hashlib.sha256(str(number_sample_per_shard).encode())
    h.update(prepared.column(KEY_COL).to_numpy().tobytes())
    return h.hexdigest()[:16]


def shard_dir(download_dir: str | Path) -> Path:
    """The shard folder of the current input of ``download_dir``.

    Each distinct input (rows + shard size) gets its own ``shards/<fingerprint>/`` folder, so a
    changed LAIONet (another threshold) is a new download that never mixes rows with an old one,
    and going back to an earlier input finds its shards again (nothing is re-downloaded).
    """
    download_dir = Path(download_dir)
    fp_path = download_dir / INPUT_FINGERPRINT
    if not fp_path.is_file():
        raise FileNotFoundError(f"{fp_path} does not exist: {download_dir} holds no download; run "
                                "stage 03 (notebooks/03_download.py) or point download_dir at its folder")
    return download_dir / SHARDS / json.loads(fp_path.read_text())["fingerprint"]


# --------------------------------------------------------------------------------------------
# the download


@contextlib.contextmanager
def _keep_sigint_handler() -> Iterator[None]:
    """img2dataset installs its own SIGINT handler (which calls sys.exit); put ours back after,
    so a Jupyter kernel's interrupt keeps working."""
    old = signal.getsignal(signal.SIGINT)
    try:
        yield
    finally:
        with contextlib.suppress(ValueError, TypeError):  # not the main thread / no handler
            signal.signal(signal.SIGINT, old)


def download_laionet(table: pd.DataFrame | pa.Table, out_dir: str | Path, *,
                     url_rewrite: Callable[[str], str] | None = None,
                     serve_root: str | Path | None = None, image_size: int = 256,
                     resize_mode: str = "keep_ratio", resize_only_if_bigger: bool = False,
                     processes_count: int = 2, thread_count: int = 16, retries: int = 2,
                     timeout: int = 10, incremental: bool = True,
                     distributor: str = "multiprocessing", number_sample_per_shard: int = 1000,
                     encode_format: str = "jpg", user_agent_token: str | None = None
                     ) -> pd.DataFrame:
    """Download the images of ``table`` (key, wnid, URL) into ``out_dir/shards`` and write
    ``out_dir/manifest.parquet``; returns the manifest (one row per input row, see
    ``build_manifest``).

    ``url_rewrite`` maps each URL before download. ``serve_root`` (the demo world's ``http/``)
    is served on 127.0.0.1 for the duration of the download, with the demo URLs rewritten to
    it; the host stops afterwards, also when the download fails. With ``incremental`` a rerun
    keeps every finished shard and redoes the rest. Failures (404, unreachable host, corrupt
    bytes) are rows with a status, never exceptions.
    """
    if serve_root is not None:
        from .demo.host import ImageHost

        with ImageHost(serve_root) as host:
            return download_laionet(
                table, out_dir, url_rewrite=host.rewrite_url, image_size=image_size,
                resize_mode=resize_mode, resize_only_if_bigger=resize_only_if_bigger,
                processes_count=processes_count, thread_count=thread_count, retries=retries,
                timeout=timeout, incremental=incremental, distributor=distributor,
                number_sample_per_shard=number_sample_per_shard, encode_format=encode_format,
                user_agent_token=user_agent_token)
    import img2dataset  # heavy import (cv2, albumentations): only when downloading

    out_dir = Path(out_dir)
    prepared = prepare_input(table, url_rewrite)
    fingerprint = _input_fingerprint(prepared, number_sample_per_shard)
    url_file = write_parquet(prepared, out_dir / "_input" / f"urls-{fingerprint}.parquet")
    write_json({"fingerprint": fingerprint, "n_rows": prepared.num_rows,
                "number_sample_per_shard": number_sample_per_shard}, out_dir / INPUT_FINGERPRINT)
    shards = shard_dir(out_dir)
    if len(prepared):
        with _keep_sigint_handler():
            img2dataset.download(
                url_list=str(url_file), input_format="parquet", url_col="url",
                save_additional_columns=[KEY_COL, "wnid"], output_folder=str(shards),
                output_format="webdataset", image_size=image_size, resize_mode=resize_mode,
                resize_only_if_bigger=resize_only_if_bigger, encode_format=encode_format,
                processes_count=processes_count, thread_count=thread_count, retries=retries,
                timeout=timeout, number_sample_per_shard=number_sample_per_shard,
                incremental_mode="incremental" if incremental else "overwrite",
                distributor=distributor, enable_wandb=False, compute_hash="sha256",
                user_agent_token=user_agent_token,
                # None = img2dataset's default opt-out list (noai, noimageai, noindex, ...)
                disallowed_header_directives=None)
    manifest = build_manifest(shards, prepared)
    write_parquet(manifest, out_dir / MANIFEST)
    return manifest


# --------------------------------------------------------------------------------------------
# the manifest


def finished_shards(shard_dir: str | Path) -> list[str]:
    """Names ("00000", ...) of the shards img2dataset finished (their stats file exists)."""
    return sorted(p.name[: -len("_stats.json")] for p in Path(shard_dir).glob("*_stats.json"))


def _member_sizes(tar_path: Path, encode_format: str) -> dict[str, int]:
    """sample key -> byte size of its stored image, from the tar headers only."""
    suffix = "." + encode_format
    with tarfile.open(tar_path) as tf:
        return {m.name[: -len(suffix)]: m.size for m in tf.getmembers() if m.name.endswith(suffix)}


def error_kind(messages: pd.Series) -> pd.Series:
    """Coarse kind of each img2dataset error message (http_404, connection_refused, timeout,
    corrupt_image, ...); null where there is no error, "other" where nothing matches."""
    msgs = messages.astype("string")
    kind = pd.Series(pd.NA, index=msgs.index, dtype="string")
    for pattern, label in _ERROR_KINDS:
        todo = kind.isna() & msgs.notna()
        if not todo.any():
            break
        if "{0}" in label:
            code = msgs[todo].str.extract(pattern, expand=False)
            kind[code.dropna().index] = label.split("{")[0] + code.dropna()
        else:
            hit = msgs[todo].str.contains(pattern, case=False, regex=True)
            kind[hit[hit].index] = label
    kind[kind.isna() & msgs.notna()] = "other"
    return kind


def build_manifest(shard_dir: str | Path, prepared: pa.Table, encode_format: str = "jpg"
                   ) -> pd.DataFrame:
    """One row per input row: key, wnid, status, error_message, error_kind, sha256 (of the
    downloaded bytes), size (bytes of the stored image), width/height (stored) and
    original_width/original_height, shard and member (the sample key inside the tar).

    Rows of shards that never finished get status "not_attempted", so nothing is dropped.
    """
    shard_dir = Path(shard_dir)
    frames = []
    cols = [KEY_COL, "status", "error_message", "sha256", "width", "height",
            "original_width", "original_height", "key"]
    for name in finished_shards(shard_dir):
        meta = pq.read_table(shard_dir / f"{name}.parquet", columns=cols).to_pandas()
        meta = meta.rename(columns={"key": "member"})
        meta["shard"] = name
        sizes = _member_sizes(shard_dir / f"{name}.tar", encode_format)
        meta["size"] = meta["member"].map(sizes).astype("Int64")
        frames.append(meta)
    got = (pd.concat(frames, ignore_index=True) if frames
           else pd.DataFrame(columns=cols + ["shard", "size"]).rename(columns={"key": "member"}))
    want = pd.DataFrame({"key": prepared.column(KEY_COL).to_numpy(),
                         "wnid": prepared.column("wnid").to_pylist()})
    got = got.rename(columns={KEY_COL: "key"}).drop_duplicates("key", keep="last")
    man = want.merge(got, on="key", how="left", validate="one_to_one")
    man["status"] = man["status"].fillna(NOT_ATTEMPTED)
    man["error_kind"] = error_kind(man["error_message"])
    man.loc[man["status"].eq(NOT_ATTEMPTED), "error_kind"] = NOT_ATTEMPTED
    for c in ("width", "height", "original_width", "original_height"):
        man[c] = man[c].astype("Int32")
    man["size"] = man["size"].astype("Int64")
    return man[MANIFEST_COLUMNS]


def load_manifest(download_dir: str | Path) -> pd.DataFrame:
    path = Path(download_dir) / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: run stage 03 (notebooks/03_download.py)"
                                " first, or point download_dir at its output folder")
    return pd.read_parquet(path)


# --------------------------------------------------------------------------------------------
# reading back (every later stage)


def iter_downloaded(download_dir: str | Path, keys: Sequence[int] | None = None,
                    encode_format: str = "jpg") -> Iterator[tuple[int, str, "Image.Image"]]:
    """Yield (key, wnid, RGB PIL image) for every downloaded image, shard by shard in key order
    within each shard. ``keys`` restricts to those row keys. Reads only the local tars.

    img2dataset keeps grayscale images single-channel; they are converted to RGB here so every
    consumer sees RGB.
    """
    from PIL import Image

    shards = shard_dir(download_dir)
    wanted = None if keys is None else set(int(k) for k in keys)
    for name in finished_shards(shards):
        tar_path = shards / f"{name}.tar"
        with tarfile.open(tar_path) as tf:
            members = {m.name: m for m in tf.getmembers()}
            stems = sorted(n[: -len(".json")] for n in members if n.endswith(".json"))
            for stem in stems:
                meta = json.loads(tf.extractfile(members[stem + ".json"]).read())
                key = int(meta[KEY_COL])
                if wanted is not None and key not in wanted:
                    continue
                img_member = members.get(f"{stem}.{encode_format}")
                if img_member is None:
                    raise ValueError(f"{tar_path}: sample {stem} has metadata but no "
                                     f".{encode_format} image; the shard is damaged: delete "
                                     f"{name}_stats.json and rerun stage 03 to redo it")
                with Image.open(io.BytesIO(tf.extractfile(img_member).read())) as im:
                    yield key, meta["wnid"], im.convert("RGB")
