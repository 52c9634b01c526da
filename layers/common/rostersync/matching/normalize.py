"""Text normalization shared by key discovery, key matching and fuzzy matching.

Everything here is a pure function of its argument. The name functions are memoized:
rosters repeat the same given and family names thousands of times, so folding each
distinct string once is what keeps normalization of 100k records well under a second.

Japanese names are written in kanji, in hiragana, in katakana or in romaji, and an SIS
and an app often use different ones (a Japanese SIS: 佐藤 and さとう; the app: "Sato").
Kana spell their sound exactly; kanji do not (陽斗 is Haruto, Hinato or Yōto), so no
kanji is ever read here: a Japanese SIS sends the school's own kana reading of each name
beside it (``PersonRecord.given_name_reading``), and a name in kanji without one is
compared only as written (the same kanji on both sides).

* ``fold_name``, the *spelling* every comparison starts from, writes kana as Hepburn
  romaji (``"きょうこ"`` → ``"kyouko"``, ``"ジョン"`` → ``"jon"``): a transliteration like
  Cyrillic to Latin. Kanji keep their pinyin syllables (``anyascii``), as Chinese
  characters do: the same characters on both sides meet, and a Chinese name is folded as
  it always was.
* ``name_reading``, the *reading*: how the name sounds, in romaji with Hepburn's long
  vowels written one way (``"Satō"``, ``"Sato"``, ``"Satou"``, ``"Satoh"``, ``"さとう"``
  and ``"サトー"`` all read ``"sato"``); ``""`` for a name with kanji.

Kana become romaji through ``jaconv`` (MIT; ``kata2hira`` and ``kana2alphabet``, which
writes the romaji of a keyboard's kana input), with four rules that make its output
Hepburn (``_hepburn``): the long-vowel mark ー repeats the vowel before it (``"サトー"``:
jaconv's ``"sato-"`` is ``"satoo"``); a small tsu before ch is t (``"maccha"`` is
``"matcha"``), and one with no consonant after it is dropped; a small vowel ぁぃぅぇぉ
takes the place of the vowel of the kana before it (ティ ``"ti"``, ジェ ``"je"``, ウィ
``"wi"``; jaconv writes ``"tei"``, ``"jie"``, ``"ui"``). ん before a vowel or y is
Hepburn's ``"n'"``, which folding writes ``"n"`` as jaconv does.
"""

from __future__ import annotations

import re
import unicodedata
from enum import IntEnum
from functools import lru_cache

import jaconv
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

# Hiragana, katakana (with the long-vowel mark), katakana extensions, half-width katakana.
_KANA = "\u3040-\u30ff\u31f0-\u31ff\uff65-\uff9f"
# CJK ideographs (extension A, the unified block, compatibility ideographs, the
# supplementary planes) and the iteration mark 々 (佐々木).
_KANJI = "\u3005\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f"
_HAS_KANA = re.compile(f"[{_KANA}]")
_HAS_KANJI = re.compile(f"[{_KANJI}]")
_KANA_RUNS = re.compile(f"([{_KANA}]+)")
# Hepburn's ways of writing one romaji reading: "m" before b, m, p ("Homma", "Honma");
# "oh" for a long o ("Satoh", "Ohno"); a long vowel doubled or as "ou" ("Satou", "Oono",
# "Yuuto"), which a macron already folded to one letter ("Satō", "Yūto").
_ROMAJI_M = re.compile("m(?=[bmp])")
_ROMAJI_OH = re.compile("oh(?![aeiouy])")
_ROMAJI_OU = re.compile("ou")
_ROMAJI_LONG = re.compile("([aeiou])\\1+")
# jaconv's romaji: the long-vowel mark written "-" after a vowel; a kana and a small vowel.
_LONG_MARK = re.compile("([aeiou])-+")
_SMALL_VOWELS = {"ぁ": "a", "ぃ": "i", "ぅ": "u", "ぇ": "e", "ぉ": "o"}
_SMALL_VOWEL = re.compile("([\u3041-\u3096])([ぁぃぅぇぉ])")


class NameScript(IntEnum):
    """The scripts a name is written in, for reading comparisons (``name_script``)."""

    #: No kana and no kanji: Latin letters, or another script ``anyascii`` transliterates.
    OTHER = 0
    #: Kana and no kanji: Japanese, read exactly. A name in kanji with the school's kana
    #: reading is compared as this too (``encoding``).
    KANA = 1
    #: Kanji and kana: Japanese, without a reading (no kanji is ever read here).
    MIXED = 2
    #: Kanji only: Chinese or Japanese, without a reading.
    KANJI = 3


