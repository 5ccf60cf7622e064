"""Stage 03: download LAIONet's images once with img2dataset, and read them back offline.

``download_laionet`` lets img2dataset write webdataset shards (``shards/<fingerprint>/``) and
assembles ONE ``manifest.parquet`` with a status for every input row; later stages read the
shards (``read_downloads``), never the network (E.8: the authors re-downloaded per analysis and
got a different subset each time). Deviations from the authors' downloader (A10), on purpose:
non-RGB images converted to RGB (E.7); retries and opt-out headers on; images resized (smaller
side ``image_size``) unless ``resize_mode`` ``no`` with ``skip_reencode`` keeps them as served.

What is current: the shard folder is named by the ``fingerprint`` of the row keys and URLs,
shard size and image settings. A finished shard is kept on a rerun only when it holds exactly
its rows and, unless its ``Marker`` (seen finished while the download was alive) says so, no
row failed with a connection error (a worker that outlived its killed run).
"""

import codecs
import collections
import functools
import importlib.util
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from laionet.jobs.processes import kill_group, tie_to_parent
from laionet.sources.imagenet import decode_image
from laionet.sources.loopback import ImageHost
from laionet.util.files import read_json, write_json, write_parquet
from laionet.util.fingerprint import Marker, fingerprint

SHARDS = "shards"
MANIFEST = "manifest.parquet"
INPUT_FINGERPRINT = "download_input.json"
KEY_COL = "laion_key"  # img2dataset owns the column "key" (its per-shard sample key)
NOT_ATTEMPTED = "not_attempted"  # the row's shard never finished (crash, killed run)
# in a shard nobody saw finish: the host went away under an orphaned worker, not a dead URL
CUT_SHORT_KINDS = ("connection_refused", "connection_broken")
CONFIRM_EVERY_S = 0.5
#: the settings that make the stored images (recorded; stages 04, 07 and 09 reuse them)
SETTINGS = {"image_size": 256, "resize_mode": "keep_ratio", "resize_only_if_bigger": False,
            "encode_format": "jpg", "skip_reencode": False}
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


def prepare_input(table: pd.DataFrame | pa.Table) -> pa.Table:
    """The URL list for img2dataset (url, laion_key, wnid), by key; each key once."""
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
    if len(null_url):
        print(f"[download] {len(null_url)} row(s) have no URL (e.g. key {int(null_url.iloc[0])});"
              " they are recorded as failed_to_download")
    # img2dataset records an empty URL as a failed download
    return pa.table({"url": pa.array(df["URL"].fillna("").tolist(), pa.string()),
                     KEY_COL: pa.array(df["key"].to_numpy(np.int64)),
                     "wnid": pa.array(df["wnid"].astype(str).tolist(), pa.string())})


def shards_key(prepared: pa.Table, number_sample_per_shard: int, settings: dict) -> str:
    """The fingerprint of a download's shards: rows and URLs in order, shard size, and the image
    settings (with ``resize_mode`` ``no`` the size settings do nothing and are left out)."""
    if settings["resize_mode"] == "no":
        settings = {k: v for k, v in settings.items()
                    if k not in ("image_size", "resize_only_if_bigger")}
    return fingerprint({"keys": prepared.column(KEY_COL).to_numpy(),
                        "urls": prepared.column("url").to_numpy(zero_copy_only=False),
                        "n": int(number_sample_per_shard), "settings": settings})


def _recorded(download_dir: str | Path) -> dict:
    path = Path(download_dir) / INPUT_FINGERPRINT
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: {download_dir} holds no download; run "
                                "stage 03 (notebooks/03_download.py) or point download_dir at it")
    return read_json(path)


def shard_dir(download_dir: str | Path) -> Path:
    """The shard folder of the current download of ``download_dir``."""
    return Path(download_dir) / SHARDS / _recorded(download_dir)["fingerprint"]


