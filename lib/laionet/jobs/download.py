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
is always sorted by key and its fingerprint is checked before resuming. A stats file alone is
not trusted (``untrusted_shards``): a shard is kept on resume only when it holds exactly its
rows of the input and, unless this process saw it finished while the download was alive
(``shards/<fingerprint>.confirmed.json``), none of its rows failed with a connection error, the
mark of a worker that outlived its download (and the demo's loopback host).

Processes: img2dataset runs in a child process that leads its own process group and is tied to
its parent (``laionet.jobs.processes``): the group is killed when the download returns, fails or is
interrupted, and when the parent (a kernel) dies, so no worker ever outlives the download.
"""

from __future__ import annotations

import codecs
import collections
import functools
import hashlib
import importlib.util
import io
import json
import os
import select
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from laionet.util.files import write_json, write_parquet
from laionet.jobs.processes import kill_group, tie_to_parent
from laionet.sources.loopback import ImageHost

SHARDS = "shards"
MANIFEST = "manifest.parquet"
INPUT_FINGERPRINT = "download_input.json"
# img2dataset owns the column name "key" (its own per-shard sample key), so ours travels as:
KEY_COL = "laion_key"
NOT_ATTEMPTED = "not_attempted"  # the row's shard never finished (crash, killed run)
# error kinds that, in a shard nobody saw finish while its download was alive, mean the host
# went away under an orphaned worker (a killed run), not that the URL is dead
CUT_SHORT_KINDS = ("connection_refused", "connection_broken")
CONFIRM_EVERY_S = 0.5

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


def download_laionet(table: pd.DataFrame | pa.Table, out_dir: str | Path, *,
                     url_rewrite: Callable[[str], str] | None = None,
                     serve_root: str | Path | None = None, image_size: int = 256,
                     resize_mode: str = "keep_ratio", resize_only_if_bigger: bool = False,
                     processes_count: int = 2, thread_count: int = 16, retries: int = 2,
                     timeout: int = 10, incremental: bool = True,
                     distributor: str = "multiprocessing", number_sample_per_shard: int = 1000,
                     encode_format: str = "jpg", skip_reencode: bool = False,
                     user_agent_token: str | None = None) -> pd.DataFrame:
    """Download the images of ``table`` (key, wnid, URL) into ``out_dir/shards`` and write
    ``out_dir/manifest.parquet``; returns the manifest (one row per input row, see
    ``build_manifest``).

    ``resize_mode`` ``no`` with ``skip_reencode`` stores every image as it was served (JPEGs
    byte for byte; other formats re-encoded to ``encode_format``): the authors' downloader (A10)
    kept images at full size.

    ``url_rewrite`` maps each URL before download. ``serve_root`` (the demo world's ``http/``)
    is served on 127.0.0.1 for the duration of the download, with the demo URLs rewritten to
    it; the host stops afterwards, also when the download fails. With ``incremental`` a rerun
    keeps every finished shard it can trust (``untrusted_shards``) and redoes the rest.
    Failures of URLs (404, unreachable host, corrupt bytes) are rows with a status, never
    exceptions; a download that could not finish (img2dataset killed, or giving up on whole
    shards: rows left ``not_attempted``) raises RuntimeError after writing the manifest, so a
    stage never records it as done. img2dataset runs in a child process group that never
    outlives this call (``run_img2dataset``).
    """
    if serve_root is not None:
        with ImageHost(serve_root) as host:
            return download_laionet(
                table, out_dir, url_rewrite=host.rewrite_url, image_size=image_size,
                resize_mode=resize_mode, resize_only_if_bigger=resize_only_if_bigger,
                processes_count=processes_count, thread_count=thread_count, retries=retries,
                timeout=timeout, incremental=incremental, distributor=distributor,
                number_sample_per_shard=number_sample_per_shard, encode_format=encode_format,
                skip_reencode=skip_reencode, user_agent_token=user_agent_token)
    if distributor in ("ray", "pyspark") and importlib.util.find_spec(distributor) is None:
        raise ValueError(f"distributor={distributor!r} needs the {distributor} package, which is "
                         "not installed (img2dataset would silently download nothing); use "
                         "distributor='multiprocessing'")
    out_dir = Path(out_dir)
    prepared = prepare_input(table, url_rewrite)
    fingerprint = _input_fingerprint(prepared, number_sample_per_shard)
    url_file = write_parquet(prepared, out_dir / "_input" / f"urls-{fingerprint}.parquet")
    write_json({"fingerprint": fingerprint, "n_rows": prepared.num_rows,
                "number_sample_per_shard": number_sample_per_shard,
                "settings": {"image_size": int(image_size), "resize_mode": resize_mode,
                             "resize_only_if_bigger": bool(resize_only_if_bigger),
                             "encode_format": encode_format,
                             "skip_reencode": bool(skip_reencode)}}, out_dir / INPUT_FINGERPRINT)
    shards = shard_dir(out_dir)
    confirmed = _Confirmed(shards, fresh=not incremental)
    if incremental and shards.is_dir():
        for name, why in untrusted_shards(shards, prepared, number_sample_per_shard,
                                          confirmed.names, encode_format).items():
            print(f"[download] shard {name} {why}: downloading it again")
            for suffix in ("_stats.json", ".parquet", ".tar"):
                (shards / f"{name}{suffix}").unlink(missing_ok=True)
    if len(prepared):
        run_img2dataset(dict(
            url_list=str(url_file), input_format="parquet", url_col="url",
            save_additional_columns=[KEY_COL, "wnid"], output_folder=str(shards),
            output_format="webdataset", image_size=image_size, resize_mode=resize_mode,
            resize_only_if_bigger=resize_only_if_bigger, encode_format=encode_format,
            skip_reencode=skip_reencode, processes_count=processes_count,
            thread_count=thread_count, retries=retries,
            timeout=timeout, number_sample_per_shard=number_sample_per_shard,
            incremental_mode="incremental" if incremental else "overwrite",
            distributor=distributor, enable_wandb=False, compute_hash="sha256",
            user_agent_token=user_agent_token,
            # None = img2dataset's default opt-out list (noai, noimageai, noindex, ...)
            disallowed_header_directives=None), on_poll=confirmed.update)
        confirmed.update()  # the download returned: every finished shard is its own
    manifest = build_manifest(shards, prepared, encode_format)
    write_parquet(manifest, out_dir / MANIFEST)
    missing = manifest.loc[manifest["status"].eq(NOT_ATTEMPTED)]
    if len(missing):  # img2dataset gave up on whole shards: a failed stage, so a rerun retries
        raise RuntimeError(f"{len(missing)} of {len(manifest)} row(s) were not attempted: "
                           f"img2dataset gave up on their shard(s) (its output above says why); "
                           f"rerun the download to retry them (finished shards are kept)")
    return manifest


def run_img2dataset(kwargs: dict, on_poll: Callable[[], None] | None = None) -> None:
    """``img2dataset.download(**kwargs)`` in a child process that leads its own process group
    and dies with this process (``laionet.jobs.processes``); its output is relayed to ``sys.stdout``.

    The whole group (img2dataset, its pool workers and logger process) is killed when the child
    ends, when this call raises (KeyboardInterrupt included: a Jupyter interrupt stops the
    download at once) and, through the tether, when this process dies. ``on_poll`` is called
    about every ``CONFIRM_EVERY_S`` seconds while the child runs. Raises RuntimeError with the
    end of img2dataset's output when it fails."""

    code = ("import sys; from laionet.jobs.download import _img2dataset_main; "
            "_img2dataset_main(sys.argv[1:])")
    lib = str(Path(__file__).resolve().parents[1])
    env = dict(os.environ, NO_ALBUMENTATIONS_UPDATE="1", PYTHONUNBUFFERED="1",
               PYTHONPATH=os.pathsep.join(p for p in (lib, os.environ.get("PYTHONPATH")) if p))
    proc = subprocess.Popen([sys.executable, "-c", code, str(os.getpid()), json.dumps(kwargs)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, env=env, start_new_session=True)
    relay = _Relay(proc.stdout)
    polled = time.monotonic()
    try:
        while not _exited(proc):
            relay.pump(CONFIRM_EVERY_S)
            if on_poll is not None and time.monotonic() - polled >= CONFIRM_EVERY_S:
                on_poll()
                polled = time.monotonic()
    finally:
        kill_group(proc.pid)  # before the leader is reaped: its group id cannot be reused yet
        proc.wait()
        relay.drain()
    if proc.returncode != 0:
        how = (f"was killed by signal {-proc.returncode}" if proc.returncode < 0
               else f"failed (exit status {proc.returncode})")
        raise RuntimeError(f"img2dataset {how}; the end of its output:\n" + relay.tail())


def _img2dataset_main(argv: list[str]) -> None:
    """The child of ``run_img2dataset``: ``PARENT_PID KWARGS_JSON``."""

    tie_to_parent(int(argv[0]))
    import img2dataset  # heavy import (cv2, albumentations): only in the child

    img2dataset.download(**json.loads(argv[1]))


def _exited(proc: subprocess.Popen) -> bool:
    """Whether the child ended, without reaping it (so its process group id stays reserved)."""
    if hasattr(os, "waitid"):
        return os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    return proc.poll() is not None


class _Relay:
    """Copy a child's output to ``sys.stdout`` as it comes; keep its last lines."""

    def __init__(self, stream):
        self.fd = stream.fileno()
        self.stream = stream
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.lines: collections.deque[str] = collections.deque(maxlen=25)
        self.open = True

    def pump(self, timeout: float) -> None:
        if not self.open:
            time.sleep(timeout)
            return
        if select.select([self.fd], [], [], timeout)[0]:
            data = os.read(self.fd, 1 << 16)
            if not data:
                self.open = False
            text = self.decoder.decode(data, final=not data)
            if text:
                sys.stdout.write(text)
                sys.stdout.flush()
                self.lines.extend(line for line in text.replace("\r", "\n").splitlines() if line)

    def drain(self, limit_s: float = 2.0) -> None:
        end = time.monotonic() + limit_s
        while self.open and time.monotonic() < end:
            self.pump(0.1)
        self.stream.close()

    def tail(self) -> str:
        return "\n".join(self.lines)


class _Confirmed:
    """The shards this process saw finished while their download was alive, kept in
    ``shards/<fingerprint>.confirmed.json`` (next to the img2dataset folder: img2dataset counts
    every ``*.json`` inside it as a finished shard)."""

    def __init__(self, shards: Path, fresh: bool = False):
        self.shards = shards
        self.path = shards.with_name(shards.name + ".confirmed.json")
        self.names: set[str] = set()
        if fresh:
            self.path.unlink(missing_ok=True)
        elif self.path.is_file():
            try:
                self.names = set(json.loads(self.path.read_text())["shards"])
            except (ValueError, KeyError, TypeError):
                self.names = set()

    def update(self) -> None:
        now = set(finished_shards(self.shards)) if self.shards.is_dir() else set()
        if not now <= self.names:
            self.names |= now
            write_json({"shards": sorted(self.names)}, self.path)


def untrusted_shards(shards: str | Path, prepared: pa.Table, number_sample_per_shard: int,
                     confirmed: set[str] = frozenset(), encode_format: str = "jpg"
                     ) -> dict[str, str]:
    """Finished shards (stats file present) that must be downloaded again, with the reason:
    metadata, stats or tar unreadable or missing; rows other than the shard's part of the
    (key-sorted) input; or, for a shard not in ``confirmed``, rows that failed with a connection
    error (``CUT_SHORT_KINDS``): a worker orphaned by a killed run kept going after the host was
    gone. A redone shard is downloaded whole, so the manifest equals an uninterrupted run's."""
    shards = Path(shards)
    keys = prepared.column(KEY_COL).to_numpy()
    n = int(number_sample_per_shard)
    bad: dict[str, str] = {}
    for name in finished_shards(shards):
        i = int(name)
        want = keys[i * n:(i + 1) * n]
        try:
            json.loads((shards / f"{name}_stats.json").read_text())
            meta = pq.read_table(shards / f"{name}.parquet",
                                 columns=[KEY_COL, "error_message"]).to_pandas()
            _member_sizes(shards / f"{name}.tar", encode_format)
        except Exception as exc:  # noqa: BLE001 - any damage means: redo the shard
            bad[name] = f"is damaged ({type(exc).__name__}: {exc})"
            continue
        got = meta[KEY_COL].to_numpy(np.int64)
        if len(got) != len(want) or set(got.tolist()) != set(want.tolist()):
            bad[name] = (f"holds {len(got)} row(s) that are not its {len(want)} row(s) of the "
                         "input")
            continue
        if name not in confirmed:
            cut = int(error_kind(meta["error_message"]).isin(CUT_SHORT_KINDS).sum())
            if cut:
                bad[name] = (f"was finished after its run was cut short ({cut} row(s) failed "
                             "with a connection error)")
    return bad


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


def report(manifest: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Stage 03's accounting of a manifest, one table per question (saved as
    ``03_download_<name>``): ``overall`` (rows, downloaded, success_rate), ``status`` (rows per
    img2dataset status), ``error_kinds`` (rows per kind of failure, most first), ``per_class``
    (rows, downloaded, success_rate per wnid, most rows first) and ``class_attrition`` (classes
    with rows vs classes with at least one downloaded image)."""
    ok = manifest["status"].eq("success")
    overall = pd.DataFrame({"rows": [len(manifest)], "downloaded": [int(ok.sum())],
                            "success_rate": [ok.mean() if len(manifest) else float("nan")]})
    kinds = (manifest.loc[~ok, "error_kind"].value_counts().rename_axis("error_kind")
             .reset_index(name="rows"))
    status = manifest["status"].value_counts().rename_axis("status").reset_index(name="rows")
    per_class = (manifest.assign(ok=ok).groupby("wnid")["ok"].agg(rows="size", downloaded="sum")
                 .reset_index().sort_values("rows", ascending=False))
    per_class["success_rate"] = per_class["downloaded"] / per_class["rows"]
    kept = int((per_class["downloaded"] > 0).sum())
    attrition = pd.DataFrame({"classes with rows": [per_class.shape[0]],
                              "classes with >= 1 image": [kept]})
    return {"overall": overall, "status": status, "error_kinds": kinds, "per_class": per_class,
            "class_attrition": attrition}


def example_images(download_dir: str | Path, manifest: pd.DataFrame, n: int = 8
                   ) -> list[tuple[int, str, "Image.Image"]]:
    """(key, wnid, image) of one downloaded image for each of the first ``n`` classes (in
    manifest order), read back from the shards as later stages read them; sorted by key."""
    ok = manifest["status"].eq("success")
    sample = manifest[ok].groupby("wnid").head(1).head(n)
    return sorted(iter_downloaded(download_dir, keys=sample["key"]), key=lambda r: r[0])


def load_manifest(download_dir: str | Path) -> pd.DataFrame:
    path = Path(download_dir) / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: run stage 03 (notebooks/03_download.py)"
                                " first, or point download_dir at its output folder")
    return pd.read_parquet(path)


def download_settings(download_dir: str | Path) -> dict:
    """The resize settings (image_size, resize_mode, resize_only_if_bigger, encode_format,
    skip_reencode) a ``download_laionet`` folder was downloaded with (its ``download_input.json``;
    folders written before skip_reencode existed re-encoded every image)."""
    path = Path(download_dir) / INPUT_FINGERPRINT
    meta = json.loads(path.read_text()) if path.is_file() else {}
    if "settings" not in meta:
        raise FileNotFoundError(f"{path} does not record the download settings: rerun stage 03 "
                                "(notebooks/03_download.py), which writes them")
    return {"skip_reencode": False, **meta["settings"]}


def download_beyond(table: pd.DataFrame, base_dir: str | Path, cache_root: str | Path,
                    **kwargs) -> tuple[pd.DataFrame, tuple[Path, ...]]:
    """Stages 07 and 09: the images of ``table`` (key, wnid, URL) as stage 03 has them, plus
    the rows stage 03 never had, downloaded with stage 03's own settings.

    Every row of ``base_dir``'s manifest (stage 03's folder) is taken from there as it is, failed
    ones included, so LAIONet's rows have the same images (and the same gaps) in Sections 3 and
    4; only the others are downloaded, into ``cache_root/<settings>`` (``shards_cache_names``),
    which any stage asking for more rows with the same settings shares. Returns the manifest
    of ``table``'s rows (base rows first, then the new ones, by key) and the download folders to
    read them from (``image_embeddings.ImageSource.laion(folders)``). ``kwargs`` go to
    ``download_laionet`` (processes, serve_root, ...), never the resize settings.
    """
    clash = sorted(set(kwargs) & {"image_size", "resize_mode", "resize_only_if_bigger",
                                  "encode_format", "skip_reencode"})
    if clash:
        raise ValueError(f"download_beyond: {clash} come from stage 03's download, not from "
                         "the caller (the same settings are what makes the images the same)")
    base_dir = Path(base_dir)
    settings = download_settings(base_dir)
    base = load_manifest(base_dir)
    keys = pd.Index(table["key"].astype("int64"))
    have = base[base["key"].isin(keys)]
    rest = table[~keys.isin(base["key"])]
    extra_dir = Path(cache_root).joinpath(*shards_cache_names(settings))
    parts, dirs = [have], [base_dir]
    if len(rest):
        parts.append(download_laionet(rest, extra_dir, **settings, **kwargs))
        dirs.append(extra_dir)
    print(f"[download] {len(have):,} of {len(table):,} row(s) from stage 03's download "
          f"({base_dir}), {len(rest):,} downloaded with its settings into {extra_dir}")
    return pd.concat(parts, ignore_index=True), tuple(dirs)


def resize_like_download(data: bytes, settings: dict) -> bytes:
    """``data`` (an encoded image) through img2dataset's own resizer with a download's
    ``settings`` (``download_settings``): the bytes that download would have stored. Stage 04's
    resolution parity runs ImageNet val through it, so both datasets reach the classifiers
    resized and re-encoded alike. Raises ValueError when the resizer rejects the image."""
    resizer = _resizer(int(settings["image_size"]), str(settings["resize_mode"]),
                       bool(settings["resize_only_if_bigger"]), str(settings["encode_format"]),
                       bool(settings.get("skip_reencode", False)))
    out, *_, err = resizer(io.BytesIO(data))
    if err is not None:
        raise ValueError(f"img2dataset's resizer rejected the image: {err}")
    return out


@functools.cache
def _resizer(image_size: int, resize_mode: str, resize_only_if_bigger: bool, encode_format: str,
             skip_reencode: bool = False):
    from img2dataset.resizer import Resizer

    return Resizer(image_size, resize_mode, resize_only_if_bigger, encode_format=encode_format,
                   skip_reencode=skip_reencode)


def shards_cache_names(settings: dict) -> tuple[str, ...]:
    """Folder names of the shared ``shards`` cache for rows downloaded with ``settings``: one
    folder per settings, so other settings never mix."""
    names = ("laion", f"size{int(settings['image_size'])}", str(settings["resize_mode"]),
             f"only_if_bigger={bool(settings['resize_only_if_bigger'])}",
             str(settings["encode_format"]))
    return names + ("skip_reencode",) if settings.get("skip_reencode") else names


# --------------------------------------------------------------------------------------------
# reading back (every later stage)


def member_index(download_dir: str | Path, keys: Sequence[int] | None = None,
                 encode_format: str = "jpg") -> pd.DataFrame:
    """The key -> (tar, member) index of a download: key, wnid, shard, tar (path), offset and
    size (of the stored image's bytes inside the tar) of every downloaded row (``keys``: only
    those), from the manifest and the headers of just the tars that hold them; in (shard,
    member) order, the order of ``iter_downloaded``. ``read_member`` reads one image's bytes."""
    man = load_manifest(download_dir)
    man = man[man["status"].eq("success")]
    if keys is not None:
        man = man[man["key"].isin({int(k) for k in keys})]
    man = man.sort_values(["shard", "member"], kind="stable")
    shards = shard_dir(download_dir)
    suffix = "." + encode_format
    offset = np.zeros(len(man), np.int64)
    size = np.zeros(len(man), np.int64)
    tars = []
    pos = 0
    for name, rows in man.groupby("shard", sort=True):
        tar_path = shards / f"{name}.tar"
        with tarfile.open(tar_path) as tf:  # headers only
            at = {m.name[: -len(suffix)]: (m.offset_data, m.size) for m in tf.getmembers()
                  if m.name.endswith(suffix)}
        for member in rows["member"].tolist():
            if member not in at:
                raise ValueError(f"{tar_path}: no image {member}{suffix} although the manifest "
                                 f"lists it; the shard is damaged: delete {name}_stats.json and "
                                 "rerun stage 03 to redo it")
            offset[pos], size[pos] = at[member]
            pos += 1
        tars += [str(tar_path)] * len(rows)
    return pd.DataFrame({"key": man["key"].to_numpy(np.int64), "wnid": man["wnid"].to_numpy(),
                         "shard": man["shard"].to_numpy(), "tar": tars, "offset": offset,
                         "size": size})


def read_member(tar: str | Path, offset: int, size: int) -> bytes:
    """The bytes of one tar member at ``offset`` (``member_index``): one seek, one read."""
    with open(tar, "rb") as f:
        f.seek(int(offset))
        return f.read(int(size))


def iter_downloaded(download_dir: str | Path, keys: Sequence[int] | None = None,
                    encode_format: str = "jpg") -> Iterator[tuple[int, str, "Image.Image"]]:
    """Yield (key, wnid, RGB PIL image) for every downloaded image, shard by shard in key order
    within each shard. ``keys`` restricts to those row keys, read through the key -> (tar,
    member) index (``member_index``): only their bytes are read. Reads only the local tars.

    img2dataset keeps grayscale images single-channel; they are converted to RGB here so every
    consumer sees RGB.
    """
    from PIL import Image

    if keys is not None:
        for key, wnid, tar, off, size in member_index(download_dir, keys, encode_format)[
                ["key", "wnid", "tar", "offset", "size"]].itertuples(index=False):
            with Image.open(io.BytesIO(read_member(tar, off, size))) as im:
                yield int(key), wnid, im.convert("RGB")
        return
    shards = shard_dir(download_dir)
    for name in finished_shards(shards):
        tar_path = shards / f"{name}.tar"
        with tarfile.open(tar_path) as tf:
            members = {m.name: m for m in tf.getmembers()}
            stems = sorted(n[: -len(".json")] for n in members if n.endswith(".json"))
            for stem in stems:
                meta = json.loads(tf.extractfile(members[stem + ".json"]).read())
                key = int(meta[KEY_COL])
                img_member = members.get(f"{stem}.{encode_format}")
                if img_member is None:
                    raise ValueError(f"{tar_path}: sample {stem} has metadata but no "
                                     f".{encode_format} image; the shard is damaged: delete "
                                     f"{name}_stats.json and rerun stage 03 to redo it")
                with Image.open(io.BytesIO(tf.extractfile(img_member).read())) as im:
                    yield key, meta["wnid"], im.convert("RGB")
