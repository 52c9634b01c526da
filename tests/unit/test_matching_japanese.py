"""Japanese names across scripts: kanji, hiragana, katakana and romaji.

Kana and romaji spell a name's sound, so they meet as one name; kanji meet them through
the dictionary's reading, which is a guess (a given name's kanji may be read several
ways): evidence that is never enough for an automatic link, and never hides twins.
"""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pytest

from rostersync.matching.encoding import Vocabularies, encode_people
from rostersync.matching.normalize import NameScript, fold_name, name_reading, name_script
from rostersync.matching.people import PairOutcome, explain_pairs, match_people, score_pair
from rostersync.matching.records import PersonRecord
from rostersync.matching.scoring import (
    FAMILY,
    GIVEN,
    NAME_CLOSE,
    NAME_DIFFERENT,
    NAME_EQUIVALENT,
    NAME_EXACT,
    NAME_READING,
    NAME_SIMILAR,
    Comparisons,
    compare_pairs,
    name_tables,
)
from rostersync.models import Tier

BORN = date(2015, 4, 2)


def person(key: str, given: str, family: str, born: date | None = BORN, **fields) -> PersonRecord:
    return PersonRecord(key=key, given_name=given, family_name=family, birth_date=born, **fields)


def compare(a: PersonRecord, b: PersonRecord) -> Comparisons:
    vocab = Vocabularies()
    s, t = encode_people([a], vocab), encode_people([b], vocab)
    zero = np.zeros(1, dtype=np.int64)
    return compare_pairs(s, t, name_tables(vocab.names), zero, zero)


def name_levels(source: tuple[str, str], target: tuple[str, str]) -> tuple[int, int]:
    levels = compare(person("a", *source), person("b", *target)).levels[0]
    return int(levels[GIVEN]), int(levels[FAMILY])


@pytest.mark.parametrize(
    "spelling",
    ["佐藤", "さとう", "サトウ", "サトー", "ｻﾄｳ", "Satō", "Sato", "Satou", "Satoh", "SATOO"],
)
def test_one_reading_in_every_script_and_long_vowel_spelling(spelling):
    assert name_reading(spelling) == "sato"


@pytest.mark.parametrize(
    ("raw", "folded"),
    [
        # Small kana belong to the syllable before them (anyascii wrote "kiyouko", "jiyon").
        ("きょうこ", "kyouko"),
        ("ジョン", "jon"),
        ("しょうた", "shouta"),
        ("まっちゃ", "matcha"),
        # Kanji keep their pinyin spelling, as Chinese characters do.
        ("佐藤", "zuoteng"),
        ("王伟", "wangwei"),
        ("佐藤さくら", "zuotengsakura"),
    ],
)
def test_kana_are_folded_to_hepburn_and_kanji_to_pinyin(raw, folded):
    assert fold_name(raw) == folded


@pytest.mark.parametrize(
    ("raw", "script"),
    [
        ("Sato", NameScript.OTHER),
        ("Иван", NameScript.OTHER),
        ("さくら", NameScript.KANA),
        ("サクラ", NameScript.KANA),
        ("佐藤さくら", NameScript.MIXED),
        ("佐々木", NameScript.KANJI),
        ("王伟", NameScript.KANJI),
    ],
)
def test_name_script(raw, script):
    assert name_script(raw) is script


def test_a_kanji_the_dictionary_cannot_read_gives_no_reading():
    # 伟 is simplified Chinese: no Japanese reading, so no reading at all (never a part).
    assert name_reading("王伟") == ""
    assert name_reading("") == ""


