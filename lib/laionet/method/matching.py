"""Caption-lemma matching (paper_spec A3), vectorized over Arrow batches.

Two modes share one engine:
- ``mode="paper"`` (default): the authors' exact rule. Each ASCII punctuation character of the
  caption becomes a space, caption and lemma are padded with one space each side, and a lemma
  matches iff the padded lemma is a plain, case-sensitive substring of the padded caption. The
  lemma's own punctuation is kept, so the 64 lemmas with punctuation never match.
- ``mode="normalized"`` (fix E.1): caption and lemma are normalized identically - Unicode NFKC,
  full case folding, and every run of punctuation (P*), symbols (S*), separators (Z*) and control
  characters (Cc, which includes tab and newline) becomes one space - then matched on token
  (space) boundaries the same way.

Every (caption, lemma) containment is reported once, overlaps and nested lemmas included
("pizza pie" gives both "pizza" and "pizza pie"; "sea lion" gives "lion" too when both are lemmas).

The engine: a padded lemma " L " occurs in " T " iff L starts at a *token start* of T (its start
or just after a space) and ends at the end of T or before a space. So it takes the 4 bytes at
every token start of the batch (one numpy gather through an unaligned uint32 view), keeps the few
whose 4-byte prefix is some lemma's (a hashed lookup table), and verifies only those against
their lemmas byte by byte, vectorized. UTF-8 is self-synchronizing and the space is ASCII, so
byte matching equals ``str`` matching.
"""

import functools
import string
from itertools import groupby
import sys
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

MODES = ("paper", "normalized")
_SPACE = 0x20
_HASH_BITS = 20  # 2**20 hash buckets for the 4-byte words that start a pattern
_PUNCT_TO_SPACE = bytes(_SPACE if chr(i) in string.punctuation else i for i in range(256))


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {mode!r}")


# ------------------------------------------- Text preparation (both modes) and the naive reference

def _is_separator(ch: str) -> bool:
    cat = unicodedata.category(ch)
    return cat[0] in "PSZ" or cat == "Cc"


@functools.cache
def _separator_regex() -> str:
    """An RE2 class of every non-ASCII P*/S*/Z*/Cc code point, from Python's unicodedata (as
    the naive reference, whatever RE2's Unicode version; ASCII separators go byte-wise)."""
    seps = [cp for cp in range(128, sys.maxunicode + 1)
            if not 0xD800 <= cp <= 0xDFFF and _is_separator(chr(cp))]
    runs = [[cp for _, cp in g] for _, g in groupby(enumerate(seps), lambda t: t[1] - t[0])]
    body = "".join(f"\\x{{{r[0]:x}}}" if len(r) == 1 else f"\\x{{{r[0]:x}}}-\\x{{{r[-1]:x}}}"
                   for r in runs)
    return f"[{body}]+"


