"""Stage 03: img2dataset downloads from a loopback host, failures counted, resume, read back.

The tests start their own tiny HTTP server over a tmp folder of images they write (RGB, L, P,
RGBA, CMYK, corrupt bytes), plus URLs that 404 and a port nobody listens on.
"""

from __future__ import annotations

import functools
import http.server
import os
import threading

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from conftest import free_port
from laionet.jobs import download as dl

N_PER_MODE = 3          # RGB, L, P, RGBA, CMYK images, 3 each
N_404 = 3
N_CORRUPT = 2
N_UNREACHABLE = 2
SHARD = 5               # small shards so the set spans several


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep pytest output readable
        pass


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    """Serve a folder of test images on 127.0.0.1; yields (base_url, root)."""
    root = tmp_path_factory.mktemp("http")
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", root
    server.shutdown()
    server.server_close()



def _write_images(root) -> pd.DataFrame:
    """Images of every mode + broken cases; returns the expected outcome per key."""
    rng = np.random.default_rng(0)
    rows = []
    key = 0
    for mode, ext in [("RGB", "jpg"), ("L", "png"), ("P", "png"), ("RGBA", "png"),
                      ("CMYK", "jpg")]:
        for _ in range(N_PER_MODE):
            arr = rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)
            im = Image.fromarray(arr, "RGB")
            im = im.convert(mode) if mode != "P" else im.quantize(16)
            name = f"img{key}.{ext}"
            im.save(root / name)
            rows.append((key, f"/{name}", "success", mode))
            key += 1
    for _ in range(N_404):
        rows.append((key, f"/missing{key}.jpg", "failed_to_download", "404"))
        key += 1
    for _ in range(N_CORRUPT):
        (root / f"bad{key}.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg" * 3)
        rows.append((key, f"/bad{key}.jpg", "failed_to_resize", "corrupt"))
        key += 1
    return pd.DataFrame(rows, columns=["key", "path", "expect", "case"])


@pytest.fixture(scope="module")
def world(host):
    base, root = host
    exp = _write_images(root)
    port = free_port()
    table = pd.DataFrame({
        # keys in the authors' global layout: part * 1e8 + row
        "key": (3 * 100_000_000 + exp["key"]).astype("int64"),
        "wnid": [f"n{i % 3:08d}" for i in range(len(exp))],
        "URL": ["http://laion-demo.invalid" + p for p in exp["path"]],
    })
    unreachable = pd.DataFrame({"key": 3 * 100_000_000 + 1000 + np.arange(N_UNREACHABLE),
                                "wnid": "n00000009",
                                "URL": [f"http://127.0.0.1:{port}/x{i}.jpg"
                                        for i in range(N_UNREACHABLE)]})
    table = pd.concat([table, unreachable], ignore_index=True)
    # shuffle: the wrapper must sort by key itself
    table = table.sample(frac=1.0, random_state=1).reset_index(drop=True)
    rewrite = lambda u: u.replace("http://laion-demo.invalid", base)  # noqa: E731
    return table, rewrite, exp


def _download(table, out, rewrite, **kw):
    return dl.download_laionet(table, out, url_rewrite=rewrite, image_size=32,
                               processes_count=1, thread_count=8, retries=0, timeout=3,
                               number_sample_per_shard=SHARD, **kw)


@pytest.fixture(scope="module")
def downloaded(world, tmp_path_factory):
    table, rewrite, exp = world
    out = tmp_path_factory.mktemp("dl")
    man = _download(table, out, rewrite)
    return out, man


