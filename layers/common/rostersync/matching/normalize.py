"""Text normalization shared by key discovery, key matching and fuzzy matching.

Everything here is a pure function of its argument. The name functions are memoized:
rosters repeat the same given and family names thousands of times, so folding each
distinct string once is what keeps normalization of 100k records well under a second.
"""

from __future__ import annotations

import re
from functools import lru_cache

from anyascii import anyascii

# Apostrophes and dots join the parts of a name ("O'Brien" is "obrien", "St.John" is
# "stjohn") rather than split it; every other non-alphanumeric character separates tokens
# ("Smith-Jones" is two tokens).
_JOINERS = re.compile("['\u2019\u2018`\u00b4.]")
_SEPARATORS = re.compile(r"[^0-9a-z]+")

_SOUNDEX_CODES = {
    **dict.fromkeys("bfpv", "1"),
    **dict.fromkeys("cgjkqsxz", "2"),
    **dict.fromkeys("dt", "3"),
    "l": "4",
    **dict.fromkeys("mn", "5"),
    "r": "6",
}

_CACHE_SIZE = 1 << 18


def fold_accents(text: str) -> str:
    """Lower-case ``text`` and write it in ASCII letters: accents stripped and other
    scripts transliterated (``"Zoë Núñez"`` → ``"zoe nunez"``, ``"Иван"`` → ``"ivan"``,
    ``"さくら"`` → ``"sakura"``, ``"Søren"`` → ``"soren"``), so an SIS and an app that
    write one name in different scripts or with and without accents meet. Chinese
    characters (and Japanese kanji) become their pinyin syllables: the same characters on
    both sides still meet, kanji and kana of one name do not."""
    return anyascii(text).casefold()


@lru_cache(maxsize=_CACHE_SIZE)
def fold_name(text: str) -> str:
    """A name as space-separated ASCII tokens: accents folded, case folded, hyphens and
    other punctuation turned into single spaces. ``"  Anne-Marie  O'Neil "`` becomes
    ``"anne marie oneil"``; an empty or punctuation-only name becomes ``""``."""
    folded = _JOINERS.sub("", fold_accents(text))
    return _SEPARATORS.sub(" ", folded).strip()


@lru_cache(maxsize=_CACHE_SIZE)
def soundex(token: str) -> str:
    """American Soundex of one folded token (``"robert"`` → ``"R163"``); ``""`` for a
    token without letters. Used for blocking only: it groups spellings that sound alike so
    a typo in a vowel or a doubled consonant still lands in the same block."""
    letters = [c for c in token if "a" <= c <= "z"]
    if not letters:
        return ""
    first = letters[0]
    code = [first.upper()]
    previous = _SOUNDEX_CODES.get(first, "")
    for c in letters[1:]:
        digit = _SOUNDEX_CODES.get(c, "")
        if digit and digit != previous:
            code.append(digit)
            if len(code) == 4:
                break
        # "h" and "w" do not separate equal codes; vowels do.
        if c not in "hw":
            previous = digit
    return "".join(code).ljust(4, "0")


def normalize_identifier(value: str | None) -> str:
    """An identifier compared exactly: trimmed and case-folded; ``""`` when blank."""
    if value is None:
        return ""
    return value.strip().casefold()


def strip_leading_zeros(value: str) -> str:
    """The leading-zero-free variant of a normalized identifier (``"00123"`` → ``"123"``).

    A value made only of zeros keeps one, so ``"000"`` does not collapse into blank."""
    stripped = value.lstrip("0")
    if not stripped and value:
        return "0"
    return stripped


def normalize_email(value: str | None) -> str:
    """An email compared exactly: trimmed and case-folded; ``""`` when blank or not an
    address."""
    email = normalize_identifier(value)
    return email if "@" in email else ""


def email_local_part(value: str | None) -> str:
    """The comparable local part of an email: case-folded, ``+tag`` and dots removed,
    since providers and schools treat ``jo.smith+art`` and ``josmith`` as one mailbox
    often enough for a similarity signal (never for a key)."""
    email = normalize_email(value)
    if not email:
        return ""
    local = email.split("@", 1)[0].split("+", 1)[0]
    return local.replace(".", "")


_GRADE_WORDS = {
    "k": 0,
    "kg": 0,
    "kindergarten": 0,
    "tk": -1,
    "pk": -1,
    "prek": -1,
    "pre k": -1,
    "prekindergarten": -1,
    "ps": -2,
    "it": -3,
    "r": 0,  # England: Reception
}


@lru_cache(maxsize=1024)
def grade_level(grade: str | None) -> int | None:
    """A grade as an integer level (``"KG"`` → 0, ``"PK"`` → -1, ``"07"`` → 7,
    ``"Year 9"`` → 9); None when blank or not recognizable. Comparing levels rather than
    strings lets ``"7"`` meet ``"07"`` and a grade one year apart be told apart from a
    grade five years apart."""
    if grade is None:
        return None
    text = fold_name(grade)
    for prefix in ("grade ", "year ", "yr ", "y ", "g "):
        if text.startswith(prefix):
            text = text[len(prefix) :]
            break
    if text in _GRADE_WORDS:
        return _GRADE_WORDS[text]
    digits = text.replace(" ", "")
    if digits.isdigit():
        return int(digits)
    return None