def normalize_text(text: str) -> str:
    """The normalized-mode form of one string: NFKC, casefold, separator runs -> one space."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    return "".join(" " if sep else "".join(run) for sep, run in groupby(folded, _is_separator))


@functools.cache
def _casefold_exception_regex() -> str:
    """An RE2 class of the characters whose Python ``casefold`` differs from Arrow's
    ``utf8_lower`` (373: ß, ς, ...)."""
    chars = [chr(c) for c in range(sys.maxunicode + 1) if not 0xD800 <= c <= 0xDFFF]
    lowered = pc.utf8_lower(pa.array(chars)).to_pylist()
    return "[" + "".join(f"\\x{{{ord(c):x}}}" for c, low in zip(chars, lowered)
                         if c.casefold() != low) + "]"


def _normalize_array(arr: pa.Array) -> pa.Array:
    """``normalize_text`` over an Arrow string array, vectorized, up to the ASCII separators
    and ASCII upper case (translated byte-wise by ``_prepare``). Pure-ASCII rows (most) are
    already NFKC with no non-ASCII separator: only the others go through the Unicode steps, and
    are scattered back. Arrow lowercases per code point; the rare rows whose full case folding
    differs (ß -> ss, final sigma, ...) are folded with Python's ``casefold``."""
    wide = pc.invert(pc.fill_null(pc.string_is_ascii(arr), True)).to_numpy(zero_copy_only=False)
    if not wide.any():
        return arr
    idx = np.flatnonzero(wide)
    nfkc = pc.utf8_normalize(arr.take(pa.array(idx)), form="NFKC")
    lowered = pc.utf8_lower(nfkc)
    special = pc.fill_null(pc.match_substring_regex(nfkc, _casefold_exception_regex()), False)
    if pc.any(special).as_py():
        sp = np.flatnonzero(special.to_numpy(zero_copy_only=False))
        folded = pa.array([s.casefold() for s in nfkc.take(pa.array(sp)).to_pylist()],
                          type=lowered.type)
        lowered = pc.replace_with_mask(lowered, special, folded)
    # non-ASCII separators (RE2, slow) only in the rows that still have non-ASCII characters
    still = pc.invert(pc.fill_null(pc.string_is_ascii(lowered), True))
    if pc.any(still).as_py():
        replaced = pc.replace_substring_regex(lowered.filter(still), _separator_regex(), " ")
        lowered = pc.replace_with_mask(lowered, still, replaced)
    # scatter back with one ``take`` (much cheaper than pc.replace_with_mask on strings)
    source = np.arange(len(arr))
    source[idx] = len(arr) + np.arange(len(idx))
    return pa.concat_arrays([arr, lowered.cast(arr.type)]).take(pa.array(source))


def _prepare(arr: pa.Array, mode: str) -> tuple[np.ndarray, np.ndarray]:
    """(offsets, bytes) the engine scans: every caption prepared for ``mode`` (paper: ASCII
    punctuation -> space; normalized: the module docstring) plus one space (nulls stay null)."""
    _check_mode(mode)
    arr = arr if mode == "paper" else _normalize_array(arr)
    offsets, data = _offsets_and_data(
        pc.binary_join_element_wise(arr, pa.scalar(" ", arr.type), pa.scalar("", arr.type)))
    # byte-wise (ASCII is one byte, so offsets are unchanged; UTF-8 continuation bytes are >= 0x80)
    data = np.frombuffer(data.tobytes().translate(
        _PUNCT_TO_SPACE if mode == "paper" else _ASCII_SEP_TO_SPACE), dtype=np.uint8)
    offsets = offsets - offsets[0]
    return (offsets, data) if mode == "paper" else _collapse_spaces(offsets, data)


