"""Lambda handler for the stage step: an adapter around rostersync.pipeline.stage."""

from rostersync.pipeline.steps import lambda_handler_for

handler = lambda_handler_for("stage")
