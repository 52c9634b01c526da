"""Decision thresholds for fuzzy matching, and how the people defaults were chosen.

For people a score is a match probability (``rostersync.matching.model``). Defaults:
``auto=0.9, suggest=0.2, margin=0.05``; the similarity floors are off (``0``), since the
model weighs names and birth dates itself and the gates that matter are fixed rules
(``people.auto_gates``: no initial, no name that is another name outright, no sibling
pattern, no birth date beyond a typo, no given name missing). An automatic match also
needs its runner-up below ``suggest``. Thresholds are a tenant setting
(``TenantSettings.people_thresholds``); these are the defaults. Measured with
``bench/match_quality.py`` (FEBRL: names and birth date only):

=========================================  =========  ===========  ==========  ============
run                                        auto prec  auto recall  auto wrong  +sugg recall
=========================================  =========  ===========  ==========  ============
FEBRL 1 + 2, 1,500 dups vs their orgs      1.0000     0.764        0 of 1,146  0.970
FEBRL, odd-numbered orgs held out          1.0000     0.758 (743)  0           0.968
FEBRL 2 dups vs FEBRL 1 orgs               -          -            0           -
generated district 10k vs 10k              1.0000     0.992        0 of 9,423  0.997
generated district 100k vs 100k            1.0000     0.980        0 of 93.1k  0.996
another 100k district's SIS vs the app     -          -            0           -
=========================================  =========  ===========  ==========  ============

``auto_without_birth_date`` (0.75): a pair whose names both agree while a side has no
birth date is automatic from it, the lower of it and ``auto`` applying
(``people.auto_thresholds``); every such pair from 0.5 up without a rival at ``suggest``
was right on every set, the nearest wrong one scored 0.43, and 0.75 keeps a daily sync's
single pair weighed on the model's defaults (0.69) a suggestion.

``--sweep`` runs every set at ``auto=0.5`` and counts what each higher threshold keeps: on
the last set 0.85 lets two coincidences through (the same full name and birth date in two
unrelated districts, or a double family name's one half), 0.9 none; every labelled set
has no wrong automatic match down to 0.5. The "+sugg recall" column counts the suggestion
floor's pairs (``rostersync.matching.floor``) as suggestions. FEBRL's automatic recall is
bounded by its corruption model and by the rules a school needs (``docs/matching.md`` has
the table the benchmark prints): 6.5% of its duplicates have their given name replaced
beside an equal family name and birth date (in a school, twins), 3.2% no given name on one
side or both (in a school, either twin), 5.4% a name replaced otherwise, 2.2% a birth date
far off, 1.7% never reach scoring (blocking recall 0.983: most have no given name or share
only a family name with their original), and 2% lack a birth date, which with names alone
rarely reaches 0.9 against the 10,000 people a match is weighed against (hence
``auto_without_birth_date``). At ``auto=0.5``
FEBRL reaches 0.772.
"""

from __future__ import annotations

from typing import Self

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Thresholds(BaseModel):
    """Where scores turn into tiers (see ``rostersync.matching.assign``).

    ``auto``: the lowest score of an automatic match; ``suggest``: the lowest score of a
    suggestion; ``margin``: how far an automatic match must lead its runner-up.
    ``auto_without_birth_date`` (people only): the lowest score of an automatic match
    whose given and family names agree (both exact, a nickname or an equivalent, or one
    of them a typo) while a side has no birth date; the lower of it and ``auto`` applies,
    and every other rule of the automatic tier (the margin, no rival at ``suggest``, the
    gates, one source per target) is the same.
    ``name_floor``: an automatic match needs at least this similarity on the given name
    and on the family name separately (so a strong birth date and family name cannot
    carry a different given name: twins); ``birth_date_floor``: when both sides have a
    birth date, an automatic match needs at least this birth-date similarity.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    auto: float = Field(default=0.9, ge=0.0, le=1.0)
    suggest: float = Field(default=0.2, ge=0.0, le=1.0)
    margin: float = Field(default=0.05, ge=0.0, le=1.0)
    auto_without_birth_date: float = Field(default=0.75, ge=0.0, le=1.0)
    name_floor: float = Field(default=0.0, ge=0.0, le=1.0)
    birth_date_floor: float = Field(default=0.0, ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _suggest_below_auto(self) -> Self:
        if self.suggest > self.auto:
            raise ValueError("suggest must not exceed auto")
        return self


#: Defaults for people (chosen from measurement, see the module docstring).
PEOPLE_THRESHOLDS = Thresholds()

#: Defaults for classes (``name_floor`` applies to the title): a class agreeing on title,
#: subject, teachers and term (0.80 without a class code) is automatic; sections of one
#: teacher's course told apart only by their class codes need the wider margin.
CLASS_THRESHOLDS = Thresholds(auto=0.75, suggest=0.65, margin=0.1, name_floor=0.8)