def download_settings(download_dir: str | Path) -> dict:
    """The image settings (``SETTINGS``) a ``download_laionet`` folder was downloaded with."""
    meta = _recorded(download_dir)
    if "settings" not in meta:
        raise FileNotFoundError(f"{download_dir}/{INPUT_FINGERPRINT} does not record the download "
                                "settings: rerun stage 03 (notebooks/03_download.py)")
    return {"skip_reencode": False, **meta["settings"]}


def _marker(shards: Path, name: str) -> Marker:
    """A shard seen finished while its download was alive (outside: img2dataset counts every
    ``*.json`` in the shard folder as a finished shard)."""
    return Marker(shards.with_name(f"{shards.name}.done") / f"{name}.json", shards.name,
                  shards / f"{name}_stats.json")


def download_laionet(table: pd.DataFrame | pa.Table, out_dir: str | Path, *,
                     url_rewrite: Callable[[str], str] | None = None,
                     serve_root: str | Path | None = None, processes_count: int = 2,
                     thread_count: int = 16, retries: int = 2, timeout: int = 10,
                     incremental: bool = True, distributor: str = "multiprocessing",
                     number_sample_per_shard: int = 1000, user_agent_token: str | None = None,
                     **settings) -> pd.DataFrame:
    """Download the images of ``table`` (key, wnid, URL) into ``out_dir/shards``; write and
    return ``out_dir/manifest.parquet``. ``settings``: those of ``SETTINGS``; ``serve_root`` (the
    demo world's ``http/``) is served on 127.0.0.1 meanwhile. With ``incremental`` a rerun keeps
    the finished shards it can trust; rows left ``not_attempted`` raise RuntimeError."""
    unknown = sorted(set(settings) - set(SETTINGS))
    if unknown:
        raise TypeError(f"download_laionet: unknown setting(s) {unknown}; one of {list(SETTINGS)}")
    settings = {k: type(v)(settings.get(k, v)) for k, v in SETTINGS.items()}
    if distributor in ("ray", "pyspark") and importlib.util.find_spec(distributor) is None:
        raise ValueError(f"distributor={distributor!r} needs the {distributor} package, which is "
                         "not installed (img2dataset would silently download nothing); use "
                         "distributor='multiprocessing'")
    out_dir = Path(out_dir)
    prepared = prepare_input(table)
    key = shards_key(prepared, number_sample_per_shard, settings)
    shards = out_dir / SHARDS / key
    write_json({"fingerprint": key, "n_rows": prepared.num_rows,
                "number_sample_per_shard": number_sample_per_shard, "settings": settings},
               out_dir / INPUT_FINGERPRINT)
    if not incremental:
        shutil.rmtree(shards.with_name(f"{key}.done"), ignore_errors=True)
    elif shards.is_dir():
        for name, why in untrusted_shards(shards, prepared, number_sample_per_shard,
                                          encode_format=settings["encode_format"]).items():
            print(f"[download] shard {name} {why}: downloading it again")
            for suffix in ("_stats.json", ".parquet", ".tar"):
                (shards / f"{name}{suffix}").unlink(missing_ok=True)
            _marker(shards, name).path.unlink(missing_ok=True)

    seen: set[str] = set()

    def confirm() -> None:  # every shard finished so far, seen while the download is alive
        for name in set(finished_shards(shards) if shards.is_dir() else ()) - seen:
            _marker(shards, name).done()
            seen.add(name)

    todo = -(-len(prepared) // number_sample_per_shard) - (
        len(finished_shards(shards)) if incremental and shards.is_dir() else 0)
    if todo > 0:  # every shard finished and trusted: nothing to start
        with ImageHost(serve_root) if serve_root is not None else nullcontext() as host:
            rewrite = host.rewrite_url if host is not None else url_rewrite
            urls = prepared if rewrite is None else prepared.set_column(0, "url", pa.array(
                [rewrite(u) for u in prepared.column("url").to_pylist()], pa.string()))
            run_img2dataset(dict(
                url_list=str(write_parquet(urls, out_dir / "_input" / f"urls-{key}.parquet")),
                input_format="parquet", url_col="url", save_additional_columns=[KEY_COL, "wnid"],
                output_folder=str(shards), output_format="webdataset", **settings,
                processes_count=processes_count, thread_count=thread_count, retries=retries,
                timeout=timeout, number_sample_per_shard=number_sample_per_shard,
                incremental_mode="incremental" if incremental else "overwrite",
                distributor=distributor, enable_wandb=False, compute_hash="sha256",
                user_agent_token=user_agent_token,
                # None = img2dataset's default opt-out list (noai, noimageai, noindex, ...)
                disallowed_header_directives=None), on_poll=confirm)
        confirm()  # the download returned: every finished shard is its own
    manifest = build_manifest(shards, prepared, settings["encode_format"])
    write_parquet(manifest, out_dir / MANIFEST)
    missing = manifest.loc[manifest["status"].eq(NOT_ATTEMPTED)]
    if len(missing):  # img2dataset gave up on whole shards: a failed stage, so a rerun retries
        raise RuntimeError(f"{len(missing)} of {len(manifest)} row(s) were not attempted: "
                           f"img2dataset gave up on their shard(s) (its output above says why); "
                           f"rerun the download to retry them (finished shards are kept)")
    return manifest