def _hepburn(kana: str) -> str:
    """Kana (NFKC-normalized) as Hepburn romaji: ``jaconv``'s romaji with the rules of
    the module's docstring; anything else in ``kana`` is left as it is."""
    hiragana = jaconv.kata2hira(kana)
    hiragana = _SMALL_VOWEL.sub(_small_vowel, hiragana)
    romaji = jaconv.kana2alphabet(hiragana)
    romaji = _LONG_MARK.sub(lambda m: m.group(1) * (len(m.group(0))), romaji)
    romaji = romaji.replace("-", "").replace("cch", "tch")
    return romaji.replace("xtsu", "")


def _small_vowel(match: re.Match[str]) -> str:
    """A kana and the small vowel after it (てぃ, じぇ, うぃ) in romaji: the small vowel
    in place of the kana's own."""
    base, small = match.group(1), match.group(2)
    vowel = _SMALL_VOWELS[small]
    if base == "う":
        return "w" + vowel
    return jaconv.kana2alphabet(base)[:-1] + vowel


def fold_accents(text: str) -> str:
    """Lower-case ``text`` and write it in ASCII letters: accents stripped and other
    scripts transliterated (``"Zoë Núñez"`` → ``"zoe nunez"``, ``"Иван"`` → ``"ivan"``,
    ``"Søren"`` → ``"soren"``), so an SIS and an app that write one name in different
    scripts or with and without accents meet. Kana become Hepburn romaji (``"さくら"`` →
    ``"sakura"``, ``"きょうこ"`` → ``"kyouko"``); Chinese characters (and Japanese kanji)
    become their pinyin syllables, so the same characters on both sides meet (kanji meet
    kana and romaji only through the school's reading of the name)."""
    if _HAS_KANA.search(text) is None:
        return anyascii(text).casefold()
    pieces = []
    for i, piece in enumerate(_KANA_RUNS.split(text)):
        if i % 2:
            kana = unicodedata.normalize("NFKC", piece)
            piece = _hepburn(kana)
        pieces.append(anyascii(piece))
    return "".join(pieces).casefold()


@lru_cache(maxsize=_CACHE_SIZE)
def fold_name(text: str) -> str:
    """A name as space-separated ASCII tokens: accents folded, case folded, hyphens and
    other punctuation turned into single spaces. ``"  Anne-Marie  O'Neil "`` becomes
    ``"anne marie oneil"``; an empty or punctuation-only name becomes ``""``."""
    folded = _JOINERS.sub("", fold_accents(text))
    return _SEPARATORS.sub(" ", folded).strip()


@lru_cache(maxsize=_CACHE_SIZE)
def name_script(text: str) -> NameScript:
    """Which of kana and kanji ``text`` holds (``NameScript``)."""
    kana = _HAS_KANA.search(text) is not None
    kanji = _HAS_KANJI.search(text) is not None
    if kanji:
        return NameScript.MIXED if kana else NameScript.KANJI
    return NameScript.KANA if kana else NameScript.OTHER


def romaji_reading(folded: str) -> str:
    """A folded romaji name with Hepburn's variants written one way and its spaces
    removed: ``"satou"``, ``"satoh"``, ``"satoo"`` and ``"sato"`` are ``"sato"``,
    ``"homma"`` is ``"honma"``, ``"yuuto"`` is ``"yuto"``."""
    text = folded.replace(" ", "")
    text = _ROMAJI_M.sub("n", text)
    text = _ROMAJI_OH.sub("o", text)
    text = _ROMAJI_OU.sub("o", text)
    return _ROMAJI_LONG.sub(r"\1", text)


@lru_cache(maxsize=_CACHE_SIZE)
def name_reading(text: str) -> str:
    """How a name sounds, as ``romaji_reading`` of its romaji: kana read as written
    (``"さとう"``, ``"サトウ"``, ``"サトー"``, ``"Satō"`` and ``"Satou"`` are all
    ``"sato"``); a name without kana or kanji is read as it is spelled. ``""`` when
    blank, and for a name with kanji: only the school knows how its kanji are read
    (``PersonRecord.given_name_reading``)."""
    script = name_script(text)
    if script is NameScript.OTHER:
        return romaji_reading(fold_name(text))
    if script is not NameScript.KANA:
        return ""
    romaji = _hepburn(unicodedata.normalize("NFKC", text))
    folded = _JOINERS.sub("", anyascii(romaji).casefold())
    return romaji_reading(_SEPARATORS.sub(" ", folded).strip())


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
