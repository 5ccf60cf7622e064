"""The claims table (laionet.method.claims): each claim's verdicts from a run's tables."""

from __future__ import annotations

import pandas as pd

from laionet import paper as P
from laionet.method.claims import COLUMNS, paper_claims


def _drops(drop1, drop5, se=0.01):
    return pd.DataFrame([{"model": f"m{i}", "k": k, "weighting": "equal", "drop": d, "drop_se": se,
                          "group": "1k"} for k, ds in ((1, drop1), (5, drop5)) for i, d in enumerate(ds)]
                        + [{"model": "clip", "k": 1, "weighting": "equal", "drop": -0.5, "drop_se": se,
                            "group": "clip"}])


def test_every_claim_is_a_row_and_nothing_measured_is_na():
    t = paper_claims()
    assert list(t.columns) == list(COLUMNS) and t["claim"].is_unique and len(t) == 13
    assert set(t["direction"]) == {"n/a"} and set(t["size"]) == {"n/a"} and t["value"].isna().all()


def test_direction_and_size_from_the_interval():
    t = paper_claims(drops=_drops([0.12, 0.13], [0.02, 0.0])).set_index("claim")
    top1, top5 = t.loc["accuracy_drop_top1"], t.loc["accuracy_drop_top5"]
    # the zero-shot model is outside the paper's range (1k and pt22k-ft1k models) and left out
    assert top1["n"] == 2 and abs(top1["value"] - 0.125) < 1e-12
    assert (top1["direction"], top1["size"]) == ("yes", "yes")          # inside 0.10-0.14
    assert (top5["direction"], top5["size"]) == ("not significant", "no")  # 0.01 +- 0.014
    t = paper_claims(drops=_drops([-0.05, -0.04], [0.1, 0.1])).set_index("claim")
    assert (t.loc["accuracy_drop_top1", "direction"], t.loc["accuracy_drop_top1", "size"]) == ("no", "no")


def test_shares_orders_and_summaries():
    intra = {"n_tested": 100, "n_lower": 58, "share_lower": 0.58, "n_higher": 28, "share_higher": 0.28}
    props = pd.DataFrame({"reference": "LAIONet", "letter": ["b", "a", "c"],
                          "share_lower": [0.3, 0.5, 0.6], "n_lower": [30, 50, 60],
                          "n_tested": 100})
    avg = pd.DataFrame({"encoder": "e", "dataset": ["D", "C", "B", "A", "ImageNet"],
                        "avg_similarity": [0.74, 0.73, 0.72, 0.69, 0.70]})
    s08 = {"n_captions": 1000, "n_with_p": 1000, "share_p_at_most": 0.96,
           "mean_own_similarity_imagenet_captions": 0.5, "mean_similarity_laionet": 0.6}
    s07 = {"image_to_synset_B19": {"delta_test": {"n_tested": 50, "n_higher": 5, "share_higher": 0.1,
                                                  "n_lower": 20, "share_lower": 0.4}}}
    t = paper_claims(intra=intra, v2_props=props, avg_similarity=avg, s07=s07, s08=s08).set_index("claim")
    assert tuple(t.loc["intra_class_similarity_lower", ["direction", "size"]]) == ("yes", "yes")
    assert tuple(t.loc["v2_selection_frequency_order", ["direction", "size"]]) == ("yes", "yes")
    d2a = t.loc["datasets_D_to_A"]
    assert abs(d2a["value"] - 0.05) < 1e-12 and (d2a["direction"], d2a["size"]) == ("yes", "yes")
    assert tuple(t.loc["false_class_share", ["direction", "size"]]) == ("yes", "yes")
    assert t.loc["captions_less_similar_to_synset", "direction"] == "yes"
    # B19: the paper finds LAIONet MORE similar to its class text; here it is less: "no"
    assert tuple(t.loc["image_to_synset_similarity", ["direction", "size"]]) == ("no", "no")
    # a V2 order that is not monotone does not hold
    props.loc[props["letter"] == "a", "share_lower"] = 0.7
    assert paper_claims(v2_props=props).set_index("claim").loc["v2_selection_frequency_order",
                                                                "direction"] == "no"
    assert P.PAPER_V2_LAIONET_LOWER["c"] == 0.59