def run_img2dataset(kwargs: dict, on_poll: Callable[[], None] | None = None) -> None:
    """``img2dataset.download(**kwargs)`` in a child process group tied to this process, its
    output relayed, ``on_poll`` called every ``CONFIRM_EVERY_S`` s; the group is killed when the
    child ends or this call raises (a Jupyter interrupt stops the download at once)."""
    code = ("import sys; from laionet.jobs.download import _img2dataset_main; "
            "_img2dataset_main(sys.argv[1:])")
    lib = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ, NO_ALBUMENTATIONS_UPDATE="1", PYTHONUNBUFFERED="1",
               PYTHONPATH=os.pathsep.join(p for p in (lib, os.environ.get("PYTHONPATH")) if p))
    proc = subprocess.Popen([sys.executable, "-c", code, str(os.getpid()), json.dumps(kwargs)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, env=env, start_new_session=True)
    tail: collections.deque[str] = collections.deque(maxlen=25)

    def relay() -> None:  # the child's output as it comes (progress bars included)
        decode = codecs.getincrementaldecoder("utf-8")(errors="replace").decode
        for data in iter(lambda: proc.stdout.read1(1 << 16), b""):
            text = decode(data)
            print(text, end="", flush=True)
            tail.extend(line for line in text.replace("\r", "\n").splitlines() if line)

    relaying = threading.Thread(target=relay, daemon=True)
    relaying.start()
    try:
        while not _exited(proc):
            time.sleep(CONFIRM_EVERY_S)
            if on_poll is not None:
                on_poll()
    finally:
        kill_group(proc.pid)  # before the leader is reaped: its group id cannot be reused yet
        proc.wait()
        relaying.join(timeout=2.0)
    if proc.returncode != 0:
        how = (f"was killed by signal {-proc.returncode}" if proc.returncode < 0
               else f"failed (exit status {proc.returncode})")
        raise RuntimeError(f"img2dataset {how}; the end of its output:\n" + "\n".join(tail))


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


def untrusted_shards(shards: str | Path, prepared: pa.Table, number_sample_per_shard: int,
                     confirmed: set[str] | None = None, encode_format: str = "jpg"
                     ) -> dict[str, str]:
    """Finished shards to download again, with the reason: damaged; rows other than its part of
    the key-sorted input; or, not ``confirmed`` (default: its marker), rows failed with a
    connection error (``CUT_SHORT_KINDS``: a worker orphaned by a killed run)."""
    shards = Path(shards)
    keys = prepared.column(KEY_COL).to_numpy()
    n = int(number_sample_per_shard)
    bad: dict[str, str] = {}
    for name in finished_shards(shards):
        want = keys[int(name) * n:(int(name) + 1) * n]
        try:
            json.loads((shards / f"{name}_stats.json").read_text())
            meta = pq.read_table(shards / f"{name}.parquet",
                                 columns=[KEY_COL, "error_message"]).to_pandas()
            _members(shards / f"{name}.tar", encode_format)
        except Exception as exc:  # noqa: BLE001 - any damage means: redo the shard
            bad[name] = f"is damaged ({type(exc).__name__}: {exc})"
            continue
        got = meta[KEY_COL].to_numpy(np.int64)
        if len(got) != len(want) or set(got.tolist()) != set(want.tolist()):
            bad[name] = f"holds {len(got)} row(s) that are not its {len(want)} row(s) of the input"
        elif not (name in confirmed if confirmed is not None else _marker(shards, name).current()):
            cut = int(error_kind(meta["error_message"]).isin(CUT_SHORT_KINDS).sum())
            if cut:
                bad[name] = (f"was finished after its run was cut short ({cut} row(s) failed "
                             "with a connection error)")
    return bad


def finished_shards(shard_dir: str | Path) -> list[str]:
    """Names ("00000", ...) of the shards img2dataset finished (their stats file exists)."""
    return sorted(p.name[: -len("_stats.json")] for p in Path(shard_dir).glob("*_stats.json"))


def _members(tar_path: Path, encode_format: str) -> dict[str, tuple[int, int]]:
    """sample key -> (offset, size) of its stored image, from the tar headers only."""
    suffix = "." + encode_format
    with tarfile.open(tar_path) as tf:
        return {m.name[: -len(suffix)]: (m.offset_data, m.size) for m in tf.getmembers()
                if m.name.endswith(suffix)}


def error_kind(messages: pd.Series) -> pd.Series:
    """Coarse kind of each img2dataset error message (http_404, timeout, ...; else "other")."""
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
    """One row per input row (``MANIFEST_COLUMNS``: sha256 of the downloaded bytes, size of the
    stored image, shard and member); rows of unfinished shards "not_attempted"."""
    shard_dir = Path(shard_dir)
    frames = []
    cols = [KEY_COL, "status", "error_message", "sha256", "width", "height",
            "original_width", "original_height", "key"]
    for name in finished_shards(shard_dir):
        meta = pq.read_table(shard_dir / f"{name}.parquet", columns=cols).to_pandas()
        meta = meta.rename(columns={"key": "member"})
        meta["shard"] = name
        sizes = {k: n for k, (_, n) in _members(shard_dir / f"{name}.tar", encode_format).items()}
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
    """Stage 03's accounting of a manifest (tables ``03_download_<name>``): overall, status,
    error_kinds and per_class (most first), class_attrition (classes with rows vs with images)."""
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
    """(key, wnid, image) of one downloaded image of each of the first ``n`` classes, by key."""
    sample = manifest[manifest["status"].eq("success")].groupby("wnid").head(1).head(n)
    wnid = dict(zip(sample["key"].tolist(), sample["wnid"]))
    return sorted((k, wnid[k], im) for k, im in read_images(download_dir, sample["key"]).items())


def load_manifest(download_dir: str | Path) -> pd.DataFrame:
    """Stage 03's manifest of a download folder; a clear error without one."""
    path = Path(download_dir) / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: run stage 03 (notebooks/03_download.py)"
                                " first, or point download_dir at its output folder")
    return pd.read_parquet(path)


