"""The paper's claims, each checked on a run's own numbers (issue 22, item 4).

One row per claim: what the paper says, the number it reports (paper_spec C, ``laionet.paper``),
this run's number with a 95 % interval where one exists, and two verdicts:

- ``direction``: the run's number points the paper's way ("yes" / "no"; "not significant" when
  it does but its interval reaches the other side; "n/a" when the run did not measure it);
- ``size``: the run's interval holds the paper's number or range ("yes" / "no"; "n/a" without an
  interval or a paper number).

Pure functions of the stages' tables (DataFrames and summary dicts, any of them None when its
stage did not run); ``laionet.pipeline.claims`` reads them from a run's folders.
"""

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from laionet import paper as P
from laionet.method.accuracy import wilson_interval

COLUMNS = ("claim", "section", "statement", "measure", "paper", "value", "lo", "hi", "n",
           "direction", "size", "note")
Z = 1.96
# the paper's accuracy ranges are those of its 1k and pt22k-ft1k models (E.4: pt22k's are a
# label-map artifact; CLIP is the zero-shot check)
NOT_IN_RANGE_GROUPS = ("clip", "pt22k")


def _num(x: Any) -> float | None:
    return None if x is None or (isinstance(x, float) and np.isnan(x)) else float(x)


def _row(claim: str, section: str, statement: str, measure: str, paper: str,
         paper_range: tuple[float, float] | None = None, value: float | None = None,
         lo: float | None = None, hi: float | None = None, n: int | None = None,
         direction: bool | str | None = None, size: bool | None = None, note: str = "") -> dict:
    value, lo, hi = _num(value), _num(lo), _num(hi)
    if isinstance(direction, bool):
        direction = "yes" if direction else "no"
    if size is None and paper_range is not None and lo is not None and hi is not None:
        size = bool(lo <= paper_range[1] and hi >= paper_range[0])
    return {"claim": claim, "section": section, "statement": statement, "measure": measure,
            "paper": paper, "value": value, "lo": lo, "hi": hi,
            "n": None if n is None else int(n),
            "direction": direction if value is not None and direction is not None else "n/a",
            "size": "n/a" if size is None or value is None else ("yes" if size else "no"),
            "note": note}


def _signed(value: float, lo: float, hi: float, sign: int) -> str:
    """'yes' when value points the paper's way (sign) and the interval stays there."""
    if sign * value <= 0:
        return "no"
    return "yes" if sign * lo > 0 and sign * hi > 0 else "not significant"


def _share(k: float, n: float) -> tuple[float, float]:
    lo, hi = wilson_interval(round(k), int(n))
    return float(lo), float(hi)


def _models(df: pd.DataFrame) -> pd.DataFrame:
    return df[~df["group"].isin(NOT_IN_RANGE_GROUPS)] if "group" in df else df


def accuracy_drop(drops: pd.DataFrame | None, k: int) -> dict:
    lo_p, hi_p = P.PAPER_DROP[k]
    args = (f"accuracy_drop_top{k}", "§3.1 (B5)",
            f"ImageNet classifiers are less accurate on LAIONet than on ImageNet (top-{k})",
            "mean over models of ImageNet - LAIONet accuracy, classes equally weighted",
            f"{lo_p:.2f} to {hi_p:.2f}", (lo_p, hi_p))
    d = None if drops is None or "drop" not in drops else _models(drops[
        (drops["k"] == k) & (drops["weighting"] == "equal") & drops["drop"].notna()])
    if d is None or d.empty:
        return _row(*args, note="no model evaluated on both datasets")
    value = float(d["drop"].mean())
    se = float(np.sqrt((d["drop_se"] ** 2).sum()) / len(d))
    lo, hi = value - Z * se, value + Z * se
    return _row(*args, value=value, lo=lo, hi=hi, n=len(d), direction=_signed(value, lo, hi, 1),
                note=f"{len(d)} models, from {d['drop'].min():.3f} to {d['drop'].max():.3f}")


def weighting(acc: pd.DataFrame | None) -> dict:
    lo_p, hi_p = P.PAPER_WEIGHTED_MINUS_EQUAL
    args = ("laion_weighting_lowers_accuracy", "§3.1 (B6)",
            "Weighting LAIONet's classes by their LAION frequency lowers its accuracy further",
            "mean over models of LAIONet top-1, LAION-weighted - equally weighted",
            f"{lo_p:.2f} to {hi_p:.2f} (digitized)", (lo_p, hi_p))
    if acc is None or acc.empty:
        return _row(*args, note="stage 04 did not run")
    sub = _models(acc[(acc["dataset"] == "LAIONet") & (acc["k"] == 1)])
    wide = sub.pivot_table(index="model", columns="weighting", values=["accuracy", "se"],
                           aggfunc="first").dropna()
    if wide.empty or "laion" not in wide["accuracy"]:
        return _row(*args, note="no LAION-weighted accuracy")
    diff = wide[("accuracy", "laion")] - wide[("accuracy", "equal")]
    value = float(diff.mean())
    se = float(np.sqrt((wide[("se", "laion")] ** 2 + wide[("se", "equal")] ** 2).sum()) / len(diff))
    lo, hi = value - Z * se, value + Z * se
    return _row(*args, value=value, lo=lo, hi=hi, n=len(diff),
                direction=_signed(value, lo, hi, -1), note=f"{len(diff)} models")


