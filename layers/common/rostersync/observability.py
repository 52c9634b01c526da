"""Logger and metrics, shared by every function.

Logs are structured JSON on stderr with ``tenant``, ``run`` and ``step`` keys. They carry
ids and counts only: never a roster record or an event body (children's personal data).
"""

from __future__ import annotations

import logging
import sys
from functools import lru_cache

from aws_lambda_powertools import Logger


@lru_cache(maxsize=1)
def logger() -> Logger:
    """The process logger (stderr, so command output on stdout stays clean)."""
    return Logger(service="rostersync", logger_handler=logging.StreamHandler(sys.stderr))
