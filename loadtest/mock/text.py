"""Deterministic reply text for the mock, with the non-ASCII that client parsers must survive."""

from __future__ import annotations

import functools
import random
import zlib
from collections.abc import Sequence

from loadtest.mock.dist import Distribution

LINE_SEPARATOR = "\u2028"

_WORDS = (
    "the", "order", "is", "ready", "and", "your", "booking", "was", "confirmed", "for", "next",
    "week", "we", "can", "also", "help", "with", "a", "refund", "if", "you", "prefer", "please",
    "check", "account", "details", "before", "travel", "thanks", "for", "waiting", "today",
)  # fmt: skip
# Every reply carries each of these: accents, a CJK word and an astral-plane emoji.
_SPECIAL = ("café", "Grüße", "日本語", "🚀")
_EXTRA = ("résumé", "über", "naïve", "東京", "😀", "señor", "Zürich", "✓")


# Replies come from a pool of this many texts per seed, picked by (conversation id, turn): composing
# a text per request cost the mock a tenth of its CPU at thousands of turns a second.
POOL_SIZE = 1024
# reply_text draws at least this many words whatever `min_words` asks, so smaller asks share a text.
_MIN_DRAWN_WORDS = 18


def reply_text(seed: int, conversation_id: str, turn: int, *, min_words: int = 1) -> str:
    """A few sentences, the same for the same (seed, conversation id, turn index).

    The text has at least `min_words` words; about one reply in three holds a U+2028 LINE
    SEPARATOR between two words, which JSON allows raw but line-splitting parsers break on.
    """
    return _pooled(seed, _pool_index(conversation_id, turn), max(min_words, _MIN_DRAWN_WORDS))[0]


def _pool_index(conversation_id: str, turn: int) -> int:
    # crc32, not hash(): the same in every process, so a seeded run repeats.
    return zlib.crc32(f"{conversation_id}:{turn}".encode("utf-8", "surrogatepass")) % POOL_SIZE


@functools.lru_cache(maxsize=4 * POOL_SIZE)
def _pooled(seed: int, index: int, min_words: int) -> tuple[str, tuple[int, ...]]:
    """Pool text `index` for `seed`, with the offsets just after each of its spaces."""
    rng = random.Random(f"{seed}:{index}")
    words: list[str] = []
    target = max(min_words, rng.randint(_MIN_DRAWN_WORDS, 40))
    while len(words) < target:
        words.append(rng.choice(_EXTRA) if rng.random() < 0.1 else rng.choice(_WORDS))
    for special in _SPECIAL:
        words.insert(rng.randrange(len(words) + 1), special)
    sentences: list[str] = []
    start = 0
    while start < len(words):
        end = min(len(words), start + rng.randint(5, 12))
        sentence = " ".join(words[start:end])
        sentences.append(sentence[0].upper() + sentence[1:] + rng.choice(".!?"))
        start = end
    text = " ".join(sentences)
    if rng.random() < 1 / 3:
        spaces = [i for i, ch in enumerate(text) if ch == " "]
        cut = rng.choice(spaces)
        text = text[:cut] + LINE_SEPARATOR + text[cut + 1 :]
    return text, _after_spaces(text)


def _after_spaces(text: str) -> tuple[int, ...]:
    return tuple(i + 1 for i, ch in enumerate(text[:-1]) if ch == " ")


def split_text(
    text: str, pieces: int, rng: random.Random, after_spaces: Sequence[int] | None = None
) -> list[str]:
    """Split `text` into `pieces` non-empty parts, cutting after spaces when there are enough."""
    if pieces < 1 or pieces > len(text):
        raise ValueError(f"cannot split {len(text)} characters into {pieces} non-empty pieces")
    spaces = _after_spaces(text) if after_spaces is None else after_spaces
    candidates = spaces if len(spaces) >= pieces - 1 else range(1, len(text))
    cuts = sorted(rng.sample(candidates, pieces - 1))
    bounds = [0, *cuts, len(text)]
    return [text[lo:hi] for lo, hi in zip(bounds, bounds[1:], strict=False)]


def reply_pieces(seed: int, conversation_id: str, turn: int, chunks: Distribution) -> list[str]:
    """The reply for one turn, already split into a `chunks`-sampled number of pieces."""
    index = _pool_index(conversation_id, turn)
    if chunks.kind == "const":
        # One split per pool text: seeding a generator and drawing the cuts for every request cost
        # the mock more than a chunk's write.
        return list(_split_pooled(seed, index, _piece_count(chunks.a)))
    # An integer seed: seeding from a string hashes it with SHA-512.
    rng = random.Random(zlib.crc32(f"{seed}:{conversation_id}:{turn}:split".encode("utf-8", "surrogatepass")))
    return _split(seed, index, _piece_count(chunks.sample(rng)), rng)


def _piece_count(sampled: float) -> int:
    # `--chunks const:0` is an empty reply (role, finish and [DONE] only): the client's `no_content`.
    return max(0, round(sampled))


@functools.lru_cache(maxsize=POOL_SIZE)
def _split_pooled(seed: int, index: int, count: int) -> tuple[str, ...]:
    """Pool text `index` in `count` pieces, cut the same way every time."""
    rng = random.Random(zlib.crc32(f"{seed}:{index}:{count}:split".encode()))
    return tuple(_split(seed, index, count, rng))


def _split(seed: int, index: int, count: int, rng: random.Random) -> list[str]:
    if count == 0:
        return []
    # n drawn words make a text of n + 4 words and at least n + 2 spaces (one may be the LINE
    # SEPARATOR), cut at spaces into up to n + 3 pieces: replies of up to 21 pieces share the pool's
    # texts of 18 words, and the pool holds one text per index, not one per index and piece count.
    words = max(count + 1 - len(_SPECIAL), _MIN_DRAWN_WORDS)
    text, after_spaces = _pooled(seed, index, words)
    return split_text(text, count, rng, after_spaces)
