"""One way to decide what is current (issue 20, item 2): for every kind of cached or resumable
product, a setting that changes it rebuilds it and a setting that does not reuses it.

Kinds: download shards (stage 03), per-(model, shard) results (stage 04), per-part markers
(``map_parts``), a stage's cached sub-step (``Stage.step``) and the embedding store. Small
hand-built data; the one real download runs against a loopback host of the test's own.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from laionet.jobs import download as dl
from laionet.jobs import evaluation, parts
from laionet.jobs.embedding_store import EmbeddingStore, embed_with_store
from laionet.jobs.inference import Predictor
from laionet.models.classifiers import Classifier
from laionet.pipeline import stages
from laionet.pipeline.stage import Inputs, Stage
from laionet.util.fingerprint import Marker, fingerprint
from laionet.util.timings import Timings


def _stamps(folder, pattern):
    return {p.name: p.stat().st_mtime_ns for p in sorted(folder.rglob(pattern))}


# ------------------------------------------------------------------------ the shared marker
def test_a_marker_is_current_for_its_key_and_while_its_product_exists(tmp_path):
    product = tmp_path / "table.parquet"
    m = Marker(tmp_path / "done.json", "k1", product)
    assert not m.current()
    product.write_text("x")
    m.done(rows=3)
    assert m.current() and Marker(tmp_path / "done.json").current("k1")
    assert not Marker(tmp_path / "done.json", "k2", product).current()
    assert m.read() == {"fingerprint": "k1", "rows": 3}
    product.unlink()
    assert not m.current()
    assert fingerprint({"a": np.arange(3)}) != fingerprint({"a": np.arange(4)})
    big = np.arange(10_000)  # arrays by their bytes, never by a truncated repr
    assert fingerprint(big) != fingerprint(np.r_[big[:5000], -1, big[5001:]])


# ------------------------------------------------------------------------ stage 03's shards
class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    root = tmp_path_factory.mktemp("http")
    rng = np.random.default_rng(0)
    for i in range(4):
        Image.fromarray(rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)).save(root / f"{i}.jpg")
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_Quiet, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    table = pd.DataFrame({"key": np.arange(4, dtype=np.int64), "wnid": "n01440764",
                          "URL": [f"http://demo.invalid/{i}.jpg" for i in range(4)]})
    yield table, root, lambda u: u.replace("http://demo.invalid",
                                           f"http://127.0.0.1:{server.server_address[1]}")
    server.shutdown()


def _download(table, out, rewrite, **kw):
    return dl.download_laionet(table, out, url_rewrite=rewrite, image_size=32, retries=0,
                               timeout=3, number_sample_per_shard=2, **{"thread_count": 4, **kw})


def _sizes(out):
    return {k: im.size for k, im in dl.read_images(out).items()}


def test_download_shards_are_keyed_by_the_image_settings_not_the_process_count(host, tmp_path):
    table, _, rewrite = host
    out = tmp_path / "dl"
    _download(table, out, rewrite, processes_count=1)
    small, stamps = dl.shard_dir(out), _stamps(dl.shard_dir(out), "*.tar")
    assert len(stamps) == 2 and _sizes(out) == {k: (45, 32) for k in range(4)}  # resized
    # how the work is spread: the same shards, not even img2dataset is started
    _download(table, out, rewrite, processes_count=3, thread_count=2)
    assert dl.shard_dir(out) == small and _stamps(small, "*.tar") == stamps
    # 03.full_size: the images as served, a download of their own; the record tells the truth
    man = _download(table, out, rewrite, processes_count=1, resize_mode="no", skip_reencode=True)
    assert dl.shard_dir(out) != small and man["status"].eq("success").all()
    assert {k: dl.download_settings(out)[k] for k in ("resize_mode", "skip_reencode")} == {
        "resize_mode": "no", "skip_reencode": True}
    assert _sizes(out) == {k: (56, 40) for k in range(4)}
    assert _stamps(small, "*.tar") == stamps  # the resized download is kept for going back


def test_the_shard_fingerprint_covers_rows_urls_shard_size_and_settings():
    table = pd.DataFrame({"key": [3, 1, 2], "wnid": "n1", "URL": ["a", "b", "c"]})
    prepared = dl.prepare_input(table)
    key = functools.partial(dl.shards_key, prepared, 2)
    base = key(dl.SETTINGS)
    assert key(dict(dl.SETTINGS)) == base == dl.shards_key(dl.prepare_input(table[::-1]), 2,
                                                             dl.SETTINGS)
    for change in ({"image_size": 128}, {"resize_only_if_bigger": True}, {"encode_format": "png"},
                   {"skip_reencode": True}, {"resize_mode": "center_crop"}):
        assert key({**dl.SETTINGS, **change}) != base, change
    assert dl.shards_key(prepared, 3, dl.SETTINGS) != base
    other_url = dl.prepare_input(table.assign(URL=["a", "b", "z"]))
    assert dl.shards_key(other_url, 2, dl.SETTINGS) != base
    full = {**dl.SETTINGS, "resize_mode": "no", "skip_reencode": True}
    assert key({**full, "image_size": 999}) == key(full)  # no resize: the size does nothing


# ------------------------------------------------------------- stage 04's (model, shard) results
def _fake_class_table(classes, authors_class_list=False, head_source="wordnet"):
    wnids = [w for w in Path(classes).read_text().split() if not (authors_class_list and w == "n3")]
    return pd.DataFrame({"wnid": wnids, "head": [f"{head_source} {w}" for w in wnids],
                         "name_def": [f"{head_source} {w} which is a thing" for w in wnids]})


class _Tower:
    name = "tower"

    def preprocess(self, im):
        return torch.tensor(np.asarray(im, dtype=np.float32).mean(axis=(0, 1)))

    def embed_images(self, x):
        return torch.nn.functional.normalize(x, dim=1).numpy()

    def embed_texts(self, texts):
        return np.eye(len(texts), 3, dtype=np.float32)


@pytest.fixture
def stage04(tmp_path, monkeypatch, downloads):
    """A download, an ImageNet val folder, a class list and two toy classifiers whose loads are
    counted (run_inference as stage 04 runs it; the models and tables are stand-ins)."""
    colours = [(250, 10, 10), (10, 250, 10), (10, 10, 250)]
    folder = downloads(tmp_path / "dl", {k: Image.new("RGB", (8, 8), colours[k % 3])
                                         for k in range(6)}, wnid="n1")
    (tmp_path / "val").mkdir()
    val = pd.DataFrame({"image_key": [f"v{i}.png" for i in range(3)], "wnid": ["n1", "n2", "n3"],
                        "path": [str(tmp_path / "val" / f"v{i}.png") for i in range(3)]})
    for c, p in zip(colours, val["path"]):
        Image.new("RGB", (8, 8), c).save(p)
    (tmp_path / "classes.txt").write_text("n1\nn2\nn3\n")
    pd.DataFrame({"key": range(6), "wnid": "n1"}).to_parquet(tmp_path / "laionet.parquet")
    weights = {}
    for name in ("a", "b"):
        weights[name] = tmp_path / f"{name}.pth"
        weights[name].write_bytes(name.encode())
    loads = []

    def predictor(spec, universe=None, device="cpu"):
        loads.append(spec.name)
        return Predictor(name=spec.name, group="g", transform=_Tower().preprocess,
                         transform_key="mean", output_wnids=list(universe),
                         score=lambda x: x[:, :len(universe)] * (1 if spec.name == "a" else -1))

    monkeypatch.setattr(evaluation, "class_table", _fake_class_table)
    monkeypatch.setattr(evaluation, "read_imagenet_val", lambda *a: val)
    monkeypatch.setattr(evaluation, "read_classifier_specs", lambda s: [
        Classifier(name=n, arch="toy", checkpoint=str(weights[n])) for n in s.split(",")])
    monkeypatch.setattr(evaluation, "classifier_predictor", predictor)
    monkeypatch.setattr(evaluation, "load_image_encoder", lambda spec, device="cpu": (
        loads.append("zero-shot"), _Tower())[1])
    monkeypatch.setattr(evaluation, "load_text_encoder", lambda spec, device="cpu": _Tower())

    def run(**kw):
        loads.clear()
        params = dict(classes=str(tmp_path / "classes.txt"), classifiers="a,b", download_dir=folder,
                      laionet_path=tmp_path / "laionet.parquet", imagenet_val_dir=tmp_path / "val",
                      zero_shot_encoder="toy-tower", **{"batch_size": 2, **kw})
        ev = evaluation.evaluate_stage(tmp_path / "out", params)
        return sorted(set(loads)), ev

    return run, weights


def test_stage04_results_are_keyed_by_classes_and_models_not_by_workers(stage04, tmp_path):
    run, weights = stage04
    loaded, ev = run()
    assert loaded == ["a", "b", "zero-shot"] and len(ev.results) == 3 * (6 + 3)
    loaded, again = run(n_workers=2, max_models=1, batch_size=3)       # how, not what: reused
    assert loaded == [] and again.results.equals(ev.results)
    # the authors' class list: another universe and other zero-shot prompts, every model again
    loaded, ev = run(authors_class_list=True)
    assert loaded == ["a", "b", "zero-shot"]
    assert set(ev.results.loc[ev.results["model"] == "a", "top5"].dropna().map(len)) == {2}
    # other head names change the zero-shot prompts only; so does the authors' NaN bug
    assert run(authors_class_list=True, head_source="timm")[0] == ["zero-shot"]
    assert run(authors_class_list=True, head_source="timm",
               paper_nan_as_wrong=True)[0] == ["zero-shot"]
    # another checkpoint under the same name and path: that model again
    weights["b"].write_bytes(b"retrained")
    assert run(authors_class_list=True, head_source="timm", paper_nan_as_wrong=True)[0] == ["b"]
    # resolution parity: ImageNet's images resized as the download stored LAIONet's
    record = tmp_path / "dl" / dl.INPUT_FINGERPRINT
    record.write_text(json.dumps({**json.loads(record.read_text()),
                                  "settings": {**dl.SETTINGS, "image_size": 4}}))
    loaded, ev = run(authors_class_list=True, head_source="timm", paper_nan_as_wrong=True,
                     resolution_parity=True)
    assert loaded == ["a", "b", "zero-shot"] and len(ev.results) == 3 * (6 + 3)


# ------------------------------------------------------------------------ map_parts' markers
def _count(path, part, calls, scale=1):
    calls.append(part)
    n = pq.read_metadata(path).num_rows
    return {"rows": n * scale}


def test_part_markers_follow_parameters_inputs_and_part_files_not_workers(tmp_path):
    src = tmp_path / "laion"
    src.mkdir()
    files = [src / f"part-{i:05d}-x.parquet" for i in range(3)]
    for i, f in enumerate(files):
        pq.write_table(pa.table({"TEXT": ["a"] * (i + 1)}), f)
    side = tmp_path / "side.txt"
    side.write_text("v1")
    calls = []

    def run(key="k", n_workers=1, scale=1):
        calls.clear()
        task = functools.partial(_count, calls=calls, scale=scale)
        res = parts.map_parts(task, files, tmp_path / "out", n_workers=n_workers, fingerprint=key,
                              part_inputs=lambda p: [side] if p == 2 else [])
        return sorted(res.done), sorted(res.skipped)

    assert run() == ([0, 1, 2], [])
    assert run(n_workers=4) == ([], [0, 1, 2]) and calls == []          # workers: reused
    assert run(key="other", scale=2) == ([0, 1, 2], [])                 # a parameter: redone
    assert parts.done_stats(tmp_path / "out")[2]["rows"] == 6
    pq.write_table(pa.table({"TEXT": ["b"] * 2}), files[1])             # a changed part
    assert run(key="other", scale=2) == ([1], [0, 2])
    side.write_text("v2")                                               # a file a part reads
    assert run(key="other", scale=2) == ([2], [0, 1])
    (tmp_path / "out" / "done" / "part-00000.json").write_text("{broken")
    assert run(key="other", scale=2) == ([0], [1, 2])


# ------------------------------------------------------------------------ Stage.step
def test_a_stage_step_is_current_until_a_value_it_uses_changes(tmp_path):
    spec = stages.spec("06_imagenetv2_selection_frequency")

    def stage(**params):
        return Stage(spec.name, spec, "p", "p", {"device": "cpu", "batch_size": 8, **params},
                     Inputs(classifiers="demo:/m"), None, tmp_path, tmp_path,
                     Timings(tmp_path / "t.json"), _fps={"classifiers": "fp-a"})

    uses = ["classifiers", "batch_size"]
    step = stage().step("accuracy", uses)
    assert not step.current()
    step.done(files=["x"])
    assert stage().step("accuracy", uses).current()
    assert stage(device="cuda").step("accuracy", uses).current()        # not used: reused
    assert not stage(batch_size=16).step("accuracy", uses).current()    # used: redone
    other = stage()
    other._fps = {"classifiers": "fp-b"}                                # another input's content
    assert not other.step("accuracy", uses).current()


# ------------------------------------------------------------------------ the embedding store
def test_embedding_store_entries_follow_encoder_and_text_not_batch_size(tmp_path,
                                                                        hash_text_encoder):
    class Other(hash_text_encoder):
        name = "hash-v2"

    enc, keys = hash_text_encoder(), np.arange(5, dtype=np.int64)
    texts = np.array([f"caption {i}" for i in range(5)], dtype=object)

    def store(e):
        return EmbeddingStore.at(tmp_path, "laion", e.name)

    first = embed_with_store(enc, keys, texts, store(enc), batch_size=2)
    assert len(enc.seen) == 5
    enc.seen.clear()
    again = embed_with_store(enc, keys, texts, store(enc), batch_size=4)
    assert enc.seen == [] and np.array_equal(first, again)              # batch size: reused
    texts[3] = "a caption changed under the same key"
    changed = embed_with_store(enc, keys, texts, store(enc), batch_size=4)
    assert enc.seen == [texts[3]] and not np.allclose(changed[3], first[3])
    other = Other()
    embed_with_store(other, keys, texts, store(other))                  # another encoder: its own
    assert len(other.seen) == 5 and store(other).dir != store(enc).dir
    with pytest.raises(ValueError, match="store"):
        embed_with_store(other, keys, texts, store(enc))
    assert os.path.isdir(store(enc).dir)