def download_beyond(table: pd.DataFrame, base_dir: str | Path, cache_root: str | Path,
                    **kwargs) -> tuple[pd.DataFrame, tuple[Path, ...]]:
    """Stages 07 and 09: the images of ``table`` (key, wnid, URL) as stage 03 has them (failed
    rows included: the same images and gaps in Sections 3 and 4), plus the rows it never had,
    downloaded with its settings into ``cache_root/<shards_cache_names>``. Returns their manifest
    (base rows first) and the folders to read them from; ``kwargs`` go to ``download_laionet``."""
    clash = sorted(set(kwargs) & set(SETTINGS))
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
    """The bytes a download with ``settings`` would have stored for ``data`` (stage 04's parity)."""
    out, *_, err = _resizer(*(type(v)(settings.get(k, v)) for k, v in SETTINGS.items()))(
        io.BytesIO(data))
    if err is not None:
        raise ValueError(f"img2dataset's resizer rejected the image: {err}")
    return out


@functools.cache
def _resizer(image_size: int, resize_mode: str, resize_only_if_bigger: bool, encode_format: str,
             skip_reencode: bool):
    from img2dataset.resizer import Resizer

    return Resizer(image_size, resize_mode, resize_only_if_bigger, encode_format=encode_format,
                   skip_reencode=skip_reencode)


