"""Japanese names across scripts: kanji, hiragana, katakana and romaji.

Kana and romaji spell a name's sound, so they meet as one name. Kanji are never read by
a guess: a name in kanji meets kana and romaji through the school's own kana reading of
it (``metadata.phoneticGivenName`` and the like), which is the name itself; without
one, it meets only the same kanji.
"""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pytest

from rostersync.matching.encoding import Vocabularies, encode_people
from rostersync.matching.normalize import NameScript, fold_name, name_reading, name_script
from rostersync.matching.people import match_people
from rostersync.matching.records import PersonRecord, name_readings, person_from_user
from rostersync.matching.scoring import (
    FAMILY,
    GIVEN,
    NAME_CLOSE,
    NAME_DIFFERENT,
    NAME_EQUIVALENT,
    NAME_EXACT,
    NAME_SIMILAR,
    Comparisons,
    compare_pairs,
    name_tables,
)
from rostersync.models import Role, Tier, User

BORN = date(2015, 4, 2)


def person(key: str, given: str, family: str, born: date | None = BORN, **fields) -> PersonRecord:
    return PersonRecord(key=key, given_name=given, family_name=family, birth_date=born, **fields)


def read(
    key: str, given: tuple[str, str], family: tuple[str, str], born: date | None = BORN, **fields
) -> PersonRecord:
    """A pupil written in kanji with the school's kana reading of each name."""
    return person(
        key,
        given[0],
        family[0],
        born,
        given_name_reading=given[1],
        family_name_reading=family[1],
        **fields,
    )


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
    ["さとう", "サトウ", "サトー", "ｻﾄｳ", "Satō", "Sato", "Satou", "Satoh", "SATOO"],
)
def test_one_reading_in_every_script_and_long_vowel_spelling(spelling):
    assert name_reading(spelling) == "sato"


@pytest.mark.parametrize("kanji", ["佐藤", "大翔", "王伟", "佐藤さくら", "佐々木"])
def test_kanji_are_never_read_by_a_guess(kanji):
    # 大翔 is Hiroto, Taiga or Yamato: only the school knows.
    assert name_reading(kanji) == ""


