"""Per-class samples of downloaded rows and local images, embedded through the shared stores
(``image_embeddings.Embedder``), and LAION images keyed by their downloaded bytes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from laionet.jobs import image_embeddings as ie
from laionet.method import similarity as sim


def _colours(keys, size=4):
    return {int(k): Image.new("RGB", (size, size), (int(k) % 256, 7, 9)) for k in keys}


def test_classes_draws_the_seeded_sample_and_embeds_it(tmp_path, colour_encoder, downloads):
    rows = pd.DataFrame({"key": np.arange(100, 130), "wnid": ["a"] * 20 + ["b"] * 10,
                         "similarity": np.linspace(0, 1, 30)})
    dl = downloads(tmp_path / "dl", _colours(rows["key"]))
    enc = colour_encoder()
    embed, src = ie.Embedder(enc, tmp_path / "cache", progress=False), ie.ImageSource.laion(dl)
    by = embed.classes(rows, src, n_per_class=5, seed=3)
    assert {w: len(E) for w, E in by.items()} == {"a": 5, "b": 5}
    assert (tmp_path / "cache" / ie.LAION / enc.name).is_dir()
    want = sim.sample_per_class(rows.rename(columns={"key": "image_key"}), 5, 3)
    np.testing.assert_array_equal(by["a"], embed(want[want["wnid"] == "a"], src).emb)
    embed.classes(rows, src, 5, 3)
    assert enc.n == 10                             # stored: nothing embedded again
    all_rows = embed(rows.iloc[::-1], src)         # no sampling, aligned to the rows
    assert list(all_rows.keys) == list(range(129, 99, -1)) and enc.n == 30
    assert {w: len(E) for w, E in embed.classes(rows.iloc[:12], src, 5, 3).items()} == {"a": 5}
    other = embed.with_encoder(colour_encoder())
    assert other.cache_root == embed.cache_root and other.encoder is not enc
    with pytest.raises(ValueError, match="both 'key' and 'image_key'"):
        embed(rows.assign(image_key=rows["key"]), src)


def test_local_images_through_another_source(tmp_path, colour_encoder):
    paths = []
    for i, c in enumerate([(255, 0, 0), (250, 5, 0), (0, 0, 255)]):
        paths.append(str(tmp_path / f"v{i}.png"))
        Image.new("RGB", (4, 4), c).save(paths[-1])
    val = pd.DataFrame({"image_key": ["v0", "v1", "v2"], "wnid": ["a", "a", "b"], "path": paths})
    e = ie.Embedder(colour_encoder(), tmp_path / "cache")(val, ie.ImageSource.imagenet_val())
    assert list(e.keys) == ["v0", "v1", "v2"] and e.dataset == ie.IMAGENET_VAL
    by = e.by_class()
    assert {w: len(E) for w, E in by.items()} == {"a": 2, "b": 1}
    assert by["a"][0] @ by["a"][1] > by["a"][0] @ by["b"][0]
    # (key, wnid) rows: a key may serve two classes; keys without an embedding are left out
    pairs = pd.DataFrame({"wnid": ["b", "a", "b", "a"], "key": ["v0", "v1", "v2", "nope"]})
    two = e.by_class(pairs)
    assert {w: len(E) for w, E in two.items()} == {"a": 1, "b": 2}
    np.testing.assert_array_equal(two["b"], e.emb[[0, 2]])


def test_other_download_settings_are_never_served_the_other_settings_embedding(
        tmp_path, colour_encoder, downloads):
    """The same LAION row downloaded by stage 03 and by 07/09 shares one store ("laion"): with
    the same bytes it is embedded once; resized otherwise (other bytes) it is embedded again."""
    small = {7: Image.new("RGB", (4, 4), (250, 0, 0))}
    large = {7: Image.new("RGB", (16, 16), (0, 0, 250))}  # another resize: other bytes
    stage03 = downloads(tmp_path / "03", small)
    same = downloads(tmp_path / "shards_same", small)
    other = downloads(tmp_path / "shards_other", large)
    rows = pd.DataFrame({"image_key": [7], "wnid": ["a"]})
    enc = colour_encoder()
    embed = ie.Embedder(enc, tmp_path / "c", progress=False)
    a = embed(rows, ie.ImageSource.laion(stage03))
    b = embed(rows, ie.ImageSource.laion(same))
    assert enc.n == 1 and np.array_equal(a.emb, b.emb)  # same row, same bytes: shared
    c = embed(rows, ie.ImageSource.laion(other))
    assert enc.n == 2 and c.emb[0][2] > c.emb[0][0]     # other bytes: its own embedding
    again = embed(rows, ie.ImageSource.laion(stage03))
    assert enc.n == 2 and np.array_equal(again.emb, a.emb)


def test_shard_names_key_the_download_settings():
    from laionet.jobs.download import shards_cache_names as names

    s = {"image_size": 256, "resize_mode": "keep_ratio", "resize_only_if_bigger": True,
         "encode_format": "jpg"}
    assert names(s) == ("laion", "size256", "keep_ratio", "only_if_bigger=True", "jpg")
    assert names(s) != names({**s, "resize_only_if_bigger": False}) != names({**s, "image_size": 128})
    src = ie.ImageSource.laion("/x")
    assert src.dataset == ie.LAION and str(src.download_dir) == "/x"
    assert ie.ImageSource.imagenetv2("top-images").dataset == "imagenetv2-top-images"
    assert ie.ImageSource.imagenet_train().dataset == ie.IMAGENET_TRAIN
