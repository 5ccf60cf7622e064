"""Class table and lemma rules against the authors' released files (paper_spec A1, A2, D1, D2, D4)."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from laionet.sources import classes as lc

needs_wordnet = pytest.mark.skipif(not lc.wordnet_available(), reason=lc.WORDNET_HELP)


def _authors_texts(reference) -> pd.Series:
    """wnid -> the authors' exact synset text, from ILSVRC2012_val.parquet + the val labels."""
    val = pd.read_parquet(reference("eval-on-laion", "ILSVRC2012_val.parquet"),
                          columns=["name_def_wnid"])
    wnid_of = json.loads(reference("eval-on-laion", "val_imagename2wnid.json").read_text())
    val["wnid"] = val.index.map(wnid_of)
    per_wnid = val.groupby("wnid")["name_def_wnid"].unique()
    assert per_wnid.map(len).eq(1).all(), "one text per wnid in the authors' file"
    return per_wnid.map(lambda v: v[0])


def _authors_pairs(reference) -> list[tuple[str, str]]:
    data = json.loads(reference("eval-on-laion", "lemma2wnid_unique_in_ilsvrc.json").read_text())
    return [tuple(p) for p in data]


@needs_wordnet
def test_synset_texts_equal_the_authors_for_every_wnid(reference):
    table = lc.class_table()
    authors = _authors_texts(reference)
    assert len(table) == 1000 and table["wnid"].is_unique
    assert list(table["wnid"]) == sorted(table["wnid"])  # timm's class-index order
    ours = table.set_index("wnid")["name_def"]
    diff = [(w, ours[w], authors[w]) for w in authors.index if ours[w] != authors[w]]
    assert not diff, diff[:5]
    assert len(authors) == 1000
    # the head is WordNet's synset name, not the first ImageNet lemma ("teddy", not "teddy bear")
    teddy = table.set_index("wnid").loc["n04399382"]
    assert teddy["head"] == "teddy" and teddy["lemmas"][0] == "teddy"
    assert (table["head"] != table["lemmas"].str[0]).sum() > 100


@needs_wordnet
def test_query_forms():
    row = lc.class_table(["n02119789"]).iloc[0]
    assert row["name_def"] == ("kit fox which is small grey fox of southwestern United States; "
                               "may be a subspecies of Vulpes velox")
    assert row["lemmas"] == ["kit fox", "Vulpes macrotis"]
    assert row["lemmas_or"] == "kit fox or Vulpes macrotis"
    assert row["a_photo_of_name"] == "a photo of kit fox"
    assert row["a_clear_photo_of_name_def"] == "a clear photo of " + row["name_def"]
    assert row["a_photo_of_lemmas"] == "a photo of kit fox or Vulpes macrotis"
    assert list(lc.class_table(["n02119789"]).columns) == list(lc.TABLE_COLUMNS)


@needs_wordnet
def test_authors_class_list_deviations(reference):
    default = lc.class_table()
    authors = lc.class_table(authors_class_list=True)
    assert len(authors) == 999
    assert lc.CRANE_MACHINE in set(default["wnid"]) and lc.CRANE_MACHINE not in set(authors["wnid"])
    assert lc.HUSKY_TRUE in set(default["wnid"]) and lc.HUSKY_AUTHORS in set(authors["wnid"])
    husky = authors.set_index("wnid").loc[lc.HUSKY_AUTHORS]
    assert husky["name_def"] == _authors_texts(reference)[lc.HUSKY_TRUE]
    assert husky["lemmas"] == ["Siberian husky"]


def test_lemma_map_from_the_authors_class_file_equals_their_json(reference):
    rows = lc.parse_class_file(reference("eval-on-laion", "ILSVRC2012_synsets.txt"))
    assert len(rows) == 999
    assert lc.unique_lemma_pairs(rows) == _authors_pairs(reference)  # order included


def test_lemma_map_of_the_authors_class_list(reference):
    expected = _authors_pairs(reference)
    # same classes in the authors' file order: identical, order included
    ordered = lc.class_table(reference("eval-on-laion", "ILSVRC2012_synsets.txt"),
                             authors_class_list=True, head_source="timm")
    assert lc.lemma_map(ordered) == expected
    # timm's (sorted) class order: the same pairs, in that order
    pairs = lc.lemma_map(lc.class_table(authors_class_list=True, head_source="timm"))
    assert sorted(pairs) == sorted(expected) and pairs != expected
    assert len(pairs) == 1825 and len({w for _, w in pairs}) == 995


