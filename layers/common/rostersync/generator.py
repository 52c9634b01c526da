"""A deterministic generator of synthetic districts as OneRoster 1.1 bulk CSV bundles.

``generate_district`` writes a day-one bundle; ``mutate_next_day`` derives the bundle a
district would export the following day (renames, arrivals, leavers, timetable changes,
guardian changes) and reports exactly what it changed, so tests and benchmarks can check a
sync against a known truth.

Both are deterministic: the same arguments give byte-identical files. Ids come from a keyed
hash of (kind, index) rather than from the shared random stream, so an id never depends on
how many random draws happened before it. Rows are streamed to disk with ``csv.writer``;
only compact per-student arrays and id strings are held in memory.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import math
import random
import shutil
import unicodedata
from array import array
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import NamedTuple

from pydantic import BaseModel, ConfigDict

# --- OneRoster 1.1 file layout ---------------------------------------------------------

ORGS_COLUMNS = ("sourcedId", "status", "dateLastModified", "name", "type", "identifier",
                "parentSourcedId")  # fmt: skip
ACADEMIC_SESSIONS_COLUMNS = ("sourcedId", "status", "dateLastModified", "title", "type",
                             "startDate", "endDate", "parentSourcedId", "schoolYear")  # fmt: skip
COURSES_COLUMNS = ("sourcedId", "status", "dateLastModified", "schoolYearSourcedId", "title",
                   "courseCode", "grades", "orgSourcedId", "subjects", "subjectCodes")  # fmt: skip
CLASSES_COLUMNS = ("sourcedId", "status", "dateLastModified", "title", "grades",
                   "courseSourcedId", "classCode", "classType", "location", "schoolSourcedId",
                   "termSourcedIds", "subjects", "subjectCodes", "periods")  # fmt: skip
USERS_COLUMNS = ("sourcedId", "status", "dateLastModified", "enabledUser", "orgSourcedIds",
                 "role", "username", "userIds", "givenName", "familyName", "middleName",
                 "identifier", "email", "sms", "phone", "agentSourcedIds", "grades",
                 "password")  # fmt: skip
ENROLLMENTS_COLUMNS = ("sourcedId", "status", "dateLastModified", "classSourcedId",
                       "schoolSourcedId", "userSourcedId", "role", "primary", "beginDate",
                       "endDate")  # fmt: skip
DEMOGRAPHICS_COLUMNS = ("sourcedId", "status", "dateLastModified", "birthDate", "sex",
                        "americanIndianOrAlaskaNative", "asian", "blackOrAfricanAmerican",
                        "nativeHawaiianOrOtherPacificIslander", "white",
                        "demographicRaceTwoOrMoreRaces", "hispanicOrLatinoEthnicity",
                        "countryOfBirthCode", "stateOfBirthAbbreviation", "cityOfBirth",
                        "publicSchoolResidenceStatus")  # fmt: skip

_USER_EMAIL = USERS_COLUMNS.index("email")

#: Data files of a bundle, in dependency order, with their columns.
FILE_COLUMNS: dict[str, tuple[str, ...]] = {
    "orgs.csv": ORGS_COLUMNS,
    "academicSessions.csv": ACADEMIC_SESSIONS_COLUMNS,
    "courses.csv": COURSES_COLUMNS,
    "classes.csv": CLASSES_COLUMNS,
    "users.csv": USERS_COLUMNS,
    "enrollments.csv": ENROLLMENTS_COLUMNS,
    "demographics.csv": DEMOGRAPHICS_COLUMNS,
}

MANIFEST_ROWS: tuple[tuple[str, str], ...] = (
    ("manifest.version", "1.0"),
    ("oneroster.version", "1.1"),
    ("file.academicSessions", "bulk"),
    ("file.categories", "absent"),
    ("file.classes", "bulk"),
    ("file.classResources", "absent"),
    ("file.courses", "bulk"),
    ("file.courseResources", "absent"),
    ("file.demographics", "bulk"),
    ("file.enrollments", "bulk"),
    ("file.lineItems", "absent"),
    ("file.orgs", "bulk"),
    ("file.resources", "absent"),
    ("file.results", "absent"),
    ("file.users", "bulk"),
    ("source.systemName", "rostersync generator"),
)

GRADES: tuple[str, ...] = ("KG", "01", "02", "03", "04", "05", "06", "07", "08", "09",
                           "10", "11", "12")  # fmt: skip

#: The export time of day one; every row of a fresh district carries it.
DAY_ONE = datetime(2026, 9, 1, 6, 0, 0, tzinfo=UTC)
_SCHOOL_YEAR = 2026  # the autumn the school year starts in
_YEAR_START = date(2026, 8, 24)
_TERM_BREAK = date(2027, 1, 15)
_SPRING_START = date(2027, 1, 19)
_YEAR_END = date(2027, 6, 18)

_STUDENTS_PER_TEACHER = 15
_FIRST_SECONDARY_GRADE = 6
_SIBLING_SHARE = 0.12  # students who join the family of the student before them
_STAMP_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
_PASSWORD_ALPHABET = "abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789!#$%&*,.?"
_GUARDIAN_MAIL_DOMAINS = ("gmail.com", "outlook.com", "yahoo.com", "icloud.com",
                          "hotmail.com", "proton.me", "aol.com", "comcast.net")  # fmt: skip


def _words(text: str) -> tuple[str, ...]:
    """Whitespace-separated words, duplicates dropped, order kept."""
    return tuple(dict.fromkeys(text.split()))


# --- names --------------------------------------------------------------------------------
# Lists span many cultures on purpose: matching and normalization must cope with accents,
# apostrophes, particles ("van der", "de la"), hyphens and two-word given names.

_FEMALE_NAMES = _words(
    """
Emma Olivia Ava Sophia Isabella Mia Charlotte Amelia Harper Evelyn Abigail Emily Elizabeth
Grace Lily Chloe Zoe Ella Nora Hannah Sarah Rebecca Rachel Leah Ruth Esther Naomi Maya Aaliyah
Imani Jasmine Destiny Kayla Brianna Madison Savannah Audrey Claire Alice Margaret Eleanor
Sofía Camila Valentina Lucía Ximena Guadalupe María Ana Daniela Gabriela Fernanda Renata Paola
Itzel Xóchitl Nayeli Citlali Rosa Carmen Dolores Mercedes Inés Beatriz Leonor Mariana Inês
Zoë Chloé Léa Manon Camille Maëlle Hélène Anaïs Noémie Renée Amélie Élodie Océane Gaëlle
Lena Leonie Mila Greta Anja Jördis Lieselotte Freya Ingrid Astrid Sigrid Solveig Björg
Siobhán Aoife Niamh Saoirse Róisín Mairéad Caoimhe Eílis Priya Ananya Aditi Diya Ishita Kavya
Lakshmi Meera Saanvi Anjali Deepika Harpreet Gurleen Fatima Aisha Mariam Layla Noor Yasmin
Zeynep Elif Ayşe Gülşen Leila Shirin Parisa Mei Xiu Ying Lan Jia Xinyi Yuna Seo-yeon Ji-woo
Min-seo Hana Yui Sakura Aiko Hoa Linh Mai Thảo Ngọc Chiamaka Adaeze Ngozi Amara Folake
Yetunde Abena Akosua Ama Hiwot Meron Hodan Ayaan Nalani Leilani Małgorzata Zofia Agnieszka
Katarzyna Olena Oksana Natalia Anastasia Svetlana Tatiana Giulia Francesca Chiara Alessia
Miriam Tova Shira Noa Dagný Sigríður Ľudmila Jana Petra Zuzana Ioana Andreea Eszter Zsófia
"""
)

_MALE_NAMES = _words(
    """
