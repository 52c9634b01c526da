"""Lambda handler for the match step: an adapter around rostersync.pipeline.match."""

from rostersync.pipeline.steps import lambda_handler_for

handler = lambda_handler_for("match")