@pytest.mark.parametrize(
    ("source", "target", "given", "family"),
    [
        # Kana and romaji of one sound: the same name transliterated, as "José" is "Jose".
        (("はなこ", "さとう"), ("Hanako", "Sato"), NAME_EXACT, NAME_EXACT),
        (("キョウコ", "サトウ"), ("Kyōko", "Satoh"), NAME_EXACT, NAME_EXACT),
        (("ゆうと", "カトー"), ("Yuto", "Katou"), NAME_EXACT, NAME_EXACT),
        (("はなこ", "さとう"), ("ハナコ", "サトウ"), NAME_EXACT, NAME_EXACT),
        # Katakana against romaji written with "ou" and "oo".
        (("ユウト", "オオノ"), ("Yuuto", "Ohno"), NAME_EXACT, NAME_EXACT),
        # Kanji against kana or romaji: the dictionary's reading, its own weaker level.
        (("花子", "佐藤"), ("はなこ", "さとう"), NAME_READING, NAME_READING),
        (("花子", "佐藤"), ("Hanako", "Satō"), NAME_READING, NAME_READING),
        (("さくら", "佐藤"), ("Sakura", "Sato"), NAME_EXACT, NAME_READING),
        (("大翔", "渡辺"), ("ヒロト", "ワタナベ"), NAME_READING, NAME_READING),
        # Variant kanji of one family name (斎藤, 斉藤) meet by reading too.
        (("花子", "斎藤"), ("花子", "斉藤"), NAME_EXACT, NAME_DIFFERENT),
        (("花子", "斎藤"), ("はなこ", "斉藤"), NAME_READING, NAME_DIFFERENT),
        # Another reading is another name.
        (("はると", "さとう"), ("Hiroto", "Sato"), NAME_DIFFERENT, NAME_EXACT),
        # A double-name match stays what it was.
        (("Maya", "Garcia"), ("Maya", "Garcia-Lopez"), NAME_EXACT, NAME_EQUIVALENT),
        # Two romaji spellings keep their own levels: a close spelling, as before.
        (("Yuuto", "Satou"), ("Yuto", "Sato"), NAME_SIMILAR, NAME_CLOSE),
    ],
)
def test_japanese_name_levels(source, target, given, family):
    assert name_levels(source, target) == (given, family)


def test_two_kanji_only_names_are_never_compared_by_reading():
    # 斎藤 and 斉藤 read alike in Japanese, but kanji-only text may be Chinese, where
    # different characters of one Japanese reading are different names.
    assert name_levels(("花子", "斎藤"), ("花子", "斉藤"))[1] == NAME_DIFFERENT
    assert name_reading("斎藤") == name_reading("斉藤")


@pytest.mark.parametrize(
    ("source", "target"),
    [
        (("伟", "王"), ("Wei", "Wang")),
        (("明", "李"), ("Ming", "Li")),
        (("小明", "王"), ("Xiaoming", "Wang")),
    ],
)
def test_a_chinese_name_matches_its_pinyin_as_before(source, target):
    assert name_levels(source, target) == (NAME_EXACT, NAME_EXACT)
    decision = match_people([person("s1", *source)], [person("t1", *target)]).decisions["s1"]
    assert (decision.tier, decision.target_key) == (Tier.AUTO, "t1")


def test_a_chinese_name_meets_no_other_characters_of_its_japanese_reading():
    # 李明 reads "sumomo mei" in Japanese: no kinship with "Mei Sumomo" in romaji beyond
    # the reading level, which is never automatic.
    source = person("s1", "明", "李")
    decision = match_people([source], [person("t1", "Mei", "Sumomo")]).decisions["s1"]
    assert decision.tier is not Tier.AUTO


def test_kana_and_romaji_of_one_name_link_automatically():
    other_day = date(2014, 11, 20)
    source = [person("s1", "きょうこ", "さとう"), person("s2", "ユウト", "イトウ", other_day)]
    target = [person("t1", "Kyōko", "Satō"), person("t2", "Yuto", "Itoh", other_day)]
    decisions = match_people(source, target).decisions
    assert {(k, d.tier, d.target_key) for k, d in decisions.items()} == {
        ("s1", Tier.AUTO, "t1"),
        ("s2", Tier.AUTO, "t2"),
    }


