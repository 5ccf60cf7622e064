"""The class table (paper_spec A1-A2): wnids, ImageNet lemmas, synset texts and lemma rules.

Sources, all offline:
- timm's bundled ImageNet metadata (``timm/data/_info``): the 1,000 ImageNet-1k wnids, the ImageNet
  lemma strings (21k synsets) and the WordNet glosses;
- WordNet 3.0 through nltk's reader (Debian's ``wordnet-base`` in /usr/share/wordnet, or
  ``$LAIONET_WORDNET``, or an nltk_data ``corpora/wordnet``) for the synset *head name*: the authors
  wrote ``"<head> which is <definition>"`` with the synset's own name (``teddy.n.01`` -> "teddy"),
  which differs from the first ImageNet lemma for 112 of the 1,000 classes.
The authors' class list differs from ILSVRC-2012 in two ways (A1): the crane machine n03126707 is
removed and Siberian husky is listed as n02112837 instead of n02110185. ``authors_class_list=True``
reproduces both; the default keeps the true devkit wnids.
"""

import functools
import hashlib
import importlib.util
import os
import re
import shutil
import warnings
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

import pandas as pd
from laionet.paper import CRANE_MACHINE, HUSKY_AUTHORS, HUSKY_TRUE, WELL_KNOWN_HYPERNYM_MIN_COUNT
from laionet.util.files import atomic_path, write_text
from laionet.util.paths import resolve


QUERY_COLUMNS = ("name", "name_def", "lemmas_or", "a_photo_of_name", "a_photo_of_name_def",
                 "a_clear_photo_of_name_def", "a_photo_of_lemmas")
TABLE_COLUMNS = ("wnid", "lemmas", "head", "definition", *QUERY_COLUMNS)
LEMMA_RULES = ("unique_in_imagenet", "unique_in_wordnet")

_WNID = re.compile(r"^n\d{8}$")

# The 45 lexicographer files of WordNet 3.0 (lexnames(5WN)). nltk's reader needs a ``lexnames``
# file that Debian's wordnet-base does not ship; its content is fixed by the WordNet 3.0 format.
_LEXNAMES = (
    "adj.all", "adj.pert", "adv.all", "noun.Tops", "noun.act", "noun.animal", "noun.artifact",
    "noun.attribute", "noun.body", "noun.cognition", "noun.communication", "noun.event",
    "noun.feeling", "noun.food", "noun.group", "noun.location", "noun.motive", "noun.object",
    "noun.person", "noun.phenomenon", "noun.plant", "noun.possession", "noun.process",
    "noun.quantity", "noun.relation", "noun.shape", "noun.state", "noun.substance", "noun.time",
    "verb.body", "verb.change", "verb.cognition", "verb.communication", "verb.competition",
    "verb.consumption", "verb.contact", "verb.creation", "verb.emotion", "verb.motion",
    "verb.perception", "verb.possession", "verb.social", "verb.stative", "verb.weather", "adj.ppl")
_POS = {"noun": 1, "verb": 2, "adj": 3, "adv": 4}
_WORDNET_FILES = [f"{kind}.{pos}" for pos in _POS for kind in ("data", "index")]
WORDNET_HELP = (
    "WordNet 3.0 was not found. Install it: `./run_all.sh env` does (apt_install wordnet-base, "
    "unless LAIONET_NO_APT=1), or by hand `apt-get install wordnet-base` (Debian/Ubuntu, puts it "
    "in /usr/share/wordnet); or set LAIONET_WORDNET to a folder holding WordNet 3.0's "
    "data.noun/index.noun/... files (an nltk_data corpora/wordnet folder works too).")
HEAD_SOURCES = ("wordnet", "timm")
TIMM_FALLBACK_HELP = (
    "To run without WordNet anyway, accept timm's first ImageNet lemma as the head name with "
    "`-p head_source timm` (class_table(head_source='timm')): the synset texts of 112 of the "
    "1,000 ImageNet classes then differ from the authors'.")


