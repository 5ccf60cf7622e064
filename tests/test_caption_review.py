"""Stage 02's review table: kept and dropped captions per lemma."""

import pandas as pd

from laionet.method.caption_review import kept_and_dropped


def test_borderline_examples_and_counts_per_lemma():
    c = pd.DataFrame({
        "lemmas": [["kite"], ["kite"], ["kite"], ["pitcher"], ["pitcher"], ["kite"]],
        "wnid": ["n01608432"] * 3 + ["n03950228"] * 2 + ["n01608432"],
        "similarity": [0.70, 0.59, 0.30, 0.20, 0.65, 0.99],
        "TEXT": ["a kite bird", "kite hawk", "a child flies a kite", "baseball pitcher",
                 "a water pitcher", "nsfw kite"],
        "NSFW": ["UNLIKELY"] * 5 + ["NSFW"],
    })
    counts, ex = kept_and_dropped(c, 0.58, n=1)
    assert counts.to_dict("list") == {"lemma": ["kite", "pitcher"], "wnid": ["n01608432", "n03950228"],
                                      "n_candidates": [3, 2], "n_kept": [2, 1], "share_kept": [2 / 3, 0.5]}
    # kite: the lowest kept (0.59) and the highest dropped (0.30); the NSFW row is not counted
    assert ex[ex["lemma"] == "kite"][["kept", "TEXT"]].values.tolist() == [
        [True, "kite hawk"], [False, "a child flies a kite"]]
    assert ex[ex["lemma"] == "pitcher"]["TEXT"].tolist() == ["a water pitcher", "baseball pitcher"]
