"""The TMLR exclusion rule: a LAIONet row whose image shows its class's name (paper_spec A7).

The TMLR version of the paper drops from every accuracy evaluation the LAIONet rows whose image
shows its own class name as text: a classifier could read the label instead of recognising the
object. The authors ran EAST + TrOCR over every image (column ``recognized_text``; here
``laionet.jobs.ocr``) and flagged a row (``wnid_is_in_recognized_text``) when its class's WordNet
head name appears in that text.

``flag``: the authors' rule (``rule="head"``, the default): True iff the punctuation-stripped,
space-padded head name (A2 ``<name>``) is a substring of the punctuation-stripped, space-padded
recognised text; False when the text is null. Punctuation becomes a space on both sides (their
``laion_utils.transform_text``); the text is lower-case, so the special values (upper case) never
match. ``rule="lemmas"`` is the fix of checking every lemma of the class as well (lower-cased),
not only the head name ("chain-link fence" in an image is not the head name "chainlink fence").
"""

import string
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

TEXT_COL = "recognized_text"
FLAG_COL = "wnid_is_in_recognized_text"
NO_TEXT, DOWNLOAD_ERROR, RECOGNITION_ERROR = "NO TEXT", "DOWNLOAD ERROR", "RECOGNITION ERROR"
SPECIAL = (NO_TEXT, DOWNLOAD_ERROR, RECOGNITION_ERROR)
RULES = ("head", "lemmas")
SUCCESS = "success"

_PUNCT = str.maketrans(string.punctuation, " " * len(string.punctuation))


def transform_text(text: str) -> str:
    """The authors' normalisation of both sides: ASCII punctuation -> space, one space of padding."""
    return " " + text.translate(_PUNCT) + " "


def names_in_text(text: str | None, names: Iterable[str]) -> bool:
    """True iff one of ``names`` (normalised) is a substring of ``text`` (normalised); False for a
    null text (a row never processed)."""
    if text is None or (isinstance(text, float) and np.isnan(text)):
        return False
    padded = transform_text(str(text))
    return any(transform_text(n) in padded for n in names)


def class_names(table: pd.DataFrame, rule: str = "head") -> dict[str, list[str]]:
    """wnid -> the names a recognised text is searched for: the head name (``rule="head"``, the
    authors'), or the head name and every lemma, lower-cased (``rule="lemmas"``, the fix).
    ``table`` is a ``laionet.sources.classes.class_table`` (columns wnid, head, lemmas)."""
    if rule not in RULES:
        raise ValueError(f"rule must be one of {RULES}, got {rule!r}")
    out = {}
    for wnid, head, lemmas in zip(table["wnid"], table["head"], table["lemmas"]):
        names = [str(head).lower()]
        if rule == "lemmas":
            names += [str(lem).lower() for lem in lemmas if str(lem).lower() not in names]
        out[str(wnid)] = names
    return out


def flag(rows: pd.DataFrame, names: Mapping[str, Sequence[str]]) -> pd.Series:
    """A7 step 2: ``wnid_is_in_recognized_text`` of each row (columns wnid, recognized_text), by
    ``names`` (``class_names``). A wnid without names is an error (another class list)."""
    missing = sorted(set(rows["wnid"].astype(str)) - set(names))
    if missing:
        raise KeyError(f"flag: {len(missing)} wnid(s) of the rows are not in the class table, e.g. "
                       f"{missing[:5]}: use the class list the LAIONet rows were made with")
    vals = [names_in_text(t, names[str(w)]) for w, t in zip(rows["wnid"], rows[TEXT_COL])]
    return pd.Series(vals, index=rows.index, name=FLAG_COL, dtype=bool)


def outcomes(table: pd.DataFrame) -> pd.DataFrame:
    """Rows per kind of ``recognized_text`` (some text, NO TEXT, the errors, null) and share."""
    t = table[TEXT_COL]
    kinds = {"some text": int((t.notna() & ~t.isin(SPECIAL)).sum()),
             **{s: int(t.eq(s).sum()) for s in SPECIAL},
             "not processed (null)": int(t.isna().sum())}
    out = pd.DataFrame({"outcome": list(kinds), "rows": list(kinds.values())})
    out["share"] = out["rows"] / max(len(t), 1)
    return out


class Exclusion:
    """Stage 04's view of the recognised text: the rows of a download, their flag under ``rule``
    and the flagged row keys (``keys``, strings as the results tables' ``image_key``)."""

    def __init__(self, table: pd.DataFrame, class_table: pd.DataFrame, rule: str = "head"):
        self.rule = rule
        self.names = class_names(class_table, rule)
        self.table = table.assign(**{FLAG_COL: flag(table, self.names)})
        self.keys = set(self.table.loc[self.table[FLAG_COL], "key"].astype(str))

    def summary(self) -> pd.DataFrame:
        """``outcomes`` plus the flagged rows."""
        n = int(self.table[FLAG_COL].sum())
        return pd.concat([outcomes(self.table), pd.DataFrame(
            {"outcome": [FLAG_COL], "rows": [n], "share": [n / max(len(self.table), 1)]})],
            ignore_index=True)

    def drop(self, results: pd.DataFrame) -> pd.DataFrame:
        """``results`` (the long per-image table) without the flagged LAIONet rows."""
        bad = results["dataset"].eq("LAIONet") & results["image_key"].astype(str).isin(self.keys)
        return results.loc[~bad].reset_index(drop=True)

    def examples(self, n: int = 10) -> pd.DataFrame:
        """The first ``n`` flagged rows (key, wnid, its names, the recognised text)."""
        rows = self.table[self.table[FLAG_COL]].head(n)
        return rows.assign(names=rows["wnid"].map(lambda w: ", ".join(self.names[str(w)])))


def accuracy_effect(acc_all: pd.DataFrame, acc_kept: pd.DataFrame,
                    dataset: str = "LAIONet") -> pd.DataFrame:
    """LAIONet accuracy with every row and without the flagged ones, per model, k and weighting
    (two ``accuracy_table`` outputs): accuracy_all, accuracy_without_flagged, change."""
    on = ["dataset", "model", "k", "weighting"]
    a = acc_all[acc_all["dataset"] == dataset][on + ["accuracy"]]
    b = acc_kept[acc_kept["dataset"] == dataset][on + ["accuracy"]]
    out = a.merge(b, on=on, how="outer", suffixes=("_all", "_without_flagged"))
    out["change"] = out["accuracy_without_flagged"] - out["accuracy_all"]
    return out.sort_values(on).reset_index(drop=True)