Liam Noah Oliver James Elijah William Henry Lucas Benjamin Theodore Jack Levi Alexander Ethan
Mason Logan Caleb Nathan Isaiah Jayden Aiden Xavier Marcus Malik Jamal DeShawn Darius Tyrone
Mateo Santiago Sebastián Diego José Juan Carlos Luis Miguel Alejandro Andrés Emiliano Joaquín
Iñigo Rafael Gonzalo Jesús Ángel Raúl Héctor João Tiago Gonçalo Rui Jérôme Théo Noé Hugo
Gabriel Raphaël Loïc Benoît François Jean André René Björn Søren Lars Magnus Anders Øyvind
Ólafur Jörg Jürgen Lukas Felix Maximilian Finn Seán Ciarán Oisín Pádraig Cian Eoin Arjun
Aarav Vihaan Rohan Vikram Rahul Siddharth Karthik Arun Rajesh Gurpreet Omar Ahmed Yusuf Ali
Hassan Ibrahim Karim Mehmet Emre Burak Ömer Çağr\u0131 Reza Dariush Kian Wei Jun Hao Ming Jian
Yichen Zihan Min-jun Ji-ho Seo-jun Do-yun Haruto Sota Ren Kenji Minh Huy Quang Đức Tuấn
Chinedu Emeka Obinna Oluwaseun Tunde Kwame Kofi Yaw Abebe Dawit Tesfaye Abdi Mohamed Keanu Kai
Makoa Piotr Łukasz Tomasz Paweł Mykola Taras Andriy Dmitri Ivan Sergei Matteo Lorenzo
Giuseppe Francesco David Eli Ari Moshe Yosef Tomáš Jiří Matěj Ștefan Mihai Bálint Zoltán
"""
)

_DOUBLE_FEMALE_NAMES = ("Mary Jane", "Anna-Lena", "Marie-Claire", "Ana María",
                        "María José", "Ana Sofía", "Mary Kate", "Sarah Grace", "Marie-Ève",
                        "Lily Rose")  # fmt: skip
_DOUBLE_MALE_NAMES = ("Jean-Luc", "Juan Carlos", "Juan Pablo", "José Luis", "Jean-Baptiste",
                      "Miguel Ángel", "Karl-Heinz", "John Paul", "Luis Fernando",
                      "Pierre-Louis")  # fmt: skip

_PLAIN_FAMILY_NAMES = _words(
    """
Smith Johnson Williams Brown Jones Miller Davis Wilson Anderson Taylor Thomas Moore Jackson
Martin Lee Thompson White Harris Clark Lewis Robinson Walker Young Allen King Wright Scott Hill
Green Adams Baker Nelson Carter Mitchell Roberts Turner Phillips Campbell Parker Evans Edwards
Collins Stewart Morris Murphy Cook Rogers Morgan Cooper Peterson Reed Bailey Bell Kelly Howard
Ward Cox Richardson Wood Watson Brooks Bennett Gray Hughes Price Sanders Myers Long Ross Foster
Washington Jefferson Freeman Banks García Rodríguez Martínez Hernández López González Pérez
Sánchez Ramírez Torres Flores Rivera Gómez Díaz Cruz Morales Reyes Gutiérrez Ortiz Ramos Chávez
Castillo Jiménez Vásquez Ruiz Álvarez Mendoza Romero Herrera Medina Aguilar Vargas Castro
Núñez Ibáñez Peña Muñoz Domínguez Fernández Suárez Silva Santos Oliveira Souza Gonçalves
Pereira Costa Ferreira Araújo Dubois Lefèvre Moreau Laurent Girard Bérubé Gagnon Côté Bouchard
Leblanc Müller Schmidt Schneider Fischer Weber Meyer Wagner Becker Schäfer Köhler Hoffmann
Rossi Russo Ferrari Esposito Bianchi Romano Colombo Ricci Kowalski Nowak Wiśniewski Wójcik
Kowalczyk Zieliński Kovalenko Shevchenko Bondarenko Melnyk Ivanov Petrov Smirnov Popescu
Ionescu Novák Dvořák Svoboda Nagy Horváth Kovács Papadopoulos Georgiou Nikolaidis Y\u0131lmaz Kaya
Demir Çelik Şahin Öztürk Hansen Johansen Sørensen Nielsen Andersson Johansson Lindqvist
Björklund Virtanen Korhonen Jónsson Jansen Bakker McCarthy McAllister MacDonald Fitzgerald
Gallagher Walsh Byrne Nguyễn Trần Lê Phạm Hoàng Huỳnh Phan Vũ Đặng Bùi Wang Li Zhang Liu Chen
Yang Huang Zhao Wu Zhou Xu Sun Ma Zhu Hu Lin Kim Park Choi Jung Kang Cho Yoon Jang Lim Han Sato
Suzuki Takahashi Tanaka Watanabe Ito Yamamoto Nakamura Kobayashi Patel Shah Singh Kumar Sharma
Gupta Reddy Iyer Nair Rao Chatterjee Banerjee Mukherjee Das Krishnan Subramanian Venkataraman
Khan Ahmed Ali Hussain Rahman Chowdhury Haddad Khalil Nasser Saleh Mansour Abdullah Farah
Hashemi Karimi Rahimi Tehrani Okafor Okeke Nwosu Adeyemi Oyelaran Babatunde Mensah Owusu
Boateng Asante Haile Bekele Mohamud Warsame Abdi Bautista Villanueva Kahananui Kealoha Akana
Cohen Levi Friedman Goldberg Katz Shapiro Rosenberg Schwartz Greenberg
"""
)
# Apostrophes, particles, hyphens and spaces: the names that break naive matching.
_TRICKY_FAMILY_NAMES = (
    "O'Brien", "O'Connor", "O'Sullivan", "D'Angelo", "De Luca", "van der Berg", "van Dijk",
    "de Vries", "de la Cruz", "del Río", "dela Cruz", "St. John", "García-López", "Smith-Jones",
    "Martín-Díaz", "Lloyd-Williams", "Moreno-Vega", "Müller-Lüdenscheidt", "Ní Bhriain",
    "Mac an tSaoir",
)  # fmt: skip
_FAMILY_NAMES = (*_PLAIN_FAMILY_NAMES, *_TRICKY_FAMILY_NAMES)

_FEMALE_SET = frozenset(_FEMALE_NAMES) | frozenset(_DOUBLE_FEMALE_NAMES)
_MALE_SET = frozenset(_MALE_NAMES) | frozenset(_DOUBLE_MALE_NAMES)

_PLACES = ("Maple Grove", "Cedar Falls", "Riverside", "Lakeview", "Pine Ridge", "Willow Creek",
           "Fairview", "Brookside", "Oak Hollow", "Harbor Point", "Mesa Verde", "Sierra Vista",
           "Bayside", "Elmwood", "Ashford", "Cypress Bend", "Redwood", "Aspen Hills",
           "Prairie View", "Eagle Rock", "Stone Bridge", "Meadowbrook", "Hawthorne",
           "Westfield", "Northgate", "Clearwater", "Silver Lake", "Golden Valley", "Kingsbury",
           "Bellflower", "Del Mar", "Alameda", "Buena Vista", "Los Robles", "Cañada",
           "Juniper", "Foxborough", "Highland", "Sycamore", "Granite Falls")  # fmt: skip
_PLACE_SUFFIXES = ("", " Park", " Heights", " Hills", " Valley", " Creek", " Ridge", " Grove")
_NAMESAKES = ("Abraham Lincoln", "George Washington", "Rosa Parks", "César Chávez",
              "Martin Luther King Jr.", "Harriet Tubman", "Frederick Douglass", "Sally Ride",
              "Amelia Earhart", "Thurgood Marshall", "Sojourner Truth", "Dolores Huerta",
              "Roberto Clemente", "Sonia Sotomayor", "Jackie Robinson", "Maya Angelou",
              "Langston Hughes", "Mark Twain", "Helen Keller", "Susan B. Anthony",
              "Eleanor Roosevelt", "Booker T. Washington", "Grace Hopper", "Katherine Johnson",
              "Mae Jemison", "Benjamin Franklin", "John Muir", "Rachel Carson",
              "Duke Kahanamoku", "Sequoyah", "Daniel K. Inouye", "Fred Korematsu",
              "Ellen Ochoa", "Gabriela Mistral", "Marie Curie", "Jane Addams", "Walt Whitman",
              "Emily Dickinson", "Robert Frost", "Carl Sagan", "Clara Barton",
              "Patsy T. Mink", "Wilma Mankiller", "Ida B. Wells",
              "Mary McLeod Bethune")  # fmt: skip
_STATES = ("CA", "TX", "NY", "FL", "IL", "PA", "OH", "GA", "NC", "MI", "NJ", "VA", "WA", "AZ",
           "MA", "TN", "IN", "MO", "MD", "WI", "CO", "MN", "OR", "NV", "HI", "NM")  # fmt: skip
_BIRTH_COUNTRIES = ("MX", "IN", "CN", "VN", "PH", "SV", "GT", "UA", "NG", "ET", "SO", "KR",
                    "BR", "CO", "HT", "AF", "DO", "PL", "CA", "GB")  # fmt: skip


# --- subjects and courses -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Subject:
    key: str
    subject: str  # the OneRoster ``subjects`` value
    area: str  # SCED subject area, the first two digits of ``subjectCodes``
    code: str  # course code prefix
    elementary_title: str
    #: Titles for grades 6..12.
    secondary_titles: tuple[str, ...] = ()


_HOMEROOM = _Subject("homeroom", "Homeroom", "22", "HR", "Homeroom",
                     ("Advisory 6", "Advisory 7", "Advisory 8", "Homeroom 9", "Homeroom 10",
                      "Homeroom 11", "Homeroom 12"))  # fmt: skip
_CORE = (
    _Subject("ela", "English Language Arts", "01", "ELA", "English Language Arts",
             ("ELA 6", "ELA 7", "ELA 8", "English 9", "English 10",
              "English 11: American Literature", "English 12: British & World Literature")),
    _Subject("math", "Mathematics", "02", "MATH", "Mathematics",
             ("Math 6", "Math 7", "Pre-Algebra", "Algebra I", "Geometry", "Algebra II",
              "Precalculus")),
    _Subject("science", "Science", "03", "SCI", "Science",
             ("Earth Science", "Life Science", "Physical Science", "Biology", "Chemistry",
              "Physics", "Environmental Science")),
    _Subject("social", "Social Studies", "04", "SS", "Social Studies",
             ("World Geography", "World History & Cultures", "U.S. History",
              "Human Geography", "World History", "U.S. History: 1877\u2013Present",
              "Government, Civics & Economics")),
)  # fmt: skip
_ELEMENTARY_ARTS = _Subject("arts", "Fine and Performing Arts", "05", "ART", "Art & Music")
_ELECTIVES = (
    _Subject("spanish", "World Languages", "06", "SPAN", "Spanish",
             ("Exploratory Spanish", "Spanish 1A", "Spanish 1B", "Spanish I", "Spanish II",
              "Spanish III", "AP Spanish Language & Culture")),
    _Subject("art", "Fine and Performing Arts", "05", "ART", "Art",
             ("Art 6", "Art 7", "Art 8", "Studio Art I", "Studio Art II",
              "Drawing & Painting", "AP Studio Art")),
    _Subject("music", "Fine and Performing Arts", "05", "MUS", "Music",
             ("Band 6", "Band 7", "Band 8", "Concert Band", "Concert Band",
              "Symphonic Band", "Wind Ensemble")),
    _Subject("pe", "Physical Education", "08", "PE", "Physical Education",
             ("PE 6", "PE 7", "PE 8", "Physical Education 9", "Health & Wellness",
              "Lifetime Fitness", "Sports Medicine")),
    _Subject("cs", "Computer Science", "10", "CS", "Computer Science",
             ("Computer Science Discoveries", "Coding 7", "Robotics 8",
              "Intro to Programming", "AP Computer Science Principles",
              "AP Computer Science A", "Software Engineering")),
)  # fmt: skip


def _fixed_subjects(grade: int) -> tuple[_Subject, ...]:
    """The subjects every student of a grade takes (the homeroom first)."""
    if grade < _FIRST_SECONDARY_GRADE:
        return (_HOMEROOM, *_CORE, _ELEMENTARY_ARTS)
    return (_HOMEROOM, *_CORE)


def _electives(grade: int) -> tuple[_Subject, ...]:
    """The subjects of which a student of the grade takes exactly one."""
    return () if grade < _FIRST_SECONDARY_GRADE else _ELECTIVES


def _course_title(subject: _Subject, grade: int) -> str:
    if grade >= _FIRST_SECONDARY_GRADE and subject.secondary_titles:
        return subject.secondary_titles[grade - _FIRST_SECONDARY_GRADE]
    label = "Kindergarten" if grade == 0 else f"Grade {grade}"
    return f"{label} {subject.elementary_title}"


# --- results ------------------------------------------------------------------------------


class DistrictStats(BaseModel):
    """What ``generate_district`` wrote."""

    model_config = ConfigDict(frozen=True)

    #: Data rows (header excluded) per file name, manifest excluded.
    rows: dict[str, int]
    #: Size of every file of the bundle, manifest included.
    total_bytes: int
    schools: int
    students: int
    teachers: int
    administrators: int
    guardians: int


class MovedEnrollment(NamedTuple):
    """A student's enrollment replaced by one in another class of the same school."""

    old_id: str
    new_id: str


