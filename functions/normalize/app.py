"""Lambda handlers of the normalize step: an adapter around rostersync.pipeline.normalize.

``handler`` reads the files in order (and stops at a large one, its parts planned),
``part`` reads one part of it (a Distributed Map item), ``next`` joins the parts and
reads on."""

from rostersync.pipeline.normalize import normalize_next
from rostersync.pipeline.steps import (
    lambda_handler_for,
    lambda_handler_for_step,
    normalize_part_handler,
)

handler = lambda_handler_for("normalize")
part = normalize_part_handler()
# Timed and shown as the normalize step: the step's time spans its tasks.
next = lambda_handler_for_step("normalize", normalize_next)
