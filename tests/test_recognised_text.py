"""The recognised-text exclusion (paper_spec A7): the authors' flag rule, the cached step over a
download, stage 04's filter, and the OCR engine on real photos with rendered text."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from laionet.jobs import ocr
from laionet.method import recognised_text as rt
from laionet.pipeline import stages

# ------------------------------------------------------------------------------ the flag rule


def _rows(texts, wnid="n1"):
    return pd.DataFrame({"key": range(len(texts)), "wnid": wnid, rt.TEXT_COL: texts})


CLASSES = pd.DataFrame({"wnid": ["n1", "n2", "n3"], "head": ["teddy", "tiger cat", "jack-o'-lantern"],
                        "lemmas": [["teddy", "teddy bear"], ["tiger cat"], ["jack-o'-lantern"]]})


def test_head_name_rule_is_the_authors():
    names = rt.class_names(CLASSES)  # head names only
    f = rt.flag(_rows(["a teddy for sale", "teddybear", "my teddy.", "steddy", None, "NO TEXT",
                       "teddy bear"]), names)
    # padded substring: a word, also before punctuation; never inside a word; null: False
    assert f.tolist() == [True, False, True, False, False, False, True]
    cat = rt.flag(_rows(["tiger  cat", "tiger cat!", "cat tiger", "a tiger-cat"], "n2"), names)
    assert cat.tolist() == [False, True, False, True]  # punctuation -> space, no other folding
    # the head's own punctuation becomes spaces too (both sides go through transform_text)
    jack = rt.flag(_rows(["jack o  lantern", "jack-o'-lantern", "jack o lantern"], "n3"), names)
    assert jack.tolist() == [True, True, False]


def test_special_values_never_match_and_the_lemma_fix_is_a_parameter():
    special = pd.DataFrame({"key": range(3), "wnid": "t", rt.TEXT_COL: list(rt.SPECIAL)})
    table = pd.DataFrame({"wnid": ["t"], "head": ["text"], "lemmas": [["error", "no"]]})
    assert not rt.flag(special, rt.class_names(table, "lemmas")).any()  # upper case: never
    rows = _rows(["a teddy bear", "the bear"])
    assert rt.flag(rows, rt.class_names(CLASSES, "head")).tolist() == [True, False]
    lem = rt.class_names(CLASSES, "lemmas")
    assert lem["n1"] == ["teddy", "teddy bear"]
    fence = pd.DataFrame({"wnid": ["n4"], "head": ["chainlink fence"],
                          "lemmas": [["chain-link fence", "chain fence"]]})
    rows = _rows(["chain link fence for sale", "chainlink fence", "a fence"], "n4")
    assert rt.flag(rows, rt.class_names(fence, "head")).tolist() == [False, True, False]
    assert rt.flag(rows, rt.class_names(fence, "lemmas")).tolist() == [True, True, False]
    with pytest.raises(ValueError, match="rule"):
        rt.class_names(CLASSES, "all")
    with pytest.raises(KeyError, match="class table"):
        rt.flag(_rows(["x"], "n9"), lem)


def test_stage_declarations_match_the_module():
    assert stages.CHOICES["ocr_engine"] == ocr.ENGINES
    assert stages.CHOICES["recognised_text_rule"] == rt.RULES
    d = stages.STAGES["03_download"]
    assert ocr.PRODUCT in d.products and "recognised_text" in d.caches
    assert ocr.DEFAULT_ENGINE in ocr.ENGINES


# ------------------------------------------------------------------------------ the cached step

class CountingEngine:
    """Reads the mean red value of an image as its 'text' (a stand-in, no OCR), counting reads;
    raises on a pure blue image (a recognition error)."""

    name = "counting-v1"

    def __init__(self):
        self.n = 0

    def read(self, arr):
        self.n += 1
        if arr[..., 2].mean() > 200 and arr[..., 0].mean() < 50:
            raise RuntimeError("engine failure")
        return f"red {int(arr[..., 0].mean() // 32)}"


def _solid(rgb):
    return Image.new("RGB", (16, 16), rgb)


def _with_failed_row(folder, key=99):
    man = pd.read_parquet(folder / "manifest.parquet")
    man = pd.concat([man, pd.DataFrame([{"key": key, "wnid": "w", "status": "failed_to_download",
                                         "shard": None, "member": None}])], ignore_index=True)
    man.to_parquet(folder / "manifest.parquet")
    return man


def test_step_texts_every_row_caches_by_content_and_resumes(tmp_path, downloads):
    images = {1: _solid((255, 0, 0)), 2: _solid((255, 0, 0)), 3: _solid((0, 0, 255)),
              4: _solid((10, 10, 10))}
    folder = downloads(tmp_path / "dl", images)
    _with_failed_row(folder)
    eng = CountingEngine()
    t = ocr.recognise_downloads(folder, tmp_path / "cache", eng, batch_size=1, progress=False,
                               dest=folder / ocr.PRODUCT)
    by_key = dict(zip(t["key"], t[rt.TEXT_COL]))
    assert by_key == {1: "red 7", 2: "red 7", 3: rt.RECOGNITION_ERROR, 4: "red 0",
                      99: rt.DOWNLOAD_ERROR}
    assert eng.n == 3  # rows 1 and 2 share their bytes: read once
    assert ocr.read_table(folder).equals(t[["key", "wnid", rt.TEXT_COL]])
    cache_files = sorted((tmp_path / "cache" / "counting-v1").glob("*.parquet"))
    assert len(cache_files) == 3  # one file per batch (batch_size=1)

    # a kill after the first batch: only that file survives; the rerun reads the other images
    for p in cache_files[1:]:
        p.unlink()
    eng2 = CountingEngine()
    t2 = ocr.recognise_downloads(folder, tmp_path / "cache", eng2, batch_size=2, progress=False)
    assert eng2.n == 2 and t2.attrs["cache_hits"] == 2
    assert dict(zip(t2["key"], t2[rt.TEXT_COL])) == by_key

    # same bytes again: nothing read; other bytes under the same key: read again
    eng3 = CountingEngine()
    ocr.recognise_downloads(folder, tmp_path / "cache", eng3, progress=False)
    assert eng3.n == 0
    folder2 = downloads(tmp_path / "dl2", {**images, 4: _solid((130, 0, 0))})
    t4 = ocr.recognise_downloads(folder2, tmp_path / "cache", eng3, progress=False)
    assert eng3.n == 1 and dict(zip(t4["key"], t4[rt.TEXT_COL]))[4] == "red 4"


def test_cache_compacts_and_keeps_every_entry(tmp_path, monkeypatch):
    monkeypatch.setattr(ocr, "COMPACT_AT", 4)
    c = ocr.TextCache(tmp_path, "e")
    for i in range(9):
        c.add([i], [f"t{i}"])
    files = list(tmp_path.glob("*.parquet"))
    assert len(files) < 4
    assert ocr.TextCache(tmp_path, "e").texts == {i: f"t{i}" for i in range(9)}


def test_step_off_writes_null_texts_and_stage04_filter(tmp_path, downloads):
    folder = downloads(tmp_path / "dl", {1: _solid((0, 0, 0)), 2: _solid((9, 9, 9))}, wnid="n1")
    off = ocr.download_step(folder, tmp_path / "cache", enabled=False)
    assert off[rt.TEXT_COL].isna().all() and (folder / ocr.PRODUCT).is_file()
    with pytest.raises(ValueError, match="ocr_engine"):
        ocr.download_step(folder, tmp_path / "cache", engine="east")
    # stage 04: flag under the rule, drop only the flagged LAIONet rows
    ocr.write_table(pd.DataFrame({"key": [1, 2], "wnid": ["n1", "n1"],
                                 rt.TEXT_COL: ["cute teddy bear", "NO TEXT"]}), folder / ocr.PRODUCT)
    ex = ocr.exclusion_of_download(folder, CLASSES, rule="head")
    assert ex.keys == {"1"}
    res = pd.DataFrame({"dataset": ["LAIONet", "LAIONet", "ImageNet"], "image_key": ["1", "2", "1"],
                        "model": "m", "wnid": "n1", "correct1": [True, False, True]})
    kept = ex.drop(res)
    assert kept["dataset"].tolist() == ["LAIONet", "ImageNet"] and kept["image_key"].tolist() == ["2", "1"]
    s = ex.summary().set_index("outcome")["rows"]
    assert s["some text"] == 1 and s[rt.NO_TEXT] == 1 and s[rt.FLAG_COL] == 1
    (folder / ocr.PRODUCT).unlink()
    with pytest.raises(FileNotFoundError, match="drop_recognised_text=False"):
        ocr.exclusion_of_download(folder, CLASSES)


def test_accuracy_effect_compares_laionet_only():
    cols = ["dataset", "model", "k", "weighting", "accuracy"]
    a = pd.DataFrame([["LAIONet", "m", 1, "equal", 0.5], ["ImageNet", "m", 1, "equal", 0.9]], columns=cols)
    b = pd.DataFrame([["LAIONet", "m", 1, "equal", 0.4], ["ImageNet", "m", 1, "equal", 0.9]], columns=cols)
    e = rt.accuracy_effect(a, b)
    assert len(e) == 1 and e.loc[0, "change"] == pytest.approx(-0.1)


# ------------------------------------------------------------------------------ text rendering

def test_draw_text_writes_inside_the_image_and_leaves_the_rest():
    from laionet.demo.text import TextStyle, draw_text, fitting_style

    im = Image.new("RGB", (64, 64), (40, 90, 40))
    style = fitting_style(np.random.default_rng(0), "siberian husky", 64)
    out = np.asarray(draw_text(im, "siberian husky", style))
    changed = (out != np.asarray(im)).any(-1)
    assert changed.sum() > 40
    xs = np.nonzero(changed)[1]
    assert xs.min() > 0 and xs.max() < 63  # fits: not clipped at the edges
    big = draw_text(im, "x", TextStyle(font_px=30, angle=90.0, centre=(1.0, 1.0)))
    assert big.size == im.size


def test_demo_world_writes_class_names_into_a_small_share_and_records_them():
    from laionet.demo import sampling
    from laionet.demo import world as W

    classes = pd.DataFrame({"wnid": ["n01", "n02", "n03"], "cid": [0, 1, 2],
                            "lemmas": [["tiger cat"], ["teddy", "teddy bear"], ["mouse"]],
                            "head": ["tiger cat", "teddy", "mouse"], "label": [0, 1, 2]})
    wd = sampling.make_world(classes, W._rng(0, "world"))
    s = sampling.draw(wd, 200, W._rng(0, "laion"))
    px = sampling.render(wd, s, W._rng(0, "laion_pixels"))
    out, truth = W._write_class_text(wd, s, px, W._rng(0, "laion_text"))
    has = truth["text_in_image"].notna().to_numpy()
    assert 0.01 < has.mean() < 0.1 and (s["label"].to_numpy()[has] >= 0).all()
    changed = (out != px).reshape(len(px), -1).any(1)
    assert (changed == has).all()  # only the chosen images change
    heads = wd.classes["head"].to_numpy()[s["label"].to_numpy()[has]]
    lemmas = wd.classes["lemmas"].to_numpy()[s["label"].to_numpy()[has]]
    written = truth["text_in_image"].to_numpy()[has]
    assert all(t == h or t in lem for t, h, lem in zip(written, heads, lemmas))
    assert (truth["text_is_head"].to_numpy()[has] == (written == heads)).all()
    again, _ = W._write_class_text(wd, s, px, W._rng(0, "laion_text"))
    assert (again == out).all()  # seeded


# ------------------------------------------------------------------------------ real photos

N_PHOTOS = 30
RECALL_FLOOR = 0.55        # measured 0.767 on these 30 pairs (rapidocr 1.4.4, seed 0)
FALSE_FLAG_CEILING = 0.05  # measured 0.00


@pytest.mark.slow
def test_engine_finds_class_names_rendered_on_real_photos(reference):
    """Text rendered onto real photos (ImageNet sample images: their own class name; COCO
    photos: other words; several sizes, angles, colours, cases) and the same photos without
    text: the default engine's recall and false-flag rate under the authors' rule."""
    import sys
    from pathlib import Path

    reference("imagenet-sample-images")
    reference("coco-mini")
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from bench_recognised_text import benchmark_photos

    from laionet.demo.text import text_pairs

    photos, words = benchmark_photos(N_PHOTOS)
    pairs = text_pairs(photos, words, seed=0)
    m = ocr.measure(ocr.load_engine(ocr.DEFAULT_ENGINE, n_threads=2), pairs)
    print(f"{m['engine']}: recall {m['recall']:.3f}, false-flag rate {m['false_flag_rate']:.3f}, "
          f"{m['s_per_image']:.2f} s/image ({m['cpu_s_per_image']:.2f} CPU-s)")
    assert m["recall"] >= RECALL_FLOOR, m["rows"][~m["rows"]["hit"]][["word", "text_with"]]
    assert m["false_flag_rate"] <= FALSE_FLAG_CEILING, m["rows"][m["rows"]["false_flag"]]