def _collapse_spaces(offsets: np.ndarray, data: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Drop every space that follows a space (runs -> one space); offsets follow the bytes."""
    # the dropped bytes are few, so shift offsets by a search over them, not a cumsum of all bytes
    drop = np.flatnonzero((data[1:] == _SPACE) & (data[:-1] == _SPACE)) + 1
    if not len(drop):
        return offsets, data
    return offsets - np.searchsorted(drop, offsets), np.delete(data, drop)


def _prepare_lemma(lemma: str, mode: str) -> str:
    return lemma if mode == "paper" else normalize_text(lemma).strip(" ")


def match_naive(texts: Sequence[str | None], lemmas: "Sequence[str] | LemmaIndex",
                mode: str = "paper") -> tuple[np.ndarray, np.ndarray]:
    """The authors' loop (every caption x every lemma, Python ``in``), the reference: (row_index
    int64, lemma_id int32) by row then lemma. Null captions never match (the authors' code
    raised on them and lost the row)."""
    names = lemmas.lemmas if isinstance(lemmas, LemmaIndex) else list(lemmas)
    _check_mode(mode)
    pats = [" " + _prepare_lemma(lem, mode) + " " for lem in names]
    rows, ids = [], []
    for i, text in enumerate(texts):
        if text is not None:
            hay = " " + (text.translate(_PUNCT) if mode == "paper" else normalize_text(text)) + " "
            hits = [j for j, pat in enumerate(pats) if pat.strip(" ") and pat in hay]
            rows += [i] * len(hits)
            ids += hits
    return np.asarray(rows, dtype=np.int64), np.asarray(ids, dtype=np.int32)


_PUNCT = str.maketrans({c: " " for c in string.punctuation})
# normalized mode, byte-wise: ASCII separators -> space, A-Z -> a-z (the casefold of ASCII rows,
# which _normalize_array leaves as they are; a no-op on the already folded non-ASCII rows).
# Bytes >= 0x80 are never ASCII characters in UTF-8, so they are kept.
_ASCII_SEP_TO_SPACE = bytes(_SPACE if _is_separator(chr(i)) else ord(chr(i).lower())
                            for i in range(128)) + bytes(range(128, 256))


# --------------------------------------------------------------------------------- The lemma index

@dataclass
class _Patterns:
    """Distinct prepared lemmas of one mode (each + its trailing space) and lookup tables."""

    data: np.ndarray  # uint8, all patterns (with trailing space) back to back
    start: np.ndarray  # int64 [P]
    length: np.ndarray  # int64 [P], trailing space included
    lemma_ptr: np.ndarray  # int64 [P+1]: CSR pattern -> lemma ids
    lemma_ids: np.ndarray  # int32
    table: np.ndarray  # bool [2**_HASH_BITS]: hashed 4-byte words that may start a pattern
    bucket_ptr: np.ndarray  # int32 [2**_HASH_BITS + 1]: CSR hash bucket -> pattern ids
    bucket_pid: np.ndarray  # int64
    head8: np.ndarray  # uint64 [P]: first (up to) 8 bytes, little-endian
    mask8: np.ndarray  # uint64 [P]: which of those 8 bytes belong to the pattern


def _hash(words: np.ndarray) -> np.ndarray:
    """Multiplicative hash of uint32 words to _HASH_BITS-bit buckets."""
    w = words.astype(np.uint32, copy=False) * np.uint32(0x9E3779B1)
    return (w >> np.uint32(32 - _HASH_BITS)).astype(np.intp)


def _build_patterns(lemmas: Sequence[str], mode: str) -> _Patterns:
    distinct: dict[bytes, list[int]] = {}
    for j, lem in enumerate(lemmas):
        p = _prepare_lemma(lem, mode).encode("utf-8")
        if p:  # an empty normalized lemma (only punctuation) can never match
            distinct.setdefault(p + b" ", []).append(j)
    pats = list(distinct)
    length = np.array([len(p) for p in pats], dtype=np.int64)
    start = (np.cumsum(length) - length).astype(np.int64)
    data = np.frombuffer(b"".join(pats), dtype=np.uint8)
    lemma_ptr = np.concatenate([[0], np.cumsum([len(distinct[p]) for p in pats])]).astype(np.int64)
    lemma_ids = np.array([j for p in pats for j in distinct[p]], dtype=np.int32)
    # every 4-byte word a pattern can start with: its first 4 bytes, or its bytes followed by any
    # tail when it is shorter (e.g. "ox " + 1 byte of whatever follows the space)
    buckets, pids = [np.zeros(0, np.intp)], [np.zeros(0, np.int64)]
    for pid, p in enumerate(pats):
        m = min(len(p), 4)
        tails = np.arange(256 ** (4 - m), dtype=np.uint64) << np.uint64(8 * m)
        buckets.append(np.unique(_hash(tails | np.uint64(int.from_bytes(p[:m], "little")))))
        pids.append(np.full(len(buckets[-1]), pid, dtype=np.int64))
    buckets, pids = np.concatenate(buckets), np.concatenate(pids)
    order = np.argsort(buckets, kind="stable")
    counts = np.bincount(buckets, minlength=1 << _HASH_BITS)
    bucket_ptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
    head8 = np.array([int.from_bytes(p[:8], "little") for p in pats], dtype=np.uint64)
    mask8 = np.array([(1 << (8 * min(len(p), 8))) - 1 for p in pats], dtype=np.uint64)
    return _Patterns(data, start, length, lemma_ptr, lemma_ids, counts > 0, bucket_ptr,
                     pids[order], head8, mask8)


class LemmaIndex:
    """Lemma strings (ids = positions) and, per mode, their compiled lookup tables."""

    def __init__(self, lemmas: Sequence[str]):
        self.lemmas = [str(lem) for lem in lemmas]
        bad = [lem for lem in self.lemmas if not lem.strip()]
        if bad:
            raise ValueError(f"LemmaIndex: empty or blank lemma strings {bad[:3]}")
        self._compiled: dict[str, _Patterns] = {}

    def __len__(self) -> int:
        return len(self.lemmas)

    def patterns(self, mode: str) -> _Patterns:
        _check_mode(mode)
        if mode not in self._compiled:
            self._compiled[mode] = _build_patterns(self.lemmas, mode)
            if mode == "normalized":  # build the per-process Unicode tables now, not per batch
                _casefold_exception_regex()
                _separator_regex()
        return self._compiled[mode]

    def unmatchable(self, mode: str) -> list[str]:
        """Lemmas that can never match in ``mode`` (paper: those holding ASCII punctuation)."""
        if mode == "paper":
            return [lem for lem in self.lemmas if any(c in string.punctuation for c in lem)]
        return [lem for lem in self.lemmas if not _prepare_lemma(lem, mode)]


# -------------------------------------------------------------------------------------- The engine

def _as_string_array(texts: pa.Array | pa.ChunkedArray) -> list[pa.Array]:
    out = []
    for c in texts.chunks if isinstance(texts, pa.ChunkedArray) else [texts]:
        if not (pa.types.is_string(c.type) or pa.types.is_large_string(c.type)):
            if not (pa.types.is_string_view(c.type) or pa.types.is_null(c.type)):
                raise TypeError(f"captions must be an Arrow string column, got {c.type}")
            c = c.cast(pa.large_string())
        out.append(c)
    return out


def _offsets_and_data(arr: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Offsets (int64, len n+1, not rebased) and the whole data buffer (uint8)."""
    wide = pa.types.is_large_string(arr.type)
    bufs = arr.buffers()
    offsets = np.frombuffer(bufs[1], dtype=np.int64 if wide else np.int32)
    offsets = offsets[arr.offset: arr.offset + len(arr) + 1].astype(np.int64)
    data = np.frombuffer(bufs[2], dtype=np.uint8) if bufs[2] is not None else np.zeros(0, np.uint8)
    return offsets, data[offsets[0]: offsets[-1]] if len(offsets) else data[:0]