def _lower_share(claim: str, section: str, statement: str, measure: str, paper_value: float,
                 stats: Mapping[str, Any] | None, higher_paper: float | None = None,
                 want: str = "lower") -> dict:
    """A per-class delta test's share of significantly lower (or higher) classes."""
    other = "higher" if want == "lower" else "lower"
    args = (claim, section, statement, measure, f"{paper_value:.3f}", (paper_value, paper_value))
    if not stats or not stats.get("n_tested"):
        return _row(*args, note="no class tested")
    n = int(stats["n_tested"])
    value = float(stats[f"share_{want}"])
    lo, hi = _share(stats[f"n_{want}"], n)
    note = f"{other}: {float(stats[f'share_{other}']):.3f}"
    if higher_paper is not None:
        note += f" (paper {higher_paper:.3f})"
    return _row(*args, value=value, lo=lo, hi=hi, n=n,
                direction=value > float(stats[f"share_{other}"]), note=note)


def v2_order(props: pd.DataFrame | None) -> dict:
    paper = P.PAPER_V2_LAIONET_LOWER
    args = ("v2_selection_frequency_order", "§4.1 (B12)",
            ("The more MTurk workers agreed an image shows its class (ImageNetV2 b < a < c), the "
             "more classes LAIONet is less similar within than that release"),
            "share of classes LAIONet significantly lower than V2-c",
            "b {b:.2f} < a {a:.2f} < c {c:.2f} (digitized)".format(**paper), (paper["c"], paper["c"]))
    sub = None if props is None else props[props["reference"] == "LAIONet"].set_index("letter")
    if sub is None or not {"a", "b", "c"} <= set(sub.index) or not sub.loc["c", "n_tested"]:
        return _row(*args, note="no ImageNetV2 comparison")
    s = sub["share_lower"].astype(float)
    lo, hi = _share(sub.loc["c", "n_lower"], sub.loc["c", "n_tested"])
    return _row(*args, value=s["c"], lo=lo, hi=hi, n=sub.loc["c", "n_tested"],
                direction=bool(s["b"] < s["a"] < s["c"]),
                note=f"b {s['b']:.3f}, a {s['a']:.3f}, c {s['c']:.3f}")


def v2_accuracy(v2_acc: pd.DataFrame | None) -> dict:
    args = ("v2_accuracy_order", "§4.1 (B13)",
            ("Classifiers are most accurate on the release whose images workers agreed on most "
             "(V2-c above V2-b; V2-b about as hard as LAIONet)"),
            "mean over models of top-1 on V2-c - V2-b", "V2-c highest, V2-b on y = x with LAIONet")
    sub = None if v2_acc is None else v2_acc[(v2_acc["k"] == 1) & v2_acc["ImageNetV2-a"].notna()]
    if sub is None or sub.empty:
        return _row(*args, note="no classifier on ImageNetV2")
    m = sub.mean(numeric_only=True)
    value = float(m["ImageNetV2-c"] - m["ImageNetV2-b"])
    note = f"V2-b - LAIONet: {m['ImageNetV2-b'] - m['LAIONet']:+.3f}" if "LAIONet" in m else ""
    return _row(*args, value=value, n=len(sub), direction=value > 0, note=f"{len(sub)} models; {note}")


def datasets_d_to_a(avg: pd.DataFrame | None) -> dict:
    p = P.PAPER_AVG_SIMILARITY
    args = ("datasets_D_to_A", "§4.2 (B15)",
            ("The more the image decides the selection (dataset D over A), the more alike a "
             "class's images: D above ImageNet, A at or below it"),
            "average intra-class similarity, D - A",
            "D {D:.3f}, A {A:.3f}, ImageNet {ImageNet:.3f}: D - A = {d:.3f} (digitized)".format(
                d=p["D"] - p["A"], **p))
    if avg is None or avg.empty:
        return _row(*args, note="stage 07 made no datasets")
    first = avg[avg["encoder"] == avg["encoder"].iloc[0]].set_index("dataset")["avg_similarity"]
    if not {"A", "D"} <= set(first.index):
        return _row(*args, note="datasets D and A not both made")
    value = float(first["D"] - first["A"])
    crosses = ("ImageNet" in first and bool(first["D"] > first["ImageNet"] >= first["A"]))
    return _row(*args, value=value, direction=value > 0, size=crosses,
                note="size: D > ImageNet >= A; " + ", ".join(f"{k} {v:.3f}" for k, v in first.items()))