def test_manifest_counts_every_outcome(world, downloaded):
    table, _, exp = world
    out, man = downloaded
    assert len(man) == len(table) and man["key"].is_unique
    assert list(man.columns) == dl.MANIFEST_COLUMNS
    on_disk = pd.read_parquet(out / dl.MANIFEST)
    assert len(on_disk) == len(man)
    # stages 07/09 download what stage 03 lacks with these same settings (download_beyond)
    assert dl.download_settings(out) == {"image_size": 32, "resize_mode": "keep_ratio",
                                         "resize_only_if_bigger": False, "encode_format": "jpg",
                                         "skip_reencode": False}
    counts = man["status"].value_counts().to_dict()
    assert counts.get("success") == 5 * N_PER_MODE
    assert counts.get("failed_to_download") == N_404 + N_UNREACHABLE
    assert counts.get("failed_to_resize") == N_CORRUPT
    kinds = man["error_kind"].value_counts().to_dict()
    assert kinds.get("http_404") == N_404
    assert kinds.get("connection_refused") == N_UNREACHABLE
    assert kinds.get("corrupt_image") == N_CORRUPT
    ok = man[man["status"] == "success"]
    assert ok["sha256"].str.fullmatch(r"[0-9a-f]{64}").all() and (ok["size"] > 0).all()
    assert man.loc[man["status"] != "success", "sha256"].isna().all()
    # wnids travel with the row key
    assert man.set_index("key")["wnid"].equals(table.set_index("key")["wnid"].loc[man["key"]])


def test_sha256_is_of_the_served_bytes(world, downloaded, host):
    import hashlib
    _, root = host
    _, man = downloaded
    row = man[man["status"] == "success"].iloc[0]
    idx = int(row["key"]) - 3 * 100_000_000
    served = next(root.glob(f"img{idx}.*")).read_bytes()
    assert row["sha256"] == hashlib.sha256(served).hexdigest()


def test_non_rgb_images_are_converted_and_kept(world, downloaded):
    _, _, exp = world
    out, man = downloaded
    got = dl.read_images(out)
    ok_keys = set(man.loc[man["status"] == "success", "key"])
    assert set(got) == ok_keys
    for case in ("L", "P", "RGBA", "CMYK"):
        keys = 3 * 100_000_000 + exp.loc[exp["case"] == case, "key"]
        assert set(keys) <= ok_keys, f"{case} images must be kept"
        for k in keys:
            im = got[int(k)]
            assert im.mode == "RGB"
            # smaller side resized to image_size=32 keeping the 40x56 ratio
            assert min(im.size) == 32 and max(im.size) in (44, 45)
            assert np.asarray(im).std() > 10  # real content, not a blank conversion


def test_a_few_keys_are_read_through_the_key_index_only(downloaded, monkeypatch):
    """read_images(keys=...) opens only the tars holding them and reads just their bytes:
    the same images as the full scan."""
    import tarfile

    out, man = downloaded
    full = {k: np.asarray(im) for k, im in dl.read_images(out).items()}
    ok = man[man["status"] == "success"].sort_values(["shard", "member"])
    want = ok.groupby("shard").head(1)["key"].head(2).tolist()   # two rows of two shards
    idx = dl.member_index(out, want)
    assert idx["key"].tolist() == want and idx["tar"].nunique() == 2
    opened = []
    real_open = tarfile.open
    monkeypatch.setattr(tarfile, "open", lambda p, *a, **k: opened.append(p) or real_open(p, *a, **k))
    got = dl.read_images(out, keys=want)
    assert len(set(map(str, opened))) == 2 < man["shard"].nunique()
    assert list(got) == want
    for k, im in got.items():
        assert np.array_equal(np.asarray(im), full[k])
    assert dl.read_member(*idx.loc[0, ["tar", "offset", "size"]])[:2] == b"\xff\xd8"  # a JPEG


def test_resume_redoes_only_unfinished_shards(world, tmp_path):
    table, rewrite, _ = world
    out = tmp_path / "dl"
    _download(table, out, rewrite)
    shards = dl.finished_shards(dl.shard_dir(out))
    assert len(shards) >= 4
    # simulate a run killed while writing the second shard: no stats file, a truncated tar
    victim = shards[1]
    (dl.shard_dir(out) / f"{victim}_stats.json").unlink()
    tar = dl.shard_dir(out) / f"{victim}.tar"
    tar.write_bytes(tar.read_bytes()[:100])
    before = {s: os.stat(dl.shard_dir(out) / f"{s}.tar").st_mtime_ns for s in shards if s != victim}
    partial = dl.build_manifest(dl.shard_dir(out), dl.prepare_input(table))
    assert (partial["status"] == dl.NOT_ATTEMPTED).sum() == SHARD
    man = _download(table, out, rewrite)
    after = {s: os.stat(dl.shard_dir(out) / f"{s}.tar").st_mtime_ns for s in before}
    assert after == before, "finished shards must not be redone"
    assert victim in dl.finished_shards(dl.shard_dir(out))
    assert (man["status"] == dl.NOT_ATTEMPTED).sum() == 0
    assert (man["status"] == "success").sum() == 5 * N_PER_MODE


