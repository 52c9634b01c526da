"""Lambda handlers of the stage: an adapter around rostersync.pipeline.stage_fanout.

``handler`` plans the stage's parts (and stages a district of one part per entity
there and then), ``part`` stages one part (a Distributed Map item), ``finish`` stages
what is left, joins the parts and decides commit or prepared."""

from rostersync.pipeline.stage_fanout import finish_stage
from rostersync.pipeline.steps import (
    lambda_handler_for,
    lambda_handler_for_step,
    stage_part_handler,
)

handler = lambda_handler_for("stage")
part = stage_part_handler()
# Timed and shown as the stage step: the stage's time spans its tasks.
finish = lambda_handler_for_step("stage", finish_stage)