class GuardianChange(NamedTuple):
    """A student whose guardian ``old_guardian_id`` was replaced by ``new_guardian_id``."""

    student_id: str
    old_guardian_id: str
    new_guardian_id: str


class MutationSummary(BaseModel):
    """The exact changes ``mutate_next_day`` applied, by source id."""

    model_config = ConfigDict(frozen=True)

    #: The ``dateLastModified`` stamped on every changed or new row.
    day: str
    #: Students whose given or family name changed.
    renamed: list[str]
    #: New students (each with enrollments, demographics and a new guardian).
    added: list[str]
    #: The new guardians of the new students, in the same order as ``added``.
    added_guardians: list[str]
    #: Students removed with their enrollments and demographics.
    removed: list[str]
    moved_enrollments: list[MovedEnrollment]
    guardian_changed: list[GuardianChange]
    #: Existing guardians whose ``agentSourcedIds`` lost a removed student.
    unlinked_guardians: list[str]
    #: Data rows per file name in the new bundle.
    rows: dict[str, int]


# --- small helpers ------------------------------------------------------------------------

_VARIANT = {c: "89ab"[int(c, 16) & 3] for c in "0123456789abcdef"}


class _IdMaker:
    """Deterministic version-4-shaped UUIDs from a keyed hash of (kind, index)."""

    def __init__(self, namespace: str) -> None:
        key = hashlib.sha256(namespace.encode()).digest()
        self._base = hashlib.blake2b(digest_size=16, key=key)

    def __call__(self, kind: str, index: int) -> str:
        h = self._base.copy()
        h.update(f"{kind}:{index}".encode())
        x = h.hexdigest()
        return f"{x[:8]}-{x[8:12]}-4{x[13:16]}-{_VARIANT[x[16]]}{x[17:20]}-{x[20:]}"


def _stamp(moment: datetime) -> str:
    return moment.strftime(_STAMP_FORMAT)


def _join(values: Iterable[str]) -> str:
    return ",".join(values)


def _split(cell: str) -> list[str]:
    return [v.strip() for v in cell.split(",") if v.strip()]


_FOLD = str.maketrans({"ø": "o", "Ø": "O", "ł": "l", "Ł": "L", "đ": "d", "Đ": "D", "ß": "ss",
                       "æ": "ae", "Æ": "AE", "\u0131": "i"})  # fmt: skip

_ASCII_CACHE: dict[str, str] = {}


def _ascii_slug(name: str) -> str:
    """Lower-case ASCII letters only, for usernames and mail addresses."""
    slug = _ASCII_CACHE.get(name)
    if slug is None:
        # Letters that do not decompose into base + accent need an explicit mapping.
        folded = name.translate(_FOLD).lower()
        decomposed = unicodedata.normalize("NFKD", folded)
        slug = "".join(c for c in decomposed if "a" <= c <= "z")
        _ASCII_CACHE[name] = slug
    return slug


class _Sink:
    """One CSV file being written; counts its data rows.

    ``csv.writer`` spends most of its time scanning every character for quoting, which
    made it the generator's bottleneck. Most rows need no quoting at all, and that is
    cheap to prove on the joined line: exactly ``len(row) - 1`` commas and no quote or
    line break. Those rows are written as joined; the rest go through ``csv.writer``, so
    the bytes are exactly what ``csv.writer`` alone would produce.
    """

    def __init__(self, path: Path, columns: Sequence[str]) -> None:
        self._file = path.open("w", newline="", encoding="utf-8", buffering=1 << 20)
        # RFC 4180 line ends, as the OneRoster CSV binding asks for.
        self._writer = csv.writer(self._file, lineterminator="\r\n")
        self._writer.writerow(columns)
        self.rows = 0

    def write(self, row: Sequence[str]) -> None:
        line = ",".join(row)
        if (
            line.count(",") == len(row) - 1
            and '"' not in line
            and "\n" not in line
            and "\r" not in line
            and line  # csv.writer writes a lone empty field as ""
        ):
            self._file.write(line + "\r\n")
        else:
            self._writer.writerow(row)
        self.rows += 1

    def __enter__(self) -> _Sink:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._file.close()


class _Table:
    """One CSV file being read row by row, with its header."""

    def __init__(self, path: Path) -> None:
        # utf-8-sig: files saved by spreadsheet tools often start with a byte-order mark.
        self._file = path.open(newline="", encoding="utf-8-sig", buffering=1 << 20)
        self._reader = csv.reader(self._file)
        self.header: list[str] = next(self._reader, [])
        self.col = {name: i for i, name in enumerate(self.header)}

    def __iter__(self) -> Iterator[list[str]]:
        return self._reader

    def __enter__(self) -> _Table:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._file.close()


