"""Lambda handler for the long part of an admin's decision about a run (re-stage, tick or
untick whole kinds, prepare an undo or an approval): an adapter around
rostersync.application.review.run_operation."""

from rostersync.application.review import run_operation
from rostersync.pipeline.steps import lambda_handler_for_step

handler = lambda_handler_for_step("review", run_operation)