def _scan(prepared: tuple[np.ndarray, np.ndarray], pats: _Patterns) -> tuple[np.ndarray, np.ndarray]:
    """(row, pattern id) of every pattern occurrence at token boundaries of ``prepared`` (every
    caption + one space: a pattern with its trailing space occurs at a token start iff the
    padded lemma occurs in the padded caption)."""
    offsets, data = prepared
    if len(offsets) < 2 or len(pats.length) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    offsets = offsets - offsets[0]
    n = len(data)
    buf = np.empty(n + 8, dtype=np.uint8)  # spare bytes: every start (<= n) has a whole word
    buf[:n] = data
    buf[n:] = _SPACE
    # token starts: row starts and every byte after a space. Rows end with their padding space,
    # so most row starts are after a space already: add only 0 and the others (null slots)
    inner = offsets[1:-1]
    inner = inner[buf[inner - 1] != _SPACE]  # offset 0 gives buf[-1], a spare space: 0 is added
    starts = np.concatenate([[0], inner, np.flatnonzero(buf[:n] == _SPACE) + 1])
    words4 = np.ndarray(shape=(n + 1,), dtype="<u4", buffer=buf, strides=(1,))  # unaligned views
    words8 = np.ndarray(shape=(n + 1,), dtype="<u8", buffer=buf, strides=(1,))
    bucket = words4[starts]  # _hash, in place on this fresh copy (no temporaries)
    bucket *= np.uint32(0x9E3779B1)
    bucket >>= np.uint32(32 - _HASH_BITS)
    hit = np.flatnonzero(pats.table[bucket])
    starts, bucket = starts[hit], bucket[hit]
    # candidate (start, pattern) pairs from the buckets' pattern lists (collisions included)
    lo = pats.bucket_ptr[bucket].astype(np.int64)
    cnt = pats.bucket_ptr[bucket + 1] - lo
    s = np.repeat(starts, cnt)
    p = pats.bucket_pid[np.repeat(lo, cnt) + _ranks(cnt)]
    # first 8 bytes in one comparison; most candidates fail here
    ok = np.flatnonzero((words8[s] & pats.mask8[p]) == pats.head8[p])
    s, p = s[ok], p[ok]
    row = np.searchsorted(offsets, s, side="right") - 1
    lens = pats.length[p]
    ok = s + lens <= offsets[row + 1]  # inside its own row (rows end with their padding space)
    s, p, row, lens = s[ok], p[ok], row[ok], lens[ok]
    # the bytes after the first 8, for the longer patterns, all pairs at once
    tail = np.maximum(lens - 8, 0)
    first = np.cumsum(tail) - tail
    within = _ranks(tail) + 8
    same = buf[np.repeat(s, tail) + within] == pats.data[np.repeat(pats.start[p], tail) + within]
    bad = np.zeros(len(s), dtype=bool)
    long_ = np.flatnonzero(tail > 0)
    if len(long_):
        bad[long_] = np.add.reduceat(~same, first[long_]) > 0
    return row[~bad], p[~bad]


