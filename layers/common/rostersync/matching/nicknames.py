"""A small built-in table of common English given-name nicknames.

Each group is a formal name with the short and familiar forms a school record may carry
instead (the SIS holds "Robert", the app holds the "Bob" the child goes by). A name may
belong to several groups ("Al" is Albert, Alan, Alexander, Alfred); two names are
nickname-equivalent when they share a group. The table is deliberately small and
conservative: a false equivalence would make two different children look alike.
"""

from __future__ import annotations

from functools import lru_cache

from rostersync.matching.normalize import fold_name

_GROUPS: tuple[tuple[str, ...], ...] = (
    ("abigail", "abby", "abbie", "gail"),
    ("alexander", "alex", "alec", "al", "sasha", "xander", "lex"),
    ("alexandra", "alex", "alexa", "lexi", "sandra", "sasha", "allie"),
    ("albert", "al", "bert", "bertie"),
    ("alan", "al"),
    ("alfred", "al", "alf", "fred", "freddie"),
    ("andrew", "andy", "drew"),
    ("anthony", "tony", "ant"),
    ("barbara", "barb", "barbie", "babs"),
    ("benjamin", "ben", "benny", "benji"),
    ("catherine", "cathy", "cat", "kate", "katie", "cate", "cathie"),
    ("katherine", "kathy", "kate", "katie", "kat", "kathryn", "kay", "kit"),
    ("kathleen", "kathy", "kate", "katie", "kath"),
    ("charles", "charlie", "chuck", "chas", "chaz"),
    ("charlotte", "charlie", "lottie", "lotte"),
    ("christina", "chris", "tina", "chrissy"),
    ("christopher", "chris", "kit", "topher"),
    ("daniel", "dan", "danny"),
    ("david", "dave", "davey", "davy"),
    ("deborah", "debbie", "deb", "debra"),
    ("dominic", "dom", "nico"),
    ("donald", "don", "donnie"),
    ("dorothy", "dot", "dottie", "dolly"),
    ("edward", "ed", "eddie", "ted", "teddy", "ned"),
    ("edmund", "ed", "eddie", "ned"),
    ("elizabeth", "liz", "lizzie", "beth", "betty", "eliza", "libby", "lisa", "betsy", "ellie"),
    ("eleanor", "ellie", "nell", "nora", "elle"),
    ("emily", "em", "emmy", "millie"),
    ("frances", "fran", "frankie", "fanny"),
    ("francis", "frank", "frankie", "fran"),
    ("frederick", "fred", "freddie", "freddy", "rick"),
    ("gabriel", "gabe", "gabby"),
    ("gabriella", "gabby", "ella", "brie"),
    ("gregory", "greg"),
    ("harold", "harry", "hal"),
    ("henry", "harry", "hank", "hal"),
    ("isabella", "bella", "izzy", "isabel", "belle", "issy"),
    ("jacob", "jake", "jakey"),
    ("james", "jim", "jimmy", "jamie", "jem"),
    ("jennifer", "jen", "jenny", "jenn"),
    ("jessica", "jess", "jessie"),
    ("john", "jack", "johnny", "jon"),
    ("jonathan", "jon", "jonny", "nathan"),
    ("joseph", "joe", "joey", "jo"),
    ("josephine", "jo", "josie", "jojo"),
    ("joshua", "josh"),
    ("katrina", "kat", "trina"),
    ("lawrence", "larry", "laurie"),
    ("leonard", "leo", "len", "lenny"),
    ("margaret", "maggie", "meg", "peggy", "marge", "greta", "daisy", "madge"),
    ("matthew", "matt", "matty"),
    ("michael", "mike", "mikey", "mick", "mickey", "mitch"),
    ("michelle", "shelly", "chelle", "mich"),
    ("nathaniel", "nate", "nat", "nathan"),
    ("nicholas", "nick", "nicky", "nico", "klaus"),
    ("nicole", "nikki", "nicky", "cole"),
    ("oliver", "ollie", "olly"),
    ("olivia", "liv", "livvy", "ollie"),
    ("patricia", "pat", "patty", "tricia", "trish"),
    ("patrick", "pat", "paddy", "rick"),
    ("peter", "pete"),
    ("philip", "phil", "pip"),
    ("rebecca", "becky", "becca", "bex"),
    ("richard", "rich", "rick", "ricky", "dick", "richie"),
    ("robert", "bob", "bobby", "rob", "robbie", "bert"),
    ("ronald", "ron", "ronnie"),
    ("samantha", "sam", "sammy"),
    ("samuel", "sam", "sammy"),
    ("stephen", "steve", "stevie", "steven"),
    ("susan", "sue", "susie", "suzy"),
    ("theodore", "theo", "ted", "teddy"),
    ("thomas", "tom", "tommy"),
    ("timothy", "tim", "timmy"),
    ("victoria", "vicky", "tori", "vic"),
    ("william", "bill", "billy", "will", "willy", "liam"),
    ("zachary", "zach", "zack", "zac"),
)


def _build_index() -> dict[str, frozenset[int]]:
    index: dict[str, set[int]] = {}
    for group_id, names in enumerate(_GROUPS):
        for name in names:
            index.setdefault(name, set()).add(group_id)
    return {name: frozenset(groups) for name, groups in index.items()}


_INDEX = _build_index()

#: The most groups any one name belongs to; callers that store groups in fixed-width
#: arrays size them with it.
MAX_GROUPS_PER_NAME = max(len(groups) for groups in _INDEX.values())


@lru_cache(maxsize=1 << 16)
def nickname_groups(name: str) -> frozenset[int]:
    """The ids of the nickname groups the (first token of the) given name belongs to;
    empty when the name is in no group."""
    tokens = fold_name(name).split()
    if not tokens:
        return frozenset()
    return _INDEX.get(tokens[0], frozenset())


def are_nicknames(a: str, b: str) -> bool:
    """Whether two given names are the same name or nickname-equivalent
    (``are_nicknames("Bob", "Robert")``)."""
    first_a, first_b = fold_name(a).split()[:1], fold_name(b).split()[:1]
    if not first_a or not first_b:
        return False
    if first_a == first_b:
        return True
    return bool(nickname_groups(a) & nickname_groups(b))