def test_a_shard_finished_after_its_run_was_cut_short_is_downloaded_again(world, downloaded,
                                                                         tmp_path):
    """A killed run's orphaned worker fills the rest of its shard with "Connection refused"
    (the host died with the kernel) and writes the shard's stats: on resume such a shard, and
    one whose rows are not its part of the input, is downloaded again, whole; shards the
    download saw finish while it was alive are kept, genuine connection failures included."""
    import shutil

    table, rewrite, _ = world
    src, reference = downloaded
    out = tmp_path / "dl"
    shutil.copytree(src, out)  # copy2: modification times kept
    shards = dl.shard_dir(out)
    prepared = dl.prepare_input(table)
    markers = shards.with_name(shards.name + ".done")  # shards seen finished while alive
    names = dl.finished_shards(shards)
    assert {p.stem for p in markers.glob("*.json")} == set(names)
    refused = reference.loc[reference["error_kind"].eq("connection_refused"), "shard"]
    refused = sorted(refused.unique())
    assert refused, "the test world has unreachable rows"
    assert dl.untrusted_shards(shards, prepared, SHARD, set(names)) == {}
    cut = dl.untrusted_shards(shards, prepared, SHARD, set())  # as if nobody saw them finish
    assert sorted(cut) == refused and all("cut short" in why for why in cut.values())
    # the shards as a killed run leaves them: no markers; and one shard with a row missing
    shutil.rmtree(markers)
    other = next(n for n in names if n not in refused)
    meta = pd.read_parquet(shards / f"{other}.parquet")
    meta.iloc[1:].to_parquet(shards / f"{other}.parquet")
    assert "not its" in dl.untrusted_shards(shards, prepared, SHARD, set(names))[other]
    stamp = {n: os.stat(shards / f"{n}.tar").st_mtime_ns for n in names}
    man = _download(table, out, rewrite)
    redone = {n for n in names if os.stat(shards / f"{n}.tar").st_mtime_ns != stamp[n]}
    assert redone == set(refused) | {other}
    pd.testing.assert_frame_equal(man, reference)  # row for row what the first run recorded
    assert {p.stem for p in markers.glob("*.json")} == set(names)


def test_a_changed_input_is_a_new_download_and_the_old_one_is_kept(world, tmp_path):
    table, rewrite, _ = world
    out = tmp_path / "dl"
    small, smaller = table.iloc[:SHARD], table.iloc[: SHARD - 1]
    _download(small, out, rewrite)
    first = dl.shard_dir(out)
    stamp = {p.name: p.stat().st_mtime_ns for p in first.glob("*.tar")}
    man = _download(smaller, out, rewrite)          # e.g. LAIONet at another threshold
    assert dl.shard_dir(out) != first and len(man) == SHARD - 1
    keys = set(dl.read_images(out))
    assert keys <= set(smaller["key"]), "rows of the old input must not leak into the new one"
    _download(small, out, rewrite)                  # back to the first input: nothing redone
    assert dl.shard_dir(out) == first
    assert {p.name: p.stat().st_mtime_ns for p in first.glob("*.tar")} == stamp


def test_bad_input_names_the_problem():
    with pytest.raises(ValueError, match="URL"):
        dl.prepare_input(pd.DataFrame({"key": [1], "wnid": ["n1"]}))
    with pytest.raises(ValueError, match="duplicate row keys"):
        dl.prepare_input(pd.DataFrame({"key": [1, 1], "wnid": ["a", "a"], "URL": ["u", "v"]}))


def test_error_kind_classification():
    msgs = pd.Series(["HTTP Error 404: Not Found", "HTTP Error 503: x",
                      "<urlopen error [Errno 111] Connection refused>", "timed out",
                      "Image decoding error", None, "something odd"])
    assert dl.error_kind(msgs).tolist() == ["http_404", "http_503", "connection_refused",
                                            "timeout", "corrupt_image", pd.NA, "other"]