def test_unique_in_imagenet_is_decided_over_the_full_list():
    true_list = lc.class_table(head_source="timm")
    pairs = dict(lc.lemma_map(true_list))
    assert "crane" not in pairs  # bird and machine share it in the true 1000-class list
    assert len(pairs) == 1824 and len(set(pairs.values())) == 994
    authors = lc.lemma_map(lc.class_table(authors_class_list=True, head_source="timm"))
    assert ("crane", "n02012849") in authors  # unique once the machine is gone
    # a subset keeps the full-list decision: "tiger" stays unique, "harp" stays dropped
    sub = lc.class_table(["n02129604", "n03495258"], head_source="timm")
    assert lc.lemma_map(sub) == [("tiger", "n02129604"), ("Panthera tigris", "n02129604")]


def test_one_imagenet1k_class_list(tmp_path, monkeypatch):
    """classes.imagenet1k_wnids is the only ImageNet-1k list: the class table, the classifiers'
    label space and ImageNetV2's index -> wnid fallback all read it."""
    from laionet.models.labels import label_space_wnids
    from laionet.sources import imagenet as datasets

    one_k = lc.imagenet1k_wnids()
    assert len(one_k) == 1000 == len(set(one_k)) and list(one_k) == sorted(one_k)
    assert list(lc.class_table("imagenet1k", head_source="timm")["wnid"]) == list(one_k)
    fake = tuple(f"n{i:08d}" for i in range(1000))  # every getter follows the one list
    monkeypatch.setattr(lc, "imagenet1k_wnids", lambda: fake)
    monkeypatch.setattr(datasets, "imagenet1k_wnids", lambda: fake)
    assert label_space_wnids("imagenet1k") == list(fake)
    v2 = tmp_path / "imagenetv2-matched-frequency-format-val" / "7"
    v2.mkdir(parents=True)
    (v2 / "a.jpeg").write_bytes(b"")
    assert datasets.read_imagenetv2(tmp_path, "matched-frequency")["wnid"].tolist() == [fake[7]]


def test_class_file_formats(tmp_path):
    f = tmp_path / "classes.txt"
    f.write_text("# demo classes\nn02129165\n\nn02119789\n")
    assert list(lc.class_table(f, head_source="timm")["wnid"]) == ["n02129165", "n02119789"]
    bad = tmp_path / "bad.txt"
    bad.write_text("n02129165\nlion\n")
    with pytest.raises(ValueError, match=r"bad.txt:2: 'lion' is not a wnid"):
        lc.class_table(bad)
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        lc.class_table(tmp_path / "missing.txt")
    with pytest.raises(ValueError, match="authors_class_list=True"):
        lc.class_table([lc.HUSKY_AUTHORS])
    with pytest.raises(ValueError, match="duplicated"):
        lc.class_table(["n02129165", "n02129165"])


@needs_wordnet
def test_unique_in_wordnet_rule():
    pairs = lc.lemma_map(lc.class_table(authors_class_list=True), "unique_in_wordnet")
    # paper_spec A1: 1,573 lemmas -> 999 wnids, 258 of them hypernym-extended
    assert len(pairs) == 1573 and len({w for _, w in pairs}) == 999
    keys = {lem for lem, _ in pairs}
    assert {"boxer dog", "ox cattle"} <= keys
    assert "boxer" not in keys


def test_missing_wordnet_gives_the_fix(monkeypatch, tmp_path):
    monkeypatch.setenv("LAIONET_WORDNET", str(tmp_path / "nowhere"))
    lc.wordnet.cache_clear()
    try:
        with pytest.raises(RuntimeError, match="apt-get install wordnet-base"):
            lc.lemma_map(lc.class_table(["n02119789"], head_source="timm"), "unique_in_wordnet")
        # no silent fallback: 112 synset texts would change; the error says how to get WordNet
        # and names the explicit parameter that accepts timm's lemma instead
        with pytest.raises(RuntimeError, match=r"(?s)run_all\.sh.*LAIONET_WORDNET.*head_source timm"):
            lc.class_table([lc.HUSKY_TRUE])
        t = lc.class_table([lc.HUSKY_TRUE], head_source="timm")  # the explicit choice
        assert t["head"].iloc[0] == "Siberian husky"  # WordNet's name is "siberian husky"
        assert t.attrs["head_source"] == "timm"
    finally:
        lc.wordnet.cache_clear()


@needs_wordnet
def test_an_unknown_wnid_names_the_file_line_and_wnid(tmp_path):
    """A wnid that is no synset (a typo of cougar's n02125311) is refused naming where it is,
    not an AttributeError from inside nltk (issue 13)."""
    path = tmp_path / "classes.txt"
    path.write_text("# my classes\nn02125311\n\nn02125312\n")
    with pytest.raises(lc.UnknownWnid, match=rf"{path}:4: 'n02125312' is no WordNet 3.0 noun synset"):
        lc.class_table(path)
    with pytest.raises(lc.UnknownWnid, match=r"^classes: 'n99999999'"):
        lc.class_table(["n02125311", "n99999999"])
