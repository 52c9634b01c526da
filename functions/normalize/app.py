"""Lambda handler for the normalize step: an adapter around rostersync.pipeline.normalize."""

from rostersync.pipeline.steps import lambda_handler_for

handler = lambda_handler_for("normalize")