def test_a_kanji_reading_alone_never_makes_a_link_automatic():
    # Everything else agrees (birth date, grade, school): the reading of 大翔 as Hiroto is
    # the dictionary's likeliest, but the child may be a Taiga or a Yamato.
    source = person("s1", "大翔", "佐藤", grade="3", school="Minami")
    target = person("t1", "Hiroto", "Sato", grade="3", school="Minami")
    decision = match_people([source], [target]).decisions["s1"]
    assert (decision.tier, decision.target_key) == (Tier.SUGGESTED, "t1")
    assert explain_pairs([source], [target], [("s1", "t1")])[("s1", "t1")] is (PairOutcome.READING)
    score, evidence = score_pair(source, target)
    assert score == decision.score
    assert any("reading" in note for note in evidence.notes)
    # The same pair with the given name in kana is the same name: automatic.
    kana = person("s1", "ひろと", "佐藤", grade="3", school="Minami")
    assert match_people([kana], [target]).decisions["s1"].tier is Tier.SUGGESTED
    both_kana = person("s1", "ひろと", "さとう", grade="3", school="Minami")
    assert match_people([both_kana], [target]).decisions["s1"].tier is Tier.AUTO


def test_japanese_twins_stay_apart():
    # Twins: one family, one birth date, one class; the app holds only Hiroto.
    twins = [
        person("s1", "はると", "さとう", grade="3", school="Minami"),
        person("s2", "ひろと", "さとう", grade="3", school="Minami"),
    ]
    app = [person("t1", "Hiroto", "Sato", grade="3", school="Minami")]
    decisions = match_people(twins, app).decisions
    assert (decisions["s2"].tier, decisions["s2"].target_key) == (Tier.AUTO, "t1")
    assert decisions["s1"].tier is Tier.UNMATCHED
    comparisons = compare(twins[0], app[0])
    assert comparisons.twins[0]


def test_japanese_twins_in_kanji_never_link_to_each_other():
    # The family name agrees by reading only; 陽斗 reads "yoto" in the dictionary, not
    # "hiroto": the twin 陽斗 is never linked to Hiroto, 大翔 only suggested.
    twins = [
        person("s1", "陽斗", "佐藤", grade="3", school="Minami"),
        person("s2", "大翔", "佐藤", grade="3", school="Minami"),
    ]
    app = [person("t1", "Hiroto", "Sato", grade="3", school="Minami")]
    decisions = match_people(twins, app).decisions
    assert decisions["s1"].tier is Tier.UNMATCHED
    assert (decisions["s2"].tier, decisions["s2"].target_key) == (Tier.SUGGESTED, "t1")
    both = [*app, person("t2", "Haruto", "Sato", grade="3", school="Minami")]
    decisions = match_people(twins, both).decisions
    assert all(d.tier is not Tier.AUTO for d in decisions.values())
    assert decisions["s2"].target_key == "t1"


def test_a_kanji_given_name_read_otherwise_is_an_admins_call_not_a_twin():
    # The dictionary reads 陽斗 "yoto"; this child is Haruto. Kanji against romaji whose
    # readings differ may still be one name: suggested, never taken for a twin.
    source = person("s1", "陽斗", "佐藤", grade="3", school="Minami")
    target = person("t1", "Haruto", "Sato", grade="3", school="Minami")
    comparisons = compare(source, target)
    assert comparisons.levels[0, GIVEN] == NAME_DIFFERENT
    assert not comparisons.sibling[0] and not comparisons.twins[0]
    decision = match_people([source], [target]).decisions["s1"]
    assert (decision.tier, decision.target_key) == (Tier.SUGGESTED, "t1")
    # Two names in kana that read differently are two names: twins.
    kana = person("s1", "はると", "さとう", grade="3", school="Minami")
    assert compare(kana, person("t1", "Hiroto", "Sato", grade="3", school="Minami")).twins[0]


