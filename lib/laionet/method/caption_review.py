"""Which captions the text filter keeps and drops, lemma by lemma (stage 02's review table).

A lemma names several things ("kite" the toy and the bird, "pitcher" the jug and the player):
the filter's job is to keep the captions about the class and drop the others. This table shows,
for every matched lemma, the captions just above and below the threshold and how many it kept,
so a reader sees what the threshold does on their own captions.
"""

import numpy as np
import pandas as pd

from laionet.method.selection import above, batches, nsfw_mask

COLUMNS = ["lemmas", "wnid", "similarity", "TEXT", "NSFW"]


def kept_and_dropped(candidates, threshold: float, nsfw_rule: str = "paper", n: int = 2,
                     op: str = ">") -> tuple[pd.DataFrame, pd.DataFrame]:
    """(per-lemma counts, examples) over the single-label candidates that pass the NSFW rule,
    batch by batch (``selection.batches``). counts: lemma, wnid, n_candidates, n_kept, share_kept
    (most candidates first). examples (lemma, wnid, kept, similarity, TEXT): per lemma its ``n``
    kept captions of lowest similarity and ``n`` dropped ones of highest (the borderline cases),
    so memory is one batch plus ``<= 2n`` rows per lemma at any scale."""
    counts, examples = [], []
    for df in batches(candidates, COLUMNS):
        ok = df[nsfw_mask(df["NSFW"], nsfw_rule)]
        long = ok[COLUMNS[:4]].explode("lemmas").rename(columns={"lemmas": "lemma"})
        long = long.dropna(subset=["lemma"])
        long["kept"] = above(long["similarity"].to_numpy(np.float64), threshold, op)
        counts.append(long.groupby(["lemma", "wnid"], sort=False)["kept"].agg(["size", "sum"]))
        examples.append(_borderline(long, n))
    if not counts:
        return kept_and_dropped(pd.DataFrame({c: [] for c in COLUMNS}), threshold, nsfw_rule, n, op)
    c = pd.concat(counts).groupby(level=["lemma", "wnid"], sort=False).sum().astype(int)
    c = c.rename(columns={"size": "n_candidates", "sum": "n_kept"}).reset_index()
    c["share_kept"] = c["n_kept"] / c["n_candidates"]
    c = c.sort_values(["n_candidates", "lemma"], ascending=[False, True], ignore_index=True)
    return c, _borderline(pd.concat(examples), n)


def _borderline(long: pd.DataFrame, n: int) -> pd.DataFrame:
    kept = long[long["kept"]].sort_values("similarity").groupby("lemma", sort=False).head(n)
    dropped = long[~long["kept"]].sort_values("similarity", ascending=False).groupby("lemma", sort=False).head(n)
    examples = (pd.concat([kept, dropped])
                .sort_values(["lemma", "kept", "similarity"], ascending=[True, False, False], ignore_index=True))
    return examples[["lemma", "wnid", "kept", "similarity", "TEXT"]]