def test_serve_root_runs_the_loopback_host_only_during_the_download(tmp_path):
    from laionet.demo.formats import DEMO_URL_PREFIX

    root = tmp_path / "http"
    root.mkdir()
    for i in range(3):
        Image.new("RGB", (40, 30), (80 * i, 100, 50)).save(root / f"{i}.jpg")
    table = pd.DataFrame({"key": np.arange(4, dtype=np.int64), "wnid": "n02125311",
                          "URL": [f"{DEMO_URL_PREFIX.rstrip('/')}/{i}.jpg" for i in range(4)]})
    threads = set(threading.enumerate())
    man = dl.download_laionet(table, tmp_path / "dl", serve_root=root, image_size=32,
                              processes_count=1, thread_count=4, retries=0, timeout=3)
    assert man["status"].tolist() == ["success"] * 3 + ["failed_to_download"]  # 3.jpg: a 404
    assert set(threading.enumerate()) <= threads, "the host's server thread must be stopped"


def test_report_accounts_for_every_row():
    man = pd.DataFrame({"key": range(6), "wnid": ["a", "a", "a", "b", "b", "c"],
                        "status": ["success", "success", "failed_to_download", "success",
                                   "failed_to_resize", "failed_to_download"],
                        "error_kind": [None, None, "http_404", None, "corrupt_image", "http_404"]})
    r = dl.report(man)
    assert list(r) == ["overall", "status", "error_kinds", "per_class", "class_attrition"]
    assert r["overall"].iloc[0].tolist() == [6, 3, 0.5]
    assert dict(zip(r["status"]["status"], r["status"]["rows"])) == {
        "success": 3, "failed_to_download": 2, "failed_to_resize": 1}
    assert r["error_kinds"].values.tolist() == [["http_404", 2], ["corrupt_image", 1]]
    pc = r["per_class"].set_index("wnid")
    assert list(pc.index) == ["a", "b", "c"]  # most rows first
    assert pc.loc["a"].tolist() == [3, 2, 2 / 3] and pc.loc["c", "success_rate"] == 0
    assert r["class_attrition"].iloc[0].tolist() == [3, 2]  # c lost every image
    empty = dl.report(man.iloc[:0])
    assert empty["overall"]["rows"][0] == 0 and np.isnan(empty["overall"]["success_rate"][0])


def test_download_figures(downloaded):
    from laionet.plots import download as download_plots

    out, man = downloaded
    r = dl.report(man)
    assert len(download_plots.plot_success(r).axes) == 2
    ex = dl.example_images(out, man, n=2)
    assert [w for _, w, _ in ex] == sorted(man[man["status"] == "success"].groupby("wnid")
                                           .head(1).head(2).set_index("key")["wnid"].sort_index())
    assert len(download_plots.plot_examples(ex).axes) == len(ex)
    assert download_plots.plot_examples([]) is None


def test_the_authors_full_size_download_keeps_the_served_bytes(world, host, tmp_path):
    """paper_spec A10: the authors stored images as served (no resize). `resize_mode no` with
    `skip_reencode` keeps every served JPEG byte for byte (PNGs become JPEG: the shards hold jpg);
    the default resizes to `image_size` and re-encodes (B5's documented deviation)."""
    import hashlib

    table, rewrite, exp = world
    _, root = host
    jpeg = exp[(exp["case"] == "RGB")]
    rows = table[table["key"].isin(3 * 100_000_000 + jpeg["key"])]
    served = {3 * 100_000_000 + k: hashlib.sha256((root / p.lstrip("/")).read_bytes()).hexdigest()
              for k, p in zip(jpeg["key"], jpeg["path"])}
    def stored(folder):  # sha256 of the bytes the shards hold (the manifest hashes the served ones)
        return {k: hashlib.sha256(b).hexdigest()
                for k, b in dl.read_downloads([folder], sorted(served))}

    full = _download(rows, tmp_path / "full", rewrite, resize_mode="no", skip_reencode=True)
    assert stored(tmp_path / "full") == served == full.set_index("key")["sha256"].to_dict()
    assert dl.download_settings(tmp_path / "full")["skip_reencode"] is True
    assert dl.shards_cache_names(dl.download_settings(tmp_path / "full"))[-1] == "skip_reencode"
    _download(rows, tmp_path / "resized", rewrite)
    assert not set(stored(tmp_path / "resized").values()) & set(served.values())
