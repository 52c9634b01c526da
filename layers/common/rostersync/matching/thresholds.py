"""Decision thresholds for fuzzy matching, and how the people defaults were chosen.

People defaults: ``auto=0.72, suggest=0.55, margin=0.05, name_floor=0.85,
birth_date_floor=0.75``. Measured with ``bench/match_quality.py`` (names and birth date
only on FEBRL, where a perfect pair scores 0.80 of 1.00 since email, grade and school are
absent):

=====================================  =========  ===========  ===========  ============
run                                    auto prec  auto recall  auto wrong   +sugg recall
=====================================  =========  ===========  ===========  ============
FEBRL 1 + 2, 1,500 dups vs their orgs  1.0000     0.677        0 of 1,016   0.881
FEBRL, odd-numbered orgs held out      1.0000     0.673 (743)  0 of 500     0.874
FEBRL 2 dups vs FEBRL 1 orgs (no       -          -            0 of 0       -
true match exists)
synthetic district 100k vs 100k        1.0000     0.888        0 of 84,397  0.989
=====================================  =========  ===========  ===========  ============

Sweep (same data): every combination of ``name_floor`` 0.80 or 0.85, ``auto`` 0.68 or
0.72 and ``margin`` 0.03 or 0.05 gave 0 automatic errors, with auto recall 0.888-0.905
(district) and 0.677-0.709 (FEBRL); the defaults are the most conservative of them.
Before rivals were measured at their potential (``assign``), the district had 1 wrong
automatic match in 85k (a rival whose birth date was missing). FEBRL's auto recall is
bounded by its corruption model: about a quarter of its duplicates lack a name or a birth
date or have the given name replaced outright, which is exactly what must not be matched
automatically (twins).
"""

from __future__ import annotations

from typing import Self

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Thresholds(BaseModel):
    """Where scores turn into tiers (see ``rostersync.matching.assign``).

    ``auto``: the lowest score of an automatic match; ``suggest``: the lowest score of a
    suggestion; ``margin``: how far an automatic match must lead its runner-up.
    ``name_floor``: an automatic match needs at least this similarity on the given name
    and on the family name separately (so a strong birth date and family name cannot
    carry a different given name: twins); ``birth_date_floor``: when both sides have a
    birth date, an automatic match needs at least this birth-date similarity.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    auto: float = Field(default=0.72, ge=0.0, le=1.0)
    suggest: float = Field(default=0.55, ge=0.0, le=1.0)
    margin: float = Field(default=0.05, ge=0.0, le=1.0)
    name_floor: float = Field(default=0.85, ge=0.0, le=1.0)
    birth_date_floor: float = Field(default=0.75, ge=0.0, le=1.0)

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
