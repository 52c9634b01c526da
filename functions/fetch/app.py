"""Lambda handler for the fetch step: an adapter around rostersync.pipeline.fetch."""

from rostersync.pipeline.steps import lambda_handler_for

handler = lambda_handler_for("fetch")