def shards_cache_names(settings: dict) -> tuple[str, ...]:
    """The folder names of the shared ``shards`` cache for ``settings``."""
    names = ("laion", f"size{int(settings['image_size'])}", str(settings["resize_mode"]),
             f"only_if_bigger={bool(settings['resize_only_if_bigger'])}",
             str(settings["encode_format"]))
    return names + ("skip_reencode",) if settings.get("skip_reencode") else names


def member_index(download_dir: str | Path, keys: Sequence[int] | None = None,
                 encode_format: str = "jpg") -> pd.DataFrame:
    """key, wnid, shard, tar, offset and size of every downloaded row's image (``keys``: only
    those), from the manifest and the headers of the tars holding them, in (shard, member) order."""
    man = load_manifest(download_dir)
    man = man[man["status"].eq("success")]
    if keys is not None:
        man = man[man["key"].isin({int(k) for k in keys})]
    man = man.sort_values(["shard", "member"], kind="stable")
    shards, rows = shard_dir(download_dir), []
    for name, group in man.groupby("shard", sort=True):
        tar = shards / f"{name}.tar"
        at = _members(tar, encode_format)
        for key, wnid, member in group[["key", "wnid", "member"]].itertuples(index=False):
            if member not in at:
                raise ValueError(f"{tar}: no image {member}.{encode_format} although the manifest "
                                 f"lists it; the shard is damaged: delete {name}_stats.json and "
                                 "rerun stage 03 to redo it")
            rows.append((int(key), wnid, name, str(tar), *at[member]))
    return pd.DataFrame(rows, columns=["key", "wnid", "shard", "tar", "offset", "size"])


def read_member(tar: str | Path, offset: int, size: int) -> bytes:
    """The bytes of one tar member (``member_index``): one seek, one read."""
    with open(tar, "rb") as f:
        f.seek(int(offset))
        return f.read(int(size))


def read_downloads(download_dir: str | os.PathLike | Sequence[str | os.PathLike],
                   keys: Sequence[int] | None = None,
                   encode_format: str = "jpg") -> Iterator[tuple[int, bytes]]:
    """(row key, stored bytes) of downloaded rows (``keys``: only those) in (shard, member) order;
    several folders (``download_beyond``): each row from the first whose manifest lists it."""
    if not isinstance(download_dir, (str, os.PathLike)):
        seen: set[int] = set()
        for d in download_dir:
            left = None if keys is None else [k for k in keys if int(k) not in seen]
            listed = load_manifest(d)["key"]
            seen.update(int(k) for k in (listed if left is None else listed[listed.isin(left)]))
            if left is None or left:
                yield from read_downloads(d, left, encode_format)
        return
    for key, tar, off, size in member_index(download_dir, keys, encode_format)[
            ["key", "tar", "offset", "size"]].itertuples(index=False):
        yield int(key), read_member(tar, off, size)


def read_images(download_dir: str | os.PathLike | Sequence[str | os.PathLike],
                keys: Sequence[int] | None = None) -> dict[int, "Image.Image"]:
    """RGB images of downloaded rows by row key (img2dataset keeps grayscale: converted)."""
    return {k: decode_image(b)[0] for k, b in read_downloads(download_dir, keys)}