@pytest.mark.parametrize(
    ("raw", "folded"),
    [
        # Small kana belong to the syllable before them (anyascii wrote "kiyouko", "jiyon").
        ("きょうこ", "kyouko"),
        ("ジョン", "jon"),
        ("しょうた", "shouta"),
        ("まっちゃ", "matcha"),
        ("いっぺい", "ippei"),
        ("はっとり", "hattori"),
        # The long-vowel mark repeats its vowel; ou and oo are kept as written.
        ("サトー", "satoo"),
        ("ユーキ", "yuuki"),
        ("おおの", "oono"),
        # A small vowel takes the place of the vowel before it.
        ("ティナ", "tina"),
        ("ジェシカ", "jeshika"),
        ("ウィリアム", "wiriamu"),
        ("ファミ", "fami"),
        # ん before a vowel or y: Hepburn's n', which folding writes n; ん before b, m, p.
        ("しんいち", "shinichi"),
        ("けんや", "kenya"),
        ("ほんま", "honma"),
        ("ｷｮｳｺ", "kyouko"),
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


def test_a_blank_name_has_no_reading():
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
        (("ジョン", "スミス"), ("Jon", "Sumisu"), NAME_EXACT, NAME_EXACT),
        # Kanji without a reading meet only the same kanji.
        (("花子", "佐藤"), ("はなこ", "さとう"), NAME_DIFFERENT, NAME_DIFFERENT),
        (("花子", "佐藤"), ("Hanako", "Satō"), NAME_DIFFERENT, NAME_DIFFERENT),
        (("さくら", "佐藤"), ("Sakura", "Sato"), NAME_EXACT, NAME_DIFFERENT),
        (("花子", "佐藤"), ("花子", "佐藤"), NAME_EXACT, NAME_EXACT),
        (("花子", "斎藤"), ("花子", "斉藤"), NAME_EXACT, NAME_DIFFERENT),
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


@pytest.mark.parametrize(
    ("target", "given", "family"),
    [
        # The school's reading of its kanji is the name: exact against kana and romaji.
        (("Hiroto", "Satō"), NAME_EXACT, NAME_EXACT),
        (("ひろと", "さとう"), NAME_EXACT, NAME_EXACT),
        (("ヒロト", "Satoh"), NAME_EXACT, NAME_EXACT),
        (("大翔", "佐藤"), NAME_EXACT, NAME_EXACT),
        # The same kanji read otherwise by the app's kana: another name, as written.
        (("Taiga", "Sato"), NAME_DIFFERENT, NAME_EXACT),
        (("たいが", "Sato"), NAME_DIFFERENT, NAME_EXACT),
    ],
)
def test_a_kanji_name_compares_by_the_schools_reading(target, given, family):
    source = read("a", ("大翔", "ひろと"), ("佐藤", "さとう"))
    levels = compare(source, person("b", *target)).levels[0]
    assert (int(levels[GIVEN]), int(levels[FAMILY])) == (given, family)


def test_variant_kanji_of_one_reading_meet_through_the_schools_readings():
    # 斎藤 and 斉藤 are one family name in two spellings: the readings say so, the
    # characters alone never do.
    a = read("a", ("花子", "はなこ"), ("斎藤", "さいとう"))
    b = read("b", ("花子", "はなこ"), ("斉藤", "さいとう"))
    assert compare(a, b).levels[0, FAMILY] == NAME_EXACT
    assert name_levels(("花子", "斎藤"), ("花子", "斉藤"))[1] == NAME_DIFFERENT


def test_readings_are_taken_from_the_files_metadata_columns():
    assert name_readings(
        {"metadata.phoneticGivenName": " ひろと ", "metadata.phoneticFamilyName": "さとう"}
    ) == ("ひろと", "さとう")
    assert name_readings(
        {"metadata.jp.kanaGivenName": "ヒロト", "metadata.jp.kanaFamilyName": "サトウ"}
    ) == ("ヒロト", "サトウ")
    assert name_readings({"metadata.phoneticGivenName": "ひろと"}) == ("ひろと", None)
    # OneRoster REST: a metadata.jp object, kept as its JSON text.
    nested = '{"kanaGivenName": "ひろと", "kanaFamilyName": "さとう", "note": 3}'
    assert name_readings({"metadata.jp": nested}) == ("ひろと", "さとう")
    assert name_readings({"metadata.jp": "{not json"}) == (None, None)
    assert name_readings({"metadata.ext_region": "north"}) == (None, None)
    assert name_readings({}) == (None, None)
    user = User(
        source_system="oneroster",
        source_id="u1",
        role=Role.STUDENT,
        given_name="大翔",
        family_name="佐藤",
        extensions={
            "metadata.phoneticGivenName": "ひろと",
            "metadata.phoneticFamilyName": "さとう",
        },
    )
    record = person_from_user(user)
    assert (record.given_name_reading, record.family_name_reading) == ("ひろと", "さとう")


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
    # 李明 reads "sumomo mei" in Japanese; without a school's reading it is only its
    # characters (pinyin "li ming"), nothing like "Mei Sumomo".
    source = person("s1", "明", "李")
    assert name_levels(("明", "李"), ("Mei", "Sumomo")) == (NAME_DIFFERENT, NAME_DIFFERENT)
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


def test_a_kanji_name_with_the_schools_reading_links_automatically():
    other_day = date(2014, 11, 20)
    source = [
        read("s1", ("大翔", "ひろと"), ("佐藤", "さとう"), grade="3", school="Minami"),
        read("s2", ("結衣", "ゆい"), ("伊藤", "いとう"), other_day, grade="3", school="Minami"),
    ]
    target = [
        person("t1", "Hiroto", "Satō", grade="3", school="Minami"),
        person("t2", "ユイ", "イトウ", other_day, grade="3", school="Minami"),
    ]
    decisions = match_people(source, target).decisions
    assert {(k, d.tier, d.target_key) for k, d in decisions.items()} == {
        ("s1", Tier.AUTO, "t1"),
        ("s2", Tier.AUTO, "t2"),
    }


def test_a_reading_that_agrees_is_still_held_to_the_birth_date():
    # The names agree by the school's reading, the birth dates not at all: no link.
    source = read("s1", ("大翔", "ひろと"), ("佐藤", "さとう"), grade="3", school="Minami")
    target = person("t1", "Hiroto", "Sato", date(2013, 9, 30), grade="3", school="Minami")
    assert match_people([source], [target]).decisions["s1"].tier is not Tier.AUTO


def test_a_kanji_name_without_a_reading_is_never_guessed():
    # Everything else agrees (birth date, grade, school), but nobody said how 大翔 is
    # read (Hiroto, Taiga or Yamato): no automatic link.
    source = person("s1", "大翔", "佐藤", grade="3", school="Minami")
    target = person("t1", "Hiroto", "Sato", grade="3", school="Minami")
    assert match_people([source], [target]).decisions["s1"].tier is not Tier.AUTO
    # The family name's reading alone, with the given name in kanji: not automatic either.
    half = person("s1", "大翔", "佐藤", grade="3", school="Minami", family_name_reading="さとう")
    assert match_people([half], [target]).decisions["s1"].tier is not Tier.AUTO
    # With the school's reading of both: automatic.
    both = read("s1", ("大翔", "ひろと"), ("佐藤", "さとう"), grade="3", school="Minami")
    assert match_people([both], [target]).decisions["s1"].tier is Tier.AUTO


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


def test_japanese_twins_in_kanji_with_readings_stay_apart():
    # The school reads 陽斗 "Haruto" and 大翔 "Hiroto": the app's Hiroto is 大翔, and his
    # twin is a new pupil, never a second candidate for him.
    twins = [
        read("s1", ("陽斗", "はると"), ("佐藤", "さとう"), grade="3", school="Minami"),
        read("s2", ("大翔", "ひろと"), ("佐藤", "さとう"), grade="3", school="Minami"),
    ]
    app = [person("t1", "Hiroto", "Sato", grade="3", school="Minami")]
    decisions = match_people(twins, app).decisions
    assert (decisions["s2"].tier, decisions["s2"].target_key) == (Tier.AUTO, "t1")
    assert decisions["s1"].tier is Tier.UNMATCHED
    assert compare(twins[0], app[0]).twins[0]
    both = [*app, person("t2", "ハルト", "サトウ", grade="3", school="Minami")]
    decisions = match_people(twins, both).decisions
    assert {(k, d.tier, d.target_key) for k, d in decisions.items()} == {
        ("s1", Tier.AUTO, "t2"),
        ("s2", Tier.AUTO, "t1"),
    }


def test_japanese_twins_in_kanji_without_readings_are_never_linked():
    twins = [
        person("s1", "陽斗", "佐藤", grade="3", school="Minami"),
        person("s2", "大翔", "佐藤", grade="3", school="Minami"),
    ]
    app = [
        person("t1", "Hiroto", "Sato", grade="3", school="Minami"),
        person("t2", "Haruto", "Sato", grade="3", school="Minami"),
    ]
    decisions = match_people(twins, app).decisions
    assert all(d.tier is not Tier.AUTO for d in decisions.values())


def test_a_kanji_given_name_without_a_reading_is_an_admins_call_not_a_twin():
    # 陽斗 may be read Haruto: against "Haruto" with the family name agreeing it is
    # another name or the same, never taken for a twin.
    source = person("s1", "陽斗", "佐藤", grade="3", school="Minami", family_name_reading="さとう")
    target = person("t1", "Haruto", "Sato", grade="3", school="Minami")
    comparisons = compare(source, target)
    assert comparisons.levels[0, GIVEN] == NAME_DIFFERENT
    assert comparisons.levels[0, FAMILY] == NAME_EXACT
    assert not comparisons.sibling[0] and not comparisons.twins[0]
    assert match_people([source], [target]).decisions["s1"].tier is not Tier.AUTO
    # With the school's reading はると against Hiroto: two names, twins.
    with_reading = read("s1", ("陽斗", "はると"), ("佐藤", "さとう"), grade="3", school="Minami")
    target = person("t1", "Hiroto", "Sato", grade="3", school="Minami")
    assert compare(with_reading, target).twins[0]
    # Two names in kana that read differently are two names: twins.
    kana = person("s1", "はると", "さとう", grade="3", school="Minami")
    assert compare(kana, target).twins[0]


# A small Japanese school: the app holds its pupils in romaji (some in katakana), the SIS
# in kanji with the school's kana readings, or in kana.
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
    ("桜", "さくら", "Sakura"),
    ("優斗", "ゆうと", "Yūto"),
    ("陽斗", "はると", "Haruto"),
    ("大翔", "ひろと", "Hiroto"),
    ("芽依", "めい", "Mei"),
    ("颯太", "そうた", "Sota"),
    ("結衣", "ゆい", "Yui"),
    ("凛", "りん", "Rin"),
    ("康太", "こうた", "Kouta"),
    ("葵", "あおい", "Aoi"),
    ("京子", "きょうこ", "Kyoko"),
    ("翔太", "しょうた", "Shōta"),
]


def katakana(text: str) -> str:
    return "".join(chr(ord(c) + 0x60) if "ぁ" <= c <= "ゖ" else c for c in text)


def school() -> tuple[list[PersonRecord], list[PersonRecord], dict[str, str]]:
    """(source, app, true links). Pupil i: family i % 10, given (7 i) % 12, born i * 11
    days after 2014-04-02, so names repeat across the school and birth dates tell them
    apart. Every fourth pupil is written all in kana in the SIS, every other one in kanji
    with the school's readings, the rest with the family name in kanji (and its reading)
    and the given name in kana; odd pupils are in katakana in the app. Twins (same
    family, birth date, grade and school) are pupils 40 and 41; the app does not hold 41
    yet."""
    source, app, truth = [], [], {}
    start = date(2014, 4, 2)
    for i in range(42):
        family = FAMILIES[i % 10]
        given = GIVEN_NAMES[(7 * i) % 12]
        born = start + timedelta(days=11 * i)
        if i == 41:  # the twin of pupil 40
            family, given, born = FAMILIES[40 % 10], GIVEN_NAMES[3], start + timedelta(days=440)
        fields = {"grade": "4", "school": "Minami"}
        if i % 4 == 0:
            pupil = person(f"s{i}", given[1], family[1], born, **fields)
        elif i % 2:
            pupil = read(f"s{i}", given[:2], family[:2], born, **fields)
        else:
            pupil = person(
                f"s{i}", given[1], family[0], born, family_name_reading=family[1], **fields
            )
        source.append(pupil)
        if i == 41:
            continue
        app_given, app_family = given[2], family[2]
        if i % 2:
            app_given, app_family = katakana(given[1]), katakana(family[1])
        app.append(person(f"t{i}", app_given, app_family, born, **fields))
        truth[f"s{i}"] = f"t{i}"
    return source, app, truth


def test_a_japanese_school_in_kanji_and_kana_links_to_its_app_in_romaji_and_kana():
    source, app, truth = school()
    assert source[40].given_name != source[41].given_name  # twins: another given name
    decisions = match_people(source, app).decisions
    automatic = {k: d.target_key for k, d in decisions.items() if d.tier is Tier.AUTO}
    # Every pupil the app holds is linked automatically, each to the right record.
    assert automatic == truth
    # The twin the app does not hold yet is a new pupil, not a second link to 40.
    assert decisions["s41"].tier is Tier.UNMATCHED


def test_the_same_school_without_readings_links_only_its_kana_pupils():
    # A school that sends no readings: its kanji are compared only as written.
    source, app, truth = school()
    bare = [
        person(p.key, p.given_name, p.family_name, p.birth_date, grade="4", school="Minami")
        for p in source
    ]
    decisions = match_people(bare, app).decisions
    automatic = {k: d.target_key for k, d in decisions.items() if d.tier is Tier.AUTO}
    assert all(truth.get(k) == t for k, t in automatic.items())
    assert set(automatic) == {f"s{i}" for i in range(0, 41, 4)}


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