# A small Japanese school: the app holds its pupils in romaji (some in katakana), the SIS
# in kanji and kana. Readings below are the dictionary's for these kanji.
FAMILIES = [
    ("佐藤", "さとう", "Satō"),
    ("鈴木", "すずき", "Suzuki"),
    ("高橋", "たかはし", "Takahashi"),
    ("田中", "たなか", "Tanaka"),
    ("伊藤", "いとう", "Itoh"),
    ("渡辺", "わたなべ", "Watanabe"),
    ("山本", "やまもと", "Yamamoto"),
    ("中村", "なかむら", "Nakamura"),
    ("小林", "こばやし", "Kobayashi"),
    ("加藤", "かとう", "Katou"),
]
GIVEN_NAMES = [
    ("さくら", "Sakura"),
    ("ゆうと", "Yūto"),
    ("はると", "Haruto"),
    ("ひろと", "Hiroto"),
    ("めい", "Mei"),
    ("そうた", "Sota"),
    ("ゆい", "Yui"),
    ("りん", "Rin"),
    ("こうた", "Kouta"),
    ("あおい", "Aoi"),
    ("きょうこ", "Kyoko"),
    ("しょうた", "Shōta"),
]


def katakana(text: str) -> str:
    return "".join(chr(ord(c) + 0x60) if "ぁ" <= c <= "ゖ" else c for c in text)


def school() -> tuple[list[PersonRecord], list[PersonRecord], dict[str, str]]:
    """(source, app, true links). Pupil i: family i % 10, given (7 i) % 12, born i * 11
    days after 2014-04-02, so names repeat across the school and birth dates tell them
    apart. Every fourth pupil is written all in kana in the SIS, the rest with the family
    name in kanji; odd pupils are in katakana in the app. Twins (same family, birth date,
    grade and school) are pupils 40 and 41; the app does not hold 41 yet, nor 42, a pupil
    of another family with 40's names in reverse."""
    source, app, truth = [], [], {}
    start = date(2014, 4, 2)
    for i in range(42):
        kanji, kana, romaji = FAMILIES[i % 10]
        given_kana, given_romaji = GIVEN_NAMES[(7 * i) % 12]
        born = start + timedelta(days=11 * i)
        if i == 41:  # the twin of pupil 40
            kanji, kana, romaji = FAMILIES[40 % 10]
            given_kana, given_romaji = GIVEN_NAMES[3]
            born = start + timedelta(days=11 * 40)
        family = kana if i % 4 == 0 else kanji
        source.append(person(f"s{i}", given_kana, family, born, grade="4", school="Minami"))
        if i == 41:
            continue
        app_given, app_family = given_romaji, romaji
        if i % 2:
            app_given, app_family = katakana(given_kana), katakana(kana)
        app.append(person(f"t{i}", app_given, app_family, born, grade="4", school="Minami"))
        truth[f"s{i}"] = f"t{i}"
    return source, app, truth


def test_a_japanese_school_in_kanji_and_kana_links_to_its_app_in_romaji_and_kana():
    source, app, truth = school()
    assert source[40].given_name != source[41].given_name  # twins: another given name
    decisions = match_people(source, app).decisions
    automatic = {k: d.target_key for k, d in decisions.items() if d.tier is Tier.AUTO}
    suggested = {k: d.target_key for k, d in decisions.items() if d.tier is Tier.SUGGESTED}
    # Precision: every automatic link and every suggestion is the right pupil.
    assert all(truth.get(k) == t for k, t in automatic.items())
    assert all(truth.get(k) == t for k, t in suggested.items())
    # Recall: every pupil the app holds is found; those in kana automatically, those in
    # kanji (read by the dictionary) as suggestions.
    assert set(automatic) | set(suggested) == set(truth)
    kana_pupils = {f"s{i}" for i in range(0, 41, 4)}
    assert set(automatic) == kana_pupils
    # The twin the app does not hold yet is a new pupil, not a second link to 40.
    assert decisions["s41"].tier is Tier.UNMATCHED


def test_a_source_in_romaji_against_the_same_school_is_unchanged():
    # The Latin-only path: no reading comparisons, no reading blocks.
    _, app, _ = school()
    romaji = [p for p in app if p.given_name.isascii()]
    copies = [
        person(f"s{p.key}", p.given_name, p.family_name, p.birth_date, grade="4") for p in romaji
    ]
    decisions = match_people(copies, romaji).decisions
    assert all((d.tier, d.target_key) == (Tier.AUTO, k[1:]) for k, d in decisions.items()), (
        decisions
    )