def _timm_info(name: str) -> str:
    """A file of timm's bundled ImageNet metadata, found without importing timm (its import costs
    seconds, in every kernel that only needs the class table)."""
    spec = importlib.util.find_spec("timm")
    try:
        if spec is None or not spec.submodule_search_locations:
            raise ModuleNotFoundError("timm")
        folder = Path(next(iter(spec.submodule_search_locations)))
        return (folder / "data" / "_info" / name).read_text(encoding="utf-8")
    except (ModuleNotFoundError, FileNotFoundError) as exc:  # pragma: no cover - env problem
        raise RuntimeError(f"timm's bundled ImageNet metadata {name} is missing: install timm "
                           "(see requirements.lock)") from exc


@functools.cache
def imagenet1k_wnids() -> tuple[str, ...]:
    """The 1,000 ILSVRC-2012 wnids in timm's (sorted, class-index) order."""
    return tuple(_timm_info("imagenet_synsets.txt").split())


@functools.cache
def _timm_map(what: str) -> dict[str, str]:
    text = _timm_info(f"imagenet_synset_to_{what}.txt")
    return dict(line.split("\t", 1) for line in text.splitlines() if "\t" in line)


def _wordnet_candidates() -> list[Path]:
    env = os.environ.get("LAIONET_WORDNET")
    if env:  # an explicit choice is the only candidate: never silently use another corpus
        return [Path(env).expanduser()]
    return [Path("/usr/share/wordnet")] + [
        base / "corpora" / "wordnet" for base in (Path.home() / "nltk_data",
                                                  Path("/usr/share/nltk_data"),
                                                  Path("/usr/local/share/nltk_data"))]


def _not_found() -> str:
    return f"{WORDNET_HELP} Looked in: {', '.join(str(p) for p in _wordnet_candidates())}."


def _prepared_root(src: Path) -> Path:
    """A folder nltk's reader accepts: ``src`` itself, or a cached copy of it plus ``lexnames``
    (nltk refuses symlinks that leave the corpus root, so the files are copied once, about 28 MB;
    ``lexnames`` is written last and marks a complete copy)."""
    if (src / "lexnames").is_file():
        return src
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "laionet" / "wordnet"
    dest = cache / hashlib.sha256(str(src.resolve()).encode()).hexdigest()[:12]
    if not (dest / "lexnames").is_file():
        for f in sorted(src.iterdir()):
            if f.is_file():
                with atomic_path(dest / f.name) as tmp:
                    shutil.copyfile(f, tmp)
        write_text("".join(f"{i:02d}\t{n}\t{_POS[n.split('.')[0]]}\n"
                           for i, n in enumerate(_LEXNAMES)), dest / "lexnames")
    return dest


@functools.cache
def wordnet(required: bool = True):
    """nltk's WordNet 3.0 reader over a local corpus (never ``nltk.download``); without one, None
    when ``required`` is False, else a RuntimeError with the fix."""
    src = next((p for p in _wordnet_candidates()
                if all((p / f).is_file() for f in _WORDNET_FILES)), None)
    if src is None:
        if required:
            raise RuntimeError(_not_found())
        return None
    import nltk
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

    class EnglishWordNet30(WordNetCorpusReader):
        """nltk's reader without the WordNet-version map that only multilingual (OMW) lookups
        use: it needs ``index.sense``, which Debian's wordnet-base does not ship."""
        def map_wn(self, version="wordnet"):
            return None

    root = _prepared_root(src)
    for p in (str(root), str(src.resolve())):  # nltk only reads corpora under nltk.data.path
        if p not in nltk.data.path:
            nltk.data.path.append(p)
    with warnings.catch_warnings():  # "multilingual functions are not available": not needed
        warnings.simplefilter("ignore", UserWarning)
        reader = EnglishWordNet30(str(root), None)
    if reader.get_version() != "3.0":
        raise RuntimeError(f"{src} holds WordNet {reader.get_version()}, the glosses must come "
                           f"from WordNet 3.0. {WORDNET_HELP}")
    return reader


def wordnet_available() -> bool:
    return wordnet(required=False) is not None


class UnknownWnid(ValueError):
    """A wnid that names no WordNet 3.0 noun synset (a typo, or a synset of another WordNet)."""