def _ranks(counts: np.ndarray) -> np.ndarray:
    """0..c-1 for every count c, concatenated (the index within each CSR group)."""
    total = int(counts.sum())
    return np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(counts) - counts, counts)


def match_batch(texts: pa.Array | pa.ChunkedArray, lemmas: LemmaIndex | Sequence[str],
                mode: str = "paper") -> tuple[np.ndarray, np.ndarray]:
    """Every (caption, lemma) containment in ``texts`` (a string column; chunks numbered
    consecutively): (row_index int64, lemma_id int32), unique, by row then lemma id. Null
    captions never match (count them with ``null_count``)."""
    index = lemmas if isinstance(lemmas, LemmaIndex) else LemmaIndex(lemmas)
    pats = index.patterns(mode)
    rows_out, ids_out, base = [np.zeros(0, np.int64)], [np.zeros(0, np.int32)], 0
    for chunk in _as_string_array(texts):
        row, pid = _scan(_prepare(chunk, mode), pats)
        if chunk.null_count and len(row):  # a null slot's bytes are undefined: drop its hits
            keep = chunk.is_valid().to_numpy(zero_copy_only=False)[row]
            row, pid = row[keep], pid[keep]
        # expand pattern -> lemma ids (several lemmas can share one normalized pattern)
        cnt = pats.lemma_ptr[pid + 1] - pats.lemma_ptr[pid]
        rows_out.append(np.repeat(row, cnt) + base)
        ids_out.append(pats.lemma_ids[np.repeat(pats.lemma_ptr[pid], cnt) + _ranks(cnt)])
        base += len(chunk)
    row = np.concatenate(rows_out).astype(np.int64)
    lid = np.concatenate(ids_out).astype(np.int64)
    pair = np.unique(row * max(len(index), 1) + lid)  # dedupe per (row, lemma) and sort
    return pair // max(len(index), 1), (pair % max(len(index), 1)).astype(np.int32)