def text_alone(s08: Mapping[str, Any] | None) -> list[dict]:
    sim = ("captions_less_similar_to_synset", "§4.3 (B16)",
           "ImageNet's own captions are less similar to their synset's text than LAIONet's",
           "mean caption-to-synset similarity, ImageNet-Captions - LAIONet", "below LAIONet's")
    share = ("false_class_share", "§4.3 (B17)",
             "Most ImageNet captions rank their own class near the top of all classes",
             f"share of captions with at most {P.PAPER_P_AT:.0%} of the other classes more similar",
             f"{P.PAPER_SHARE_AT:.3f}", (P.PAPER_SHARE_AT, P.PAPER_SHARE_AT))
    if not s08 or not s08.get("n_with_p"):
        return [_row(*sim, note="stage 08 did not run"), _row(*share, note="stage 08 did not run")]
    d = float(s08["mean_own_similarity_imagenet_captions"]) - float(s08["mean_similarity_laionet"])
    n = int(s08["n_with_p"])
    v = float(s08["share_p_at_most"])
    lo, hi = _share(v * n, n)
    return [_row(*sim, value=d, n=int(s08.get("n_captions", n)), direction=d < 0),
            _row(*share, value=v, lo=lo, hi=hi, n=n, direction=v > 0.5)]


def imagenet_anchor(acc: pd.DataFrame | None) -> dict:
    args = ("imagenet_numbers_exact", "§3.1 (C.1)",
            "The ImageNet side of the accuracy figures is the paper's, to the digit",
            "largest |ImageNet top-1 - the paper's| over the paper's models evaluated",
            "0 (to 4 decimals)")
    sub = None if acc is None else acc[(acc["dataset"] == "ImageNet") & (acc["k"] == 1)
                                       & (acc["weighting"] == "equal")
                                       & acc["model"].isin(list(P.PAPER_IMAGENET_TOP1))]
    if sub is None or sub.empty:
        return _row(*args, note="none of the paper's models evaluated")
    diff = (sub["accuracy"] - sub["model"].map(P.PAPER_IMAGENET_TOP1)).abs()
    value = float(diff.max())
    return _row(*args, value=value, n=len(sub), size=value <= 5e-5,
                note=f"{len(sub)} models; worst {sub['model'].iloc[int(np.argmax(diff.to_numpy()))]}")


def paper_claims(acc: pd.DataFrame | None = None, drops: pd.DataFrame | None = None,
                 intra: Mapping[str, Any] | None = None, v2_props: pd.DataFrame | None = None,
                 v2_acc: pd.DataFrame | None = None, avg_similarity: pd.DataFrame | None = None,
                 s07: Mapping[str, Any] | None = None, s08: Mapping[str, Any] | None = None,
                 s09: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """The claims table (columns ``COLUMNS``), in the paper's order."""
    b19 = ((s07 or {}).get("image_to_synset_B19") or {}).get("delta_test")
    rows = [
        accuracy_drop(drops, 1), accuracy_drop(drops, 5), weighting(acc), imagenet_anchor(acc),
        _lower_share("intra_class_similarity_lower", "§3.2 (B10)",
                     "LAIONet's classes are less alike within than ImageNet's in most classes",
                     "share of classes LAIONet significantly less similar (first encoder)",
                     P.PAPER_INTRA_LOWER, intra, P.PAPER_INTRA_HIGHER),
        _lower_share("image_to_synset_similarity", "§3 (B19)",
                     "LAIONet's images are at least as similar to their class's text as "
                     "ImageNet's (LAIONet is not lower quality)",
                     "share of classes LAIONet significantly MORE similar to [name: def]",
                     P.PAPER_IMAGE_TO_SYNSET_HIGHER, b19, want="higher"),
        v2_order(v2_props), v2_accuracy(v2_acc), datasets_d_to_a(avg_similarity),
        *text_alone(s08),
        _lower_share("text_retrieved_less_similar", "§4.4 (B18)",
                     "LAION images retrieved by ImageNet's captions are less alike within a "
                     "class than ImageNet's", "share of classes significantly less similar",
                     P.PAPER_RETRIEVED_LOWER, (s09 or {}).get("B18"), P.PAPER_RETRIEVED_HIGHER),
        _lower_share("laionet_vs_imagenet_captions", "App. (B20)",
                     "LAIONet is less alike within a class than ImageNet's captioned train images",
                     "share of classes LAIONet significantly less similar",
                     P.PAPER_CAPTIONS_LOWER, (s09 or {}).get("B20")),
    ]
    table = pd.DataFrame(rows, columns=list(COLUMNS))
    table["n"] = table["n"].astype("Int64")
    return table