def _synset(wn, wnid: str):
    if wnid == HUSKY_AUTHORS:  # the authors' special case (A1): their husky wnid is a different synset
        return wn.synsets("siberian_husky")[0]
    with warnings.catch_warnings():  # nltk warns, then returns None: the error below says more
        warnings.simplefilter("ignore", UserWarning)
        syn = wn.synset_from_pos_and_offset(wnid[0], int(wnid[1:]))
    if syn is None:
        raise UnknownWnid(f"{wnid!r} is no WordNet 3.0 noun synset (nor in timm's ImageNet-21k "
                          "list): fix or remove it (ImageNet wnids are n + the 8-digit offset "
                          "of a noun synset)")
    return syn


def _read_class_file(path: Path) -> list[tuple[str, list[str] | None, int]]:
    if not path.is_file():
        raise FileNotFoundError(f"class list {path} does not exist (expected one wnid per line)")
    out = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line or line == "id: lemmas":
            continue
        wnid, sep, rest = line.partition(": ")
        wnid = wnid.strip()
        if not _WNID.match(wnid):
            raise ValueError(f"{path}:{lineno}: {wnid!r} is not a wnid (expected n + 8 digits, "
                             "one per line, optionally followed by ': lemma, lemma')")
        out.append((wnid, rest.split(", ") if sep else None, lineno))
    if not out:
        raise ValueError(f"class list {path} holds no wnids")
    return out


def parse_class_file(path: str | os.PathLike) -> list[tuple[str, list[str] | None]]:
    """(wnid, lemmas) pairs of a class list in file order: one wnid per line (lemmas None), or
    the authors' ``wnid: lemma, lemma`` format; blank lines, ``#`` comments and an ``id: lemmas``
    header are ignored."""
    return [(wnid, lemmas) for wnid, lemmas, _ in _read_class_file(Path(path))]


def _resolve_classes(classes: str | os.PathLike | Sequence[str], authors_class_list: bool
                     ) -> tuple[list[str], dict[str, str]]:
    """The wnids of a class source and, for a file, wnid -> "file:line" (for error messages)."""
    where: dict[str, str] = {}
    if isinstance(classes, str) and classes == "imagenet1k":
        wnids = list(imagenet1k_wnids())
    elif isinstance(classes, (str, os.PathLike)):
        path = resolve(classes)
        rows = _read_class_file(path)  # duplicates are refused below, before ``where`` is read
        wnids, where = [w for w, _, _ in rows], {w: f"{path}:{n}" for w, _, n in rows}
    else:
        wnids = [str(w) for w in classes]
        bad = [w for w in wnids if not _WNID.match(w)]
        if bad:
            raise ValueError(f"classes: not wnids: {bad[:5]}")
    dup = [w for w, n in Counter(wnids).items() if n > 1]
    if dup:
        raise ValueError(f"classes: duplicated wnids {dup[:5]}")
    if authors_class_list:
        wnids = [HUSKY_AUTHORS if w == HUSKY_TRUE else w for w in wnids if w != CRANE_MACHINE]
    elif HUSKY_AUTHORS in wnids:
        raise ValueError(f"classes: {HUSKY_AUTHORS} is the authors' wrong wnid for Siberian husky "
                         f"(ILSVRC uses {HUSKY_TRUE}); this is the authors' class list: set "
                         "authors_class_list=True (`-p authors_class_list true`, read by every "
                         "stage that builds the class table) to keep it")
    return wnids, where