def _reorder(values: Sequence[str], columns: Sequence[str], header: Sequence[str]) -> list[str]:
    """Put a row built in ``columns`` order into the order of an existing file's header."""
    if tuple(columns) == tuple(header):
        return list(values)
    by_name = dict(zip(columns, values, strict=True))
    return [by_name.get(name, "") for name in header]


class _People:
    """Random names and contact details drawn from one random stream."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng

    def given(self, female: bool) -> str:
        rng = self._rng
        if rng.random() < 0.04:
            return rng.choice(_DOUBLE_FEMALE_NAMES if female else _DOUBLE_MALE_NAMES)
        return rng.choice(_FEMALE_NAMES if female else _MALE_NAMES)

    def middle(self, female: bool, share: float) -> str:
        rng = self._rng
        if rng.random() >= share:
            return ""
        name = rng.choice(_FEMALE_NAMES if female else _MALE_NAMES)
        # Staff and parents are often listed with an initial only.
        return f"{name[0]}." if rng.random() < 0.3 else name

    def family(self) -> str:
        rng = self._rng
        name = rng.choice(_FAMILY_NAMES)
        if rng.random() < 0.06:
            other = rng.choice(_FAMILY_NAMES)
            if other != name and "-" not in name + other and " " not in name + other:
                return f"{name}-{other}"
        return name

    def password(self) -> str:
        return "".join(self._rng.choices(_PASSWORD_ALPHABET, k=self._rng.randint(8, 14)))

    def phone(self) -> str:
        # 555 numbers: obviously fictional, still shaped like real ones.
        return f"+1555{self._rng.randrange(10_000_000):07d}"


def _student_row(
    sid: str,
    stamp: str,
    school_id: str,
    grade: str,
    identifier: str,
    state_id: str,
    given: str,
    family: str,
    middle: str,
    domain: str,
    agents: str,
    password: str,
) -> list[str]:
    username = f"{_ascii_slug(given)[:1]}{_ascii_slug(family)[:10]}{identifier}"
    return [sid, "active", stamp, "true", school_id, "student", username,
            f"{{SIS:{identifier}}},{{State:{state_id}}}", given, family, middle, identifier,
            f"{username}@{domain}", "", "", agents, grade, password]  # fmt: skip


def _guardian_row(
    rng: random.Random,
    people: _People,
    gid: str,
    stamp: str,
    contact_number: str,
    given: str,
    family: str,
    orgs: str,
    agents: str,
    shared_email: str | None = None,
) -> list[str]:
    roll = rng.random()
    role = "parent" if roll < 0.8 else "guardian" if roll < 0.95 else "relative"
    middle = people.middle(given in _FEMALE_SET, 0.15)
    if shared_email is not None:
        email = shared_email
    elif rng.random() < 0.75:
        suffix = str(rng.randrange(1, 100)) if rng.random() < 0.5 else ""
        mailbox = f"{_ascii_slug(given)}.{_ascii_slug(family)}{suffix}"
        email = f"{mailbox}@{rng.choice(_GUARDIAN_MAIL_DOMAINS)}"
    else:
        email = ""
    phone = people.phone() if rng.random() < 0.85 else ""
    sms = phone if phone and rng.random() < 0.45 else ""
    enabled = "true" if rng.random() < 0.9 else "false"
    password = people.password() if email and rng.random() < 0.1 else ""
    return [gid, "active", stamp, enabled, orgs, role, email, f"{{SIS:{contact_number}}}",
            given, family, middle, "", email, sms, phone, agents, "", password]  # fmt: skip


_RACE_WEIGHTS = (0.012, 0.06, 0.15, 0.006, 0.772)  # aian, asian, black, nhpi, white
_RACE_CUMULATIVE = tuple(sum(_RACE_WEIGHTS[: i + 1]) for i in range(len(_RACE_WEIGHTS)))


def _pick_race(rng: random.Random) -> int:
    roll = rng.random() * _RACE_CUMULATIVE[-1]
    for i, edge in enumerate(_RACE_CUMULATIVE):
        if roll < edge:
            return i
    return len(_RACE_CUMULATIVE) - 1


def _demographics_row(
    rng: random.Random,
    sid: str,
    stamp: str,
    grade: int,
    female: bool,
    school_year: int,
    home_state: str,
    home_city: str,
) -> list[str]:
    # A grade-g student is 5 + g on 1 September; a few were held back or skipped a year.
    roll = rng.random()
    shift = -1 if roll < 0.04 else 1 if roll < 0.05 else 0
    first_day = date(school_year - 6 - grade + shift, 9, 2)
    birth = first_day + timedelta(days=rng.randrange(365))
    races = [False] * 5
    races[_pick_race(rng)] = True
    if rng.random() < 0.04:
        races[rng.randrange(5)] = True
    flags = ["true" if r else "false" for r in races]
    two_or_more = "true" if sum(races) > 1 else "false"
    hispanic = "true" if rng.random() < 0.27 else "false"
    if rng.random() < 0.9:
        country = "US"
        state = home_state if home_state and rng.random() < 0.8 else rng.choice(_STATES)
        city = home_city if state == home_state and rng.random() < 0.5 else ""
    else:
        country, state, city = rng.choice(_BIRTH_COUNTRIES), "", ""
    residence = "01652" if rng.random() < 0.96 else "01653"
    return [sid, "active", stamp, birth.isoformat(), "female" if female else "male", *flags,
            two_or_more, hispanic, country, state, city, residence]  # fmt: skip


# --- the district plan ----------------------------------------------------------------------


@dataclass(slots=True)
class _School:
    index: int
    sourced_id: str
    name: str
    identifier: str
    grades: range
    weight: float
    students: int = 0
    teacher_start: int = 0
    teacher_count: int = 0
    class_start: int = 0
    class_count: int = 0


@dataclass(frozen=True, slots=True)
class _Class:
    sourced_id: str
    school: int
    course_id: str
    grade: int
    subject: _Subject
    title: str
    code: str
    location: str
    periods: str
    slot: int  # position of the subject in the grade's subject list
    section: int


@dataclass(slots=True)
class _Group:
    """The students of one grade at one school and the class sections they fill."""

    size: int = 0
    #: (first class index, number of sections) per subject every student takes.
    fixed: list[tuple[int, int]] = field(default_factory=list)
    #: (first class index, number of sections) per elective; a student takes one.
    electives: list[tuple[int, int]] = field(default_factory=list)

    def classes_of(self, pos: int) -> Iterator[int]:
        """Class indexes of the student at position ``pos`` within the group.

        Section ``(pos + j * (pos // k)) % k`` of subject ``j`` fills every section evenly
        (each block of ``k`` positions is a rotation) while classmates of one subject meet
        different classmates in the next, as a real timetable mixes them.
        """
        for j, (first, k) in enumerate(self.fixed):
            yield first + (pos + j * (pos // k)) % k
        if self.electives:
            first, k = self.electives[pos % len(self.electives)]
            yield first + (pos // len(self.electives)) % k


def _default_school_count(students: int) -> int:
    # About 500 students a school, and at least one school of each level.
    return max(3, math.ceil(students / 500))


def _school_spans(count: int) -> list[tuple[str, range]]:
    """Grade spans of ``count`` schools: about half elementary, a quarter each middle/high."""
    if count == 1:
        return [("Academy", range(0, 13))]
    if count == 2:
        return [("K-8 School", range(0, 9)), ("High School", range(9, 13))]
    middle = high = max(1, count // 4)
    elementary = count - middle - high
    return (
        [("Elementary School", range(0, 6))] * elementary
        + [("Middle School", range(6, 9))] * middle
        + [("High School", range(9, 13))] * high
    )


def _school_names(rng: random.Random, kind: str, count: int) -> list[str]:
    pool = list(_NAMESAKES) + [f"{p}{s}" for p in _PLACES for s in _PLACE_SUFFIXES]
    rng.shuffle(pool)
    names = []
    for i in range(count):
        repeat = i // len(pool)
        # Very large districts reuse a name with a campus number, as real ones do.
        campus = f" No. {repeat + 1}" if repeat else ""
        names.append(f"{pool[i % len(pool)]} {kind}{campus}")
    return names


@dataclass(slots=True)
class _Plan:
    stamp: str
    district_id: str
    district_name: str
    district_identifier: str
    domain: str
    home_state: str
    home_city: str
    year_id: str
    term_ids: tuple[str, str]
    schools: list[_School]
    classes: list[_Class]
    courses: list[list[str]]
    groups: dict[tuple[int, int], _Group]
    #: Index of each class's primary teacher.
    class_teacher: array[int]
    student_school: array[int]
    student_grade: array[int]
    student_pos: array[int]


def _plan_district(
    rng: random.Random, make_id: _IdMaker, students: int, school_count: int
) -> _Plan:
    place = rng.choice(_PLACES)
    district_identifier = f"{rng.randrange(1_000_000, 10_000_000)}"
    schools: list[_School] = []
    spans = _school_spans(school_count)
    names_by_kind: dict[str, list[str]] = {}
    for kind in dict.fromkeys(kind for kind, _ in spans):
        names_by_kind[kind] = _school_names(rng, kind, sum(1 for k, _ in spans if k == kind))
    used: dict[str, int] = {}
    for index, (kind, grades) in enumerate(spans):
        n = used.get(kind, 0)
        used[kind] = n + 1
        schools.append(
            _School(
                index=index,
                sourced_id=make_id("org", index + 1),
                name=names_by_kind[kind][n],
                identifier=f"{district_identifier}{index + 1:05d}",
                grades=grades,
                weight=rng.uniform(0.6, 1.4),  # schools differ in size
            )
        )

    # Place every student in a grade and a school serving it.
    by_grade: list[list[int]] = [[s.index for s in schools if g in s.grades] for g in range(13)]
    cum_weights: list[list[float]] = []
    for candidates in by_grade:
        total, acc = 0.0, []
        for s in candidates:
            total += schools[s].weight
            acc.append(total)
        cum_weights.append(acc)
    student_school, student_grade, student_pos = array("i"), array("b"), array("i")
    groups: dict[tuple[int, int], _Group] = {}
    for _ in range(students):
        grade = rng.randrange(13)
        at = rng.choices(by_grade[grade], cum_weights=cum_weights[grade])[0]
        group = groups.get((at, grade))
        if group is None:
            group = groups[(at, grade)] = _Group()
        student_school.append(at)
        student_grade.append(grade)
        student_pos.append(group.size)
        group.size += 1
        schools[at].students += 1

    year_id = make_id("session", 0)
    courses: list[list[str]] = []
    classes: list[_Class] = []
    stamp = _stamp(DAY_ONE)
    for school in schools:
        school.class_start = len(classes)
        for grade in school.grades:
            group = groups.get((school.index, grade))
            class_size = rng.randint(22, 28)
            subjects = [*_fixed_subjects(grade), *_electives(grade)]
            n_fixed = len(_fixed_subjects(grade))
            n_electives = len(subjects) - n_fixed
            for slot, subject in enumerate(subjects):
                course_id = make_id("course", len(courses))
                title = _course_title(subject, grade)
                course_code = f"{subject.code}{GRADES[grade]}"
                subject_code = f"{subject.area}{grade + 1:03d}"
                courses.append([course_id, "active", stamp, year_id, title, course_code,
                                GRADES[grade], school.sourced_id, subject.subject,
                                subject_code])  # fmt: skip
                if group is None:
                    continue  # a course in the catalog that nobody takes this year
                if slot < n_fixed:
                    takers = group.size
                else:
                    e = slot - n_fixed
                    takers = (group.size - e + n_electives - 1) // n_electives
                sections = math.ceil(takers / class_size)
                entry = (len(classes), sections)
                (group.fixed if slot < n_fixed else group.electives).append(entry)
                for section in range(sections):
                    classes.append(
                        _make_class(rng, make_id, len(classes), school, grade, subject,
                                    course_id, title, course_code, slot, section)
                    )  # fmt: skip
        school.class_count = len(classes) - school.class_start

    teacher = 0
    for school in schools:
        school.teacher_start = teacher
        school.teacher_count = max(1, round(school.students / _STUDENTS_PER_TEACHER))
        teacher += school.teacher_count
    class_teacher = _assign_teachers(schools, classes)

    slug = _ascii_slug(place)
    return _Plan(
        stamp=stamp,
        district_id=make_id("org", 0),
        district_name=f"{place} Unified School District",
        district_identifier=district_identifier,
        domain=f"{slug}.k12.example.org",
        home_state=rng.choice(_STATES),
        home_city=place,
        year_id=year_id,
        term_ids=(make_id("session", 1), make_id("session", 2)),
        schools=schools,
        classes=classes,
        courses=courses,
        groups=groups,
        class_teacher=class_teacher,
        student_school=student_school,
        student_grade=student_grade,
        student_pos=student_pos,
    )


def _assign_teachers(schools: Sequence[_School], classes: Sequence[_Class]) -> array[int]:
    """The primary teacher of every class.

    Each school's teachers take consecutive blocks of its classes in an order that makes
    the blocks look like real timetables: an elementary teacher gets one grade's homeroom
    and subjects, a secondary teacher one subject across neighbouring grades. Secondary
    homerooms are spread over all the school's teachers, as advisory periods are.
    """
    teacher = array("i", bytes(4 * len(classes)))
    for school in schools:
        own = range(school.class_start, school.class_start + school.class_count)
        homerooms = [i for i in own if classes[i].grade >= _FIRST_SECONDARY_GRADE
                     and classes[i].subject is _HOMEROOM]  # fmt: skip
        taught = sorted(
            (i for i in own if classes[i].grade < _FIRST_SECONDARY_GRADE
             or classes[i].subject is not _HOMEROOM),
            key=lambda i: _teaching_order(classes[i]),
        )  # fmt: skip
        for block in (taught, homerooms):
            for position, i in enumerate(block):
                teacher[i] = school.teacher_start + position * school.teacher_count // len(block)
    return teacher


def _teaching_order(c: _Class) -> tuple[int, int, int, int]:
    if c.grade < _FIRST_SECONDARY_GRADE:
        return (0, c.grade, c.slot, c.section)
    return (1, c.slot, c.grade, c.section)


def _make_class(
    rng: random.Random,
    make_id: _IdMaker,
    index: int,
    school: _School,
    grade: int,
    subject: _Subject,
    course_id: str,
    course_title: str,
    course_code: str,
    slot: int,
    section: int,
) -> _Class:
    secondary = grade >= _FIRST_SECONDARY_GRADE
    if subject is _HOMEROOM:
        period = "HR"
    elif secondary:
        period = str(1 + (slot + section) % 7)
    else:
        period = str(slot + 1)
    # Studio and lab electives run as double periods in high school.
    if grade >= 9 and subject.key in ("art", "cs") and period != "7":
        period = f"{period},{int(period) + 1}"
    if subject.key == "pe":
        location = "Gym" if section % 2 == 0 else "Field House"
    elif subject.key == "music":
        location = "Band Room"
    else:
        location = f"Room {rng.randint(1, 3)}{rng.randint(1, 40):02d}"
    if subject is _HOMEROOM:
        title = f"{course_title} - {location}"
    elif secondary:
        title = f"{course_title} - Period {period.split(',')[0]}"
    else:
        title = f"{course_title} ({chr(ord('A') + section % 26)})"
    return _Class(
        sourced_id=make_id("class", index),
        school=school.index,
        course_id=course_id,
        grade=grade,
        subject=subject,
        title=title,
        code=f"{course_code}-{section + 1:02d}",
        location=location,
        periods=period,
        slot=slot,
        section=section,
    )


# --- generation ---------------------------------------------------------------------------


def generate_district(
    out_dir: Path, *, students: int = 500, seed: int = 1, schools: int | None = None
) -> DistrictStats:
    """Write a synthetic district as a OneRoster 1.1 bulk CSV bundle into ``out_dir``.

    The bundle holds one district with ``schools`` schools (by default about one per 500
    students, at least 3: elementary, middle and high), a school year with two terms,
    per-school courses, a homeroom plus five subject classes for every student, about one
    teacher per 15 students, a principal per school and a few district administrators,
    about 1.5 guardians per student (siblings share theirs) linked both ways, and
    demographics for every student. Some rows carry passwords, as real exports do.

    The same ``students``, ``seed`` and ``schools`` always give byte-identical files.
    """
    if students < 1:
        raise ValueError("students must be at least 1")
    school_count = _default_school_count(students) if schools is None else schools
    if school_count < 1:
        raise ValueError("schools must be at least 1")
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    make_id = _IdMaker(f"district:{seed}")
    people = _People(rng)
    plan = _plan_district(rng, make_id, students, school_count)
    rows: dict[str, int] = {}

    _write_manifest(out_dir / "manifest.csv")
    rows["orgs.csv"] = _write_orgs(out_dir / "orgs.csv", plan)
    rows["academicSessions.csv"] = _write_sessions(out_dir / "academicSessions.csv", plan)
    with _Sink(out_dir / "courses.csv", COURSES_COLUMNS) as sink:
        for course in plan.courses:
            sink.write(course)
        rows["courses.csv"] = sink.rows
    rows["classes.csv"] = _write_classes(out_dir / "classes.csv", plan)

    student_ids = [make_id("student", i) for i in range(students)]
    teacher_ids = [make_id("teacher", t) for t in range(sum(s.teacher_count for s in plan.schools))]
    with _Sink(out_dir / "users.csv", USERS_COLUMNS) as sink:
        administrators = _write_staff(sink, rng, people, make_id, plan, teacher_ids)
        female, families = _write_students(sink, rng, people, make_id, plan, student_ids)
        guardians = _write_guardians(sink, rng, people, make_id, plan, families, student_ids)
        rows["users.csv"] = sink.rows
    rows["enrollments.csv"] = _write_enrollments(
        out_dir / "enrollments.csv", rng, make_id, plan, student_ids, teacher_ids
    )
    with _Sink(out_dir / "demographics.csv", DEMOGRAPHICS_COLUMNS) as sink:
        for i, sid in enumerate(student_ids):
            sink.write(
                _demographics_row(rng, sid, plan.stamp, plan.student_grade[i], bool(female[i]),
                                  _SCHOOL_YEAR, plan.home_state, plan.home_city)
            )  # fmt: skip
        rows["demographics.csv"] = sink.rows

    total = sum((out_dir / name).stat().st_size for name in ("manifest.csv", *FILE_COLUMNS))
    return DistrictStats(
        rows=rows,
        total_bytes=total,
        schools=len(plan.schools),
        students=students,
        teachers=len(teacher_ids),
        administrators=administrators,
        guardians=guardians,
    )


def _write_manifest(path: Path) -> None:
    with _Sink(path, ("propertyName", "value")) as sink:
        for row in MANIFEST_ROWS:
            sink.write(row)


def _write_orgs(path: Path, plan: _Plan) -> int:
    with _Sink(path, ORGS_COLUMNS) as sink:
        sink.write([plan.district_id, "active", plan.stamp, plan.district_name, "district",
                    plan.district_identifier, ""])  # fmt: skip
        for school in plan.schools:
            sink.write([school.sourced_id, "active", plan.stamp, school.name, "school",
                        school.identifier, plan.district_id])  # fmt: skip
        return sink.rows


def _write_sessions(path: Path, plan: _Plan) -> int:
    school_year = str(_SCHOOL_YEAR + 1)  # OneRoster names a school year by its ending year
    fall, spring = plan.term_ids
    with _Sink(path, ACADEMIC_SESSIONS_COLUMNS) as sink:
        sink.write([plan.year_id, "active", plan.stamp, f"{_SCHOOL_YEAR}-{_SCHOOL_YEAR + 1}",
                    "schoolYear", _YEAR_START.isoformat(), _YEAR_END.isoformat(), "",
                    school_year])  # fmt: skip
        sink.write([fall, "active", plan.stamp, f"Fall {_SCHOOL_YEAR}", "term",
                    _YEAR_START.isoformat(), _TERM_BREAK.isoformat(), plan.year_id,
                    school_year])  # fmt: skip
        sink.write([spring, "active", plan.stamp, f"Spring {_SCHOOL_YEAR + 1}", "term",
                    _SPRING_START.isoformat(), _YEAR_END.isoformat(), plan.year_id,
                    school_year])  # fmt: skip
        return sink.rows


def _write_classes(path: Path, plan: _Plan) -> int:
    terms = _join(plan.term_ids)
    with _Sink(path, CLASSES_COLUMNS) as sink:
        for c in plan.classes:
            sink.write([c.sourced_id, "active", plan.stamp, c.title, GRADES[c.grade],
                        c.course_id, c.code,
                        "homeroom" if c.subject is _HOMEROOM else "scheduled", c.location,
                        plan.schools[c.school].sourced_id, terms, c.subject.subject,
                        f"{c.subject.area}{c.grade + 1:03d}", c.periods])  # fmt: skip
        return sink.rows


def _staff_username(people_seen: dict[str, int], given: str, family: str) -> str:
    base = f"{_ascii_slug(given)}.{_ascii_slug(family)}"
    n = people_seen.get(base, 0) + 1
    people_seen[base] = n
    return base if n == 1 else f"{base}{n}"


def _write_staff(
    sink: _Sink,
    rng: random.Random,
    people: _People,
    make_id: _IdMaker,
    plan: _Plan,
    teacher_ids: Sequence[str],
) -> int:
    """District administrators, then per school its principal and teachers."""
    seen: dict[str, int] = {}
    staff: list[tuple[str, str, str, str]] = []  # id, role, org, identifier
    district_admins = 2 + len(plan.schools) // 25
    for a in range(district_admins):
        staff.append((make_id("admin", a), "administrator", plan.district_id, f"A{a + 1:05d}"))
    admins = district_admins
    for school in plan.schools:
        staff.append(
            (make_id("admin", admins), "administrator", school.sourced_id, f"A{admins + 1:05d}")
        )
        admins += 1
        for t in range(school.teacher_start, school.teacher_start + school.teacher_count):
            staff.append((teacher_ids[t], "teacher", school.sourced_id, f"T{t + 1:05d}"))
    for sid, role, org, identifier in staff:
        female = rng.random() < (0.75 if role == "teacher" else 0.55)
        given = people.given(female)
        family = people.family()
        username = _staff_username(seen, given, family)
        phone = people.phone() if rng.random() < 0.3 else ""
        password = people.password() if rng.random() < 0.3 else ""
        sink.write([sid, "active", plan.stamp, "true", org, role, username,
                    f"{{SIS:{identifier}}}", given, family, people.middle(female, 0.2),
                    identifier, f"{username}@{plan.domain}", "", phone, "", "",
                    password])  # fmt: skip
    return admins


@dataclass(slots=True)
class _Families:
    """Families as ranges: family f has students ``child_start[f]..child_start[f+1]`` and
    guardians ``guardian_start[f]..guardian_start[f+1]`` (both end with a sentinel)."""

    child_start: array[int] = field(default_factory=lambda: array("i"))
    guardian_start: array[int] = field(default_factory=lambda: array("i"))
    surname: list[str] = field(default_factory=list)


def _write_students(
    sink: _Sink,
    rng: random.Random,
    people: _People,
    make_id: _IdMaker,
    plan: _Plan,
    student_ids: Sequence[str],
) -> tuple[array[int], _Families]:
    """Write the students; return their sex (1 female, 0 male; demographics need it) and
    the families, whose guardians are written next."""
    n = len(student_ids)
    identifiers = rng.sample(range(1_000_000, 10_000_000), n)
    families = _Families()
    female_flags = array("b")
    domain = f"students.{plan.domain}"
    agents = ""
    surname = ""
    guardians = 0
    for i, sid in enumerate(student_ids):
        if i == 0 or rng.random() >= _SIBLING_SHARE:
            families.child_start.append(i)
            families.guardian_start.append(guardians)
            count = 1 if rng.random() < 0.3 else 2
            agents = _join(make_id("guardian", g) for g in range(guardians, guardians + count))
            guardians += count
            surname = people.family()
            families.surname.append(surname)
        female = rng.random() < 0.49
        female_flags.append(1 if female else 0)
        # Some children carry a name other than the family's (blended families).
        family = surname if rng.random() >= 0.08 else people.family()
        given = people.given(female)
        middle = people.middle(female, 0.4)
        identifier = str(identifiers[i])
        state_id = f"{plan.home_state}{rng.randrange(10**9):09d}"
        password = people.password() if rng.random() < 0.3 else ""
        sink.write(
            _student_row(sid, plan.stamp, plan.schools[plan.student_school[i]].sourced_id,
                         GRADES[plan.student_grade[i]], identifier, state_id, given, family,
                         middle, domain, agents, password)
        )  # fmt: skip
    families.child_start.append(n)
    families.guardian_start.append(guardians)
    return female_flags, families


def _write_guardians(
    sink: _Sink,
    rng: random.Random,
    people: _People,
    make_id: _IdMaker,
    plan: _Plan,
    families: _Families,
    student_ids: Sequence[str],
) -> int:
    """Write every family's guardians, linked to its students; return how many."""
    for f, surname in enumerate(families.surname):
        first_child, end_child = families.child_start[f], families.child_start[f + 1]
        first, end = families.guardian_start[f], families.guardian_start[f + 1]
        children = student_ids[first_child:end_child]
        agents = _join(children)
        orgs = _join(
            dict.fromkeys(
                plan.schools[plan.student_school[c]].sourced_id
                for c in range(first_child, end_child)
            )
        )
        parts = surname.split("-", 1) if "-" in surname else [surname, surname]
        shared_email: str | None = None
        for k, g in enumerate(range(first, end)):
            female = rng.random() < (0.7 if k == 0 else 0.2)
            given = people.given(female)
            if k == 0:
                family = parts[0] if rng.random() < 0.9 else people.family()
            else:
                family = parts[1] if rng.random() < 0.7 else people.family()
            row = _guardian_row(rng, people, make_id("guardian", g), plan.stamp,
                                f"C{g + 1:07d}", given, family, orgs, agents,
                                shared_email)  # fmt: skip
            # A few couples share one mailbox: a classic trap for matching by email.
            email = row[_USER_EMAIL]
            shared_email = email if email and rng.random() < 0.04 else None
            sink.write(row)
    return families.guardian_start[-1]


def _write_enrollments(
    path: Path,
    rng: random.Random,
    make_id: _IdMaker,
    plan: _Plan,
    student_ids: Sequence[str],
    teacher_ids: Sequence[str],
) -> int:
    begin, end = _YEAR_START.isoformat(), _YEAR_END.isoformat()
    stamp = plan.stamp
    school_ids = [s.sourced_id for s in plan.schools]
    n = 0
    with _Sink(path, ENROLLMENTS_COLUMNS) as sink:
        for index, c in enumerate(plan.classes):
            school = plan.schools[c.school]
            t = plan.class_teacher[index]
            sink.write([make_id("enrollment", n), "active", stamp, c.sourced_id,
                        school.sourced_id, teacher_ids[t], "teacher", "true", begin,
                        end])  # fmt: skip
            n += 1
            if school.teacher_count > 1 and rng.random() < 0.04:
                other = (
                    school.teacher_start
                    + (t - school.teacher_start + 1 + rng.randrange(school.teacher_count - 1))
                    % school.teacher_count
                )
                sink.write([make_id("enrollment", n), "active", stamp, c.sourced_id,
                            school.sourced_id, teacher_ids[other], "teacher", "false", begin,
                            end])  # fmt: skip
                n += 1
        classes = plan.classes
        for i, sid in enumerate(student_ids):
            s = plan.student_school[i]
            group = plan.groups[(s, plan.student_grade[i])]
            for class_index in group.classes_of(plan.student_pos[i]):
                sink.write([make_id("enrollment", n), "active", stamp,
                            classes[class_index].sourced_id, school_ids[s], sid, "student",
                            "false", begin, end])  # fmt: skip
                n += 1
        return sink.rows


# --- the next day -------------------------------------------------------------------------

_GUARDIAN_ROLE_WORDS = frozenset({"guardian", "parent", "relative"})
_UNCHANGED_FILES = ("manifest.csv", "orgs.csv", "academicSessions.csv", "courses.csv",
                    "classes.csv")  # fmt: skip


@dataclass(slots=True)
class _GuardianEdit:
    """Students to unlink from, and to link to, one guardian."""

    drop: set[str] = field(default_factory=set)
    add: list[str] = field(default_factory=list)

    def apply(self, agents: list[str]) -> list[str]:
        kept = [a for a in agents if a not in self.drop]
        return kept + [a for a in self.add if a not in kept]


@dataclass(slots=True)
class _ClassIndex:
    """Where each class belongs, to pick a plausible replacement class."""

    school: dict[str, str] = field(default_factory=dict)
    course: dict[str, str] = field(default_factory=dict)
    by_course: dict[str, list[str]] = field(default_factory=dict)
    by_school: dict[str, list[str]] = field(default_factory=dict)


@dataclass(slots=True)
class _UserScan:
    students: list[str] = field(default_factory=list)
    guardians: list[str] = field(default_factory=list)
    identifiers: set[str] = field(default_factory=set)
    latest: str = ""


def _count_rows(path: Path) -> int:
    with _Table(path) as table:
        return sum(1 for _ in table)


def _index_classes(path: Path) -> tuple[_ClassIndex, int]:
    index = _ClassIndex()
    n = 0
    with _Table(path) as table:
        sid_i, school_i = table.col["sourcedId"], table.col["schoolSourcedId"]
        course_i = table.col["courseSourcedId"]
        for row in table:
            sid, school, course = row[sid_i], row[school_i], row[course_i]
            index.school[sid] = school
            index.course[sid] = course
            index.by_course.setdefault(course, []).append(sid)
            index.by_school.setdefault(school, []).append(sid)
            n += 1
    return index, n


def _scan_users(path: Path) -> _UserScan:
    scan = _UserScan()
    with _Table(path) as table:
        sid_i, role_i = table.col["sourcedId"], table.col["role"]
        ident_i, stamp_i = table.col["identifier"], table.col["dateLastModified"]
        for row in table:
            role = row[role_i]
            if row[stamp_i] > scan.latest:
                scan.latest = row[stamp_i]
            if role == "student":
                scan.students.append(row[sid_i])
                scan.identifiers.add(row[ident_i])
            elif role in _GUARDIAN_ROLE_WORDS:
                scan.guardians.append(row[sid_i])
    return scan


def _rows_of(path: Path, key: str, wanted: set[str]) -> dict[str, list[list[str]]]:
    """The rows whose ``key`` column is one of ``wanted``, grouped by that value."""
    found: dict[str, list[list[str]]] = {}
    with _Table(path) as table:
        key_i = table.col[key]
        for row in table:
            if row[key_i] in wanted:
                found.setdefault(row[key_i], []).append(row)
    return found


def _next_morning(latest: str) -> datetime:
    last = datetime.fromisoformat(latest) if latest else DAY_ONE
    following = last.date() + timedelta(days=1)
    return datetime(following.year, following.month, following.day, 6, tzinfo=UTC)


def _renamed(rng: random.Random, people: _People, given: str, family: str) -> tuple[str, str]:
    """A new given or family name, never equal to the old one."""
    while True:
        if rng.random() < 0.5:
            new_family = people.family()
            # Marriage or adoption often adds a name rather than replacing it.
            if rng.random() < 0.3 and "-" not in family + new_family:
                new_family = f"{family}-{new_family}"
            if new_family != family:
                return given, new_family
        else:
            female = given in _FEMALE_SET or (given not in _MALE_SET and rng.random() < 0.5)
            new_given = people.given(female)
            if new_given != given:
                return new_given, family


def mutate_next_day(
    src_dir: Path, out_dir: Path, *, seed: int = 2, rate: float = 0.01
) -> MutationSummary:
    """Write into ``out_dir`` the bulk bundle the district in ``src_dir`` exports a day later.

    Of each kind of change, ``max(1, round(rate * students))`` happen, on distinct students
    (fewer moves or guardian changes only if a picked student has nothing to switch to):
    renames (given or family name), new students (enrolled in the classes of a current
    classmate, with demographics and a new guardian linked both ways), leavers (removed
    with their enrollments and demographics; their guardians stay, unlinked from them),
    moved enrollments (one enrollment replaced by a new one, under a new id, in another
    class of the same school, preferably another section of the same course) and guardian
    changes (one of a student's guardians replaced by another existing guardian, both
    guardians' ``agentSourcedIds`` updated). Changed and new rows get the next morning's
    ``dateLastModified``; every other row is copied unchanged.

    The result depends only on the source files, ``seed`` and ``rate``; chained calls
    (day 2 from day 1, day 3 from day 2) produce fresh ids because the day is part of
    the id namespace.
    """
    if not 0 < rate <= 0.2:
        raise ValueError("rate must be above 0 and at most 0.2")
    if out_dir.resolve() == src_dir.resolve():
        raise ValueError("out_dir must differ from src_dir: the source is read while writing")
    out_dir.mkdir(parents=True, exist_ok=True)
    rows: dict[str, int] = {}

    classes, rows["classes.csv"] = _index_classes(src_dir / "classes.csv")
    scan = _scan_users(src_dir / "users.csv")
    morning = _next_morning(scan.latest)
    day, day_date = _stamp(morning), morning.date().isoformat()
    school_year = morning.year if morning.month >= 7 else morning.year - 1
    rng = random.Random(f"{seed}:{day}")
    make_id = _IdMaker(f"next-day:{seed}:{day}")
    people = _People(rng)

    count = max(1, round(rate * len(scan.students)))
    if 4 * count > len(scan.students):
        raise ValueError(f"{len(scan.students)} students are too few for rate {rate}")
    picked = rng.sample(scan.students, 4 * count)
    removed = picked[:count]
    to_rename = picked[count : 2 * count]
    to_regard = picked[2 * count : 3 * count]
    movers = picked[3 * count :]
    removed_set = set(removed)
    templates: list[str] = []
    while len(templates) < count:
        candidate = rng.choice(scan.students)
        if candidate not in removed_set:
            templates.append(candidate)

    user_rows = _rows_of(src_dir / "users.csv", "sourcedId", set(picked) | set(templates))
    users_header = _header(src_dir / "users.csv")
    ucol = {name: i for i, name in enumerate(users_header)}
    agents_i = ucol["agentSourcedIds"]

    renames: dict[str, tuple[str, str]] = {}
    for sid in to_rename:
        row = user_rows[sid][0]
        renames[sid] = _renamed(rng, people, row[ucol["givenName"]], row[ucol["familyName"]])

    edits: dict[str, _GuardianEdit] = {}
    unlinked: list[str] = []
    for sid in removed:
        for guardian in _split(user_rows[sid][0][agents_i]):
            edits.setdefault(guardian, _GuardianEdit()).drop.add(sid)
            unlinked.append(guardian)
    student_agents: dict[str, str] = {}
    changes: list[GuardianChange] = []
    for sid in to_regard:
        agents = _split(user_rows[sid][0][agents_i])
        if not agents or not scan.guardians:
            continue
        old = rng.choice(agents)
        new = next(
            (g for g in (rng.choice(scan.guardians) for _ in range(100)) if g not in agents),
            None,
        )
        if new is None:
            continue
        student_agents[sid] = _join(new if a == old else a for a in agents)
        edits.setdefault(old, _GuardianEdit()).drop.add(sid)
        edits.setdefault(new, _GuardianEdit()).add.append(sid)
        changes.append(GuardianChange(sid, old, new))

    enrollments_header = _header(src_dir / "enrollments.csv")
    ecol = {name: i for i, name in enumerate(enrollments_header)}
    e_id, e_stamp, e_class = ecol["sourcedId"], ecol["dateLastModified"], ecol["classSourcedId"]
    e_school, e_user, e_begin = ecol["schoolSourcedId"], ecol["userSourcedId"], ecol["beginDate"]
    enrolled = _rows_of(src_dir / "enrollments.csv", "userSourcedId", set(movers) | set(templates))
    new_enrollments: list[list[str]] = []
    moved: list[MovedEnrollment] = []

    def new_enrollment(template: list[str], user: str, class_id: str) -> list[str]:
        row = list(template)
        row[e_id] = make_id("enrollment", len(new_enrollments))
        row[e_stamp], row[e_begin] = day, day_date
        row[e_user], row[e_class] = user, class_id
        row[e_school] = classes.school.get(class_id, row[e_school])
        new_enrollments.append(row)
        return row

    for sid in movers:
        own = enrolled.get(sid, [])
        if not own:
            continue
        taken = {r[e_class] for r in own}
        old_row = rng.choice(own)
        old_class = old_row[e_class]
        options = [c for c in classes.by_course.get(classes.course.get(old_class, ""), [])
                   if c not in taken]  # fmt: skip
        if not options:
            school = classes.school.get(old_class, "")
            options = [c for c in classes.by_school.get(school, []) if c not in taken]
        if not options:
            continue
        new_row = new_enrollment(old_row, sid, rng.choice(options))
        moved.append(MovedEnrollment(old_row[e_id], new_row[e_id]))
    moved_old = {m.old_id for m in moved}

    added: list[str] = []
    added_guardians: list[str] = []
    new_users: list[list[str]] = []
    new_demographics: list[list[str]] = []
    for k, template in enumerate(templates):
        trow = user_rows[template][0]
        sid, gid = make_id("student", k), make_id("guardian", k)
        female = rng.random() < 0.49
        family, given = people.family(), people.given(female)
        identifier = _fresh_identifier(rng, scan.identifiers)
        state = next((t[7:9] for t in _split(trow[ucol["userIds"]]) if t.startswith("{State:")),
                     rng.choice(_STATES))  # fmt: skip
        domain = trow[ucol["email"]].partition("@")[2] or "students.example.org"
        org, grades = trow[ucol["orgSourcedIds"]], trow[ucol["grades"]]
        new_users.append(_reorder(
            _student_row(sid, day, org, grades, identifier, f"{state}{rng.randrange(10**9):09d}",
                         given, family, people.middle(female, 0.4), domain, gid,
                         people.password() if rng.random() < 0.3 else ""),
            USERS_COLUMNS, users_header))  # fmt: skip
        guardian_female = rng.random() < 0.7
        guardian_family = family if rng.random() < 0.85 else people.family()
        contact = f"C{day_date.replace('-', '')}{k + 1:04d}"
        new_users.append(_reorder(
            _guardian_row(rng, people, gid, day, contact, people.given(guardian_female),
                          guardian_family, org, sid),
            USERS_COLUMNS, users_header))  # fmt: skip
        grade = GRADES.index(grades) if grades in GRADES else 0
        new_demographics.append(
            _demographics_row(rng, sid, day, grade, female, school_year, state, "")
        )
        for row in enrolled.get(template, []):
            if row[ecol["role"]] == "student":
                new_enrollment(row, sid, row[e_class])
        added.append(sid)
        added_guardians.append(gid)

    for name in _UNCHANGED_FILES:
        if (src_dir / name).exists():
            shutil.copyfile(src_dir / name, out_dir / name)
            if name not in rows and name != "manifest.csv":
                rows[name] = _count_rows(src_dir / name)

    with _Table(src_dir / "users.csv") as table, _Sink(out_dir / "users.csv", table.header) as sink:
        sid_i, stamp_i = table.col["sourcedId"], table.col["dateLastModified"]
        given_i, family_i = table.col["givenName"], table.col["familyName"]
        for row in table:
            sid = row[sid_i]
            if sid in removed_set:
                continue
            if sid in renames:
                row[given_i], row[family_i] = renames[sid]
                row[stamp_i] = day
            if sid in student_agents:
                row[agents_i] = student_agents[sid]
                row[stamp_i] = day
            edit = edits.get(sid)
            if edit is not None:
                row[agents_i] = _join(edit.apply(_split(row[agents_i])))
                row[stamp_i] = day
            sink.write(row)
        for row in new_users:
            sink.write(row)
        rows["users.csv"] = sink.rows

    with (
        _Table(src_dir / "enrollments.csv") as table,
        _Sink(out_dir / "enrollments.csv", table.header) as sink,
    ):
        for row in table:
            if row[e_user] not in removed_set and row[e_id] not in moved_old:
                sink.write(row)
        for row in new_enrollments:
            sink.write(row)
        rows["enrollments.csv"] = sink.rows

    with (
        _Table(src_dir / "demographics.csv") as table,
        _Sink(out_dir / "demographics.csv", table.header) as sink,
    ):
        sid_i = table.col["sourcedId"]
        for row in table:
            if row[sid_i] not in removed_set:
                sink.write(row)
        for row in new_demographics:
            sink.write(_reorder(row, DEMOGRAPHICS_COLUMNS, table.header))
        rows["demographics.csv"] = sink.rows

    return MutationSummary(
        day=day,
        renamed=to_rename,
        added=added,
        added_guardians=added_guardians,
        removed=removed,
        moved_enrollments=moved,
        guardian_changed=changes,
        unlinked_guardians=list(dict.fromkeys(unlinked)),
        rows={name: rows[name] for name in FILE_COLUMNS if name in rows},
    )


def _header(path: Path) -> list[str]:
    with _Table(path) as table:
        return table.header


def _fresh_identifier(rng: random.Random, taken: set[str]) -> str:
    while True:
        candidate = str(rng.randrange(1_000_000, 10_000_000))
        if candidate not in taken:
            taken.add(candidate)
            return candidate


# --- command line ---------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m rostersync.generator``: generate a district or its next day."""
    parser = argparse.ArgumentParser(prog="python -m rostersync.generator", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    gen = commands.add_parser("district", help="write a day-one bundle")
    gen.add_argument("out_dir", type=Path)
    gen.add_argument("--students", type=int, default=500)
    gen.add_argument("--seed", type=int, default=1)
    gen.add_argument("--schools", type=int, default=None)
    nxt = commands.add_parser("next-day", help="write the following day's bundle")
    nxt.add_argument("src_dir", type=Path)
    nxt.add_argument("out_dir", type=Path)
    nxt.add_argument("--seed", type=int, default=2)
    nxt.add_argument("--rate", type=float, default=0.01)
    args = parser.parse_args(argv)
    result: BaseModel
    if args.command == "district":
        result = generate_district(
            args.out_dir, students=args.students, seed=args.seed, schools=args.schools
        )
    else:
        result = mutate_next_day(args.src_dir, args.out_dir, seed=args.seed, rate=args.rate)
    print(result.model_dump_json(indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
