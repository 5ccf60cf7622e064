# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 01 · Synset matching: which LAION captions name an ImageNet class
#
# Paper §2, criterion 1 (paper_spec A1-A3). Every LAION caption is searched for the lemmas of the
# ImageNet classes, by the authors' exact rule: a lemma is kept when it is unique among ImageNet's
# lemma strings; a caption matches it when, after every ASCII punctuation character became a
# space, " lemma " is a case-sensitive substring of " caption ". `mode="normalized"` matches after
# NFKC, case folding and punctuation normalization instead (E.1). Nested lemmas ("lion" in "sea
# lion") give multi-label rows, which stage 02 drops. Per LAION part: `matches/`, `rows/` (row
# key = part * 10^8 + row) and a `done/` marker (a killed run resumes).

# %% tags=["parameters"]
lemma_rule: str = "unique_in_imagenet"  # unique_in_imagenet (paper) | unique_in_wordnet (needs WordNet 3.0)
mode: str = "paper"               # paper (authors' exact matching) | normalized (NFKC + casefold + punctuation)
authors_class_list: bool = False  # True: the authors' 999 classes (crane machine dropped, husky as n02112837), in every stage
head_source: str = "wordnet"      # synset head names: wordnet (paper; an error without WordNet) | timm (first ImageNet lemma: 112 texts change)
profile: str = "demo"             # profile name or YAML path (figure titles, default folders)
out_dir: str = ""                 # empty: runs/<profile>/01_synset_matching/
figures_dir: str = ""             # empty: figures/<profile>/
laion_parts: str = ""             # glob of LAION parquet parts (relative: project root); empty: the demo world's parts
classes: str = ""                 # class list file or imagenet1k; empty: the demo world's list, else imagenet1k
n_workers: int = 2                # processes matching parts in parallel (1: in this kernel)
batch_size: int = 65536           # captions read and matched at a time (bounds memory per worker)

# %%
from laionet.jobs import match_parts
from laionet.pipeline.stage import open_stage
from laionet.plots import matching as plots
from laionet.sources import classes as lc

S = open_stage("01_synset_matching", globals())

# %%
table = lc.class_table(S.inputs.classes, authors_class_list=authors_class_list,
                       head_source=head_source)
pairs = lc.lemma_map(table, lemma_rule)
print(f"{len(table)} classes, {len(pairs)} lemmas for {len({w for _, w in pairs})} classes "
      f"(rule {lemma_rule})")
table.head()

# %% [markdown]
# ### Classes no unique lemma can reach, and why
# Under the unique-in-ImageNet rule a class whose every lemma is also another class's lemma gets
# no lemma at all: no caption can ever match it. With the true 1,000-class list that includes
# crane the bird (its only lemma "crane" is also the machine's); the authors' 999-class list
# (`authors_class_list=True`) removes the machine, so the bird is reachable there.

# %%
without = lc.classes_without_unique_lemma(table, lemma_rule)
S.table(without.assign(lemmas=without["lemmas"].map(", ".join)), "01_classes_without_unique_lemma")
without

# %% [markdown]
# ## Matching, part by part (a part finished with the same lemmas and mode is skipped)

# %%
with S.timings("match"):
    result = match_parts.match_all(S.inputs.laion_parts, pairs, S.out, mode=mode,
                                   batch_size=batch_size, n_workers=n_workers)
print(f"matched {len(result.done)} part(s), resumed {len(result.skipped)}")
class_counts, lemma_counts, summary = match_parts.summarize_matches(S.out, table, pairs, mode=mode)
{k: v for k, v in summary.items() if k != "unreachable"}

# %% [markdown]
# ## Class coverage, and matches per class (log scale)
# Why classes are unreachable: in paper mode a class whose every lemma holds punctuation can never
# match (the caption's punctuation became spaces, the lemma's did not). Per class, all matching
# captions and the single-label ones (those stage 02 can keep): the web's long tail.

# %%
S.figure(plots.class_coverage(class_counts), "01_class_coverage",
         title=f"Class coverage: {summary['n_matched_classes']} of {len(table)} classes "
               f"matched ({mode} mode, {lemma_rule})")
S.table(match_parts.unreachable_classes(class_counts), "01_unreachable_classes")
S.figure(plots.matches_per_class(class_counts), "01_matches_per_class",
         title="Matching captions per class")
class_counts.sort_values("n_rows", ascending=False).reset_index(drop=True).head(10)

# %% [markdown]
# ## Lemma counts: the most frequent lemmas, and how many of each class's lemmas ever match

# %%
S.figure(plots.lemma_counts(lemma_counts), "01_lemma_counts",
         title=f"Lemma counts ({summary['n_lemmas_matched']} of {summary['n_lemmas']} "
               f"lemmas match; {summary['n_unmatchable_lemmas']} can never match)")
S.table(lemma_counts.sort_values("n_rows", ascending=False), "01_lemma_counts")

# %% [markdown]
# ## Multi-label share: nested lemmas ("lion" / "sea lion") make some classes lose most captions

# %%
share = summary["multi_label_share"]
S.figure(plots.multi_label(share, match_parts.classes_per_caption(S.out)), "01_multi_label",
         title=f"Multi-label share: {share:.1%} of {summary['n_matched_rows']:,} "
               f"matching captions ({summary['n_rows']:,} captions, "
               f"{summary['n_null_captions']} null)")