def class_table(classes: str | os.PathLike | Sequence[str] = "imagenet1k",
                authors_class_list: bool = False, head_source: str = "wordnet") -> pd.DataFrame:
    """One row per class: wnid, lemmas, head, definition, name_def and the other query forms (A2).
    classes: "imagenet1k", a path to a class list (one wnid per line, or the authors'
        ``wnid: lemmas`` file; relative paths from the project root), or a list of wnids.
        Row order is the list's order (timm's sorted order for imagenet1k).
    authors_class_list: reproduce the authors' two deviations (drop n03126707, husky as
        n02112837). Default False: the true ILSVRC-2012 devkit wnids.
    head_source: "wordnet" (the authors' head names: the synset's name truncated before ``.n.``,
        underscores -> spaces; needs WordNet 3.0 and is an error naming the fix without it) or
        "timm" (the first ImageNet lemma, an explicit choice: it differs from the authors' head
        for 112 classes, so their synset texts change).
    The table's ``attrs`` record authors_class_list and head_source (used by ``lemma_map``)."""
    if head_source not in HEAD_SOURCES:
        raise ValueError(f"head_source must be one of {HEAD_SOURCES}, not {head_source!r}")
    wnids, where = _resolve_classes(classes, authors_class_list)
    wn = wordnet(required=False) if head_source == "wordnet" else None
    if head_source == "wordnet" and wn is None:  # never a silent fallback: 112 texts would change
        raise RuntimeError(f"class_table: the synset texts need WordNet's head names. "
                           f"{_not_found()} {TIMM_FALLBACK_HELP}")
    rows = []
    for wnid in wnids:
        key = HUSKY_TRUE if wnid == HUSKY_AUTHORS else wnid  # same ImageNet lemmas and gloss
        try:
            syn = _synset(wn, wnid) if wn is not None else None
        except UnknownWnid as exc:
            raise UnknownWnid(f"{where.get(wnid, 'classes')}: {exc}") from None
        lemmas = _timm_map("lemma").get(key)
        if lemmas is not None:
            lemmas = lemmas.split(", ")
        elif syn is not None:
            lemmas = [lem.name().replace("_", " ") for lem in syn.lemmas()]
        else:
            raise RuntimeError(f"{wnid} is not in timm's ImageNet-21k metadata; its lemmas need "
                               f"WordNet. {WORDNET_HELP}")
        if syn is not None:
            rows.append((wnid, lemmas, syn.name().split(".n.")[0].replace("_", " "),
                         syn.definition()))
            continue
        definition = _timm_map("definition").get(key)
        if definition is None:
            raise RuntimeError(f"{wnid}: no definition in timm's metadata. {WORDNET_HELP}")
        rows.append((wnid, lemmas, lemmas[0], definition))
    df = pd.DataFrame(rows, columns=["wnid", "lemmas", "head", "definition"])
    df["name"] = df["head"]
    df["name_def"] = df["head"] + " which is " + df["definition"]
    df["lemmas_or"] = df["lemmas"].map(" or ".join)
    df["a_photo_of_name"] = "a photo of " + df["name"]
    df["a_photo_of_name_def"] = "a photo of " + df["name_def"]
    df["a_clear_photo_of_name_def"] = "a clear photo of " + df["name_def"]
    df["a_photo_of_lemmas"] = "a photo of " + df["lemmas_or"]
    df = df[list(TABLE_COLUMNS)]
    df.attrs.update(authors_class_list=bool(authors_class_list), head_source=head_source)
    return df


def unique_lemma_pairs(rows: Iterable[tuple[str, Sequence[str]]]) -> list[tuple[str, str]]:
    """The authors' "unique in ILSVRC" rule: keep a lemma iff it occurs exactly once in ``rows``,
    in row order, then lemma order within the row (the authors' dict insertion order); rows left
    without a lemma get no entry ("ignored empty wnids")."""
    rows = [(w, list(ls)) for w, ls in rows]
    counts = Counter(lem for _, ls in rows for lem in ls)
    return [(lem, w) for w, ls in rows for lem in ls if counts[lem] == 1]


def _universe(table: pd.DataFrame) -> pd.DataFrame:
    """ImageNet-1k as the lemma rules see it: the authors' 999 rows with authors_class_list."""
    return class_table("imagenet1k", table.attrs.get("authors_class_list", False),
                       head_source="timm")


