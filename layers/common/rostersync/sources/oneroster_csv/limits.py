"""What storage can hold, checked when a file is read so that a value too big for it
skips one row with an issue instead of failing the run at commit."""

from __future__ import annotations

from typing import Final

#: The longest id (a sourcedId or a reference) in characters. Ids become parts of
#: DynamoDB keys (the links table's sort key holds 1,024 bytes, its partition key 2,048),
#: beside the tenant, the entity and the source system.
MAX_ID_CHARS: Final = 512

#: The largest record, as compact UTF-8 JSON. A DynamoDB item holds 400 KB including its
#: attribute names, keys and the app's bookkeeping; this leaves room for those.
MAX_RECORD_BYTES: Final = 350_000

#: The longest cell the CSV parser reads, in characters (the csv module's default is
#: 131,072). A cell too big for any record is still read, so its row is skipped with an
#: issue; past this size the parser stops and the rest of the file is unreadable.
CSV_FIELD_LIMIT: Final = 1 << 20

#: Upper bound of the JSON bytes one character of a cell can take (a control character
#: escaped as ``\\u00XX``): rows shorter than ``MAX_RECORD_BYTES`` over this, less the
#: keys of a record, cannot make a record too big, and are not measured.
JSON_BYTES_PER_CHAR: Final = 6
RECORD_KEYS_BYTES: Final = 4_000
UNMEASURED_ROW_CHARS: Final = (MAX_RECORD_BYTES - RECORD_KEYS_BYTES) // JSON_BYTES_PER_CHAR