def lemma_map(table: pd.DataFrame, rule: str = "unique_in_imagenet") -> list[tuple[str, str]]:
    """Ordered (lemma, wnid) pairs for the classes of ``table`` under a lemma rule (A1).
    unique_in_imagenet: uniqueness is decided over the whole ImageNet-1k list (the authors' 999
        rows when the table was built with authors_class_list=True), then restricted to the
        table's classes, in table order.
    unique_in_wordnet: a lemma is kept iff WordNet 3.0 has exactly one lemma of that name (all
        parts of speech); classes left empty get every lemma extended with the most frequent
        lemma name of their first well-known hypernym (e.g. "boxer dog")."""
    if rule == "unique_in_imagenet":
        universe = _universe(table)
        # the table's own lemmas count too (a class outside ImageNet-1k joins the universe)
        extra = table[~table["wnid"].isin(universe["wnid"])]
        pairs = unique_lemma_pairs(zip(pd.concat([universe["wnid"], extra["wnid"]]),
                                       pd.concat([universe["lemmas"], extra["lemmas"]])))
        by_wnid: dict[str, list[tuple[str, str]]] = {}
        for lem, w in pairs:
            by_wnid.setdefault(w, []).append((lem, w))
        return [p for w in table["wnid"] for p in by_wnid.get(w, [])]
    if rule == "unique_in_wordnet":
        wn, out = wordnet(required=True), []
        for wnid, lemmas in zip(table["wnid"], table["lemmas"]):
            kept = []
            for lem in lemmas:
                found = wn.lemmas(lem.replace(" ", "_"))
                if not found:
                    raise ValueError(f"unique_in_wordnet: WordNet 3.0 has no lemma {lem!r} (class "
                                     f"{wnid}); the authors' rule requires every lemma to exist")
                if len(found) == 1:
                    kept.append(lem)
            if not kept:
                suffix = _well_known_hypernym_name(_synset(wn, wnid))
                kept = [f"{lem} {suffix}" for lem in lemmas]
            out.extend((lem, wnid) for lem in kept)
        return out
    raise ValueError(f"lemma rule must be one of {LEMMA_RULES}, not {rule!r}")


def classes_without_unique_lemma(table: pd.DataFrame, rule: str = "unique_in_imagenet"
                                 ) -> pd.DataFrame:
    """The classes of ``table`` no caption can ever match under ``rule``, and why (columns wnid,
    head, lemmas, why). For "unique_in_imagenet", every lemma of such a class is a lemma of
    another class of the universe too (``lemma_map``'s: ImageNet-1k, the authors' 999 with
    ``authors_class_list``), and ``why`` names them, e.g. "'crane' is also n03126707 (crane)";
    with the default 1,000-class list crane the bird (n02012849) is one of them, with the
    authors' list (machine crane removed) it is not. "unique_in_wordnet" extends an empty class
    with its hypernym's name, so no class is left out (an empty table)."""
    cols = ["wnid", "head", "lemmas"]
    reached = {w for _, w in lemma_map(table, rule)}
    left = table[~table["wnid"].isin(reached)]
    if not len(left):
        return pd.DataFrame(columns=[*cols, "why"])
    both = pd.concat([_universe(table)[cols], table[cols]]).drop_duplicates("wnid")
    owners: dict[str, list[tuple[str, str]]] = {}
    for w, h, ls in zip(both["wnid"], both["head"], both["lemmas"]):
        for lem in ls:
            owners.setdefault(lem, []).append((w, h))

    def why(wnid: str, lemmas: Sequence[str]) -> str:
        if not lemmas:
            return "the class has no lemma"
        return "; ".join(f"{lem!r} is also " + ", ".join(f"{w} ({h})" for w, h in owners[lem]
                                                          if w != wnid) for lem in lemmas)

    out = left[cols].copy()
    out["why"] = [why(w, ls) for w, ls in zip(out["wnid"], out["lemmas"])]
    return out.reset_index(drop=True)


def _well_known_hypernym_name(synset) -> str:
    """Most frequent lemma name of the first hypernym whose summed lemma counts reach the minimum."""
    h = synset
    while True:
        hypers = h.hypernyms() or h.instance_hypernyms()
        if not hypers:
            raise ValueError(f"{synset.name()}: no well-known hypernym found")
        h = hypers[0]
        lemmas = h.lemmas()
        if sum(lem.count() for lem in lemmas) >= WELL_KNOWN_HYPERNYM_MIN_COUNT:
            best = max(lemmas, key=lambda lem: lem.count())  # first one on ties
            return best.name().replace("_", " ")
