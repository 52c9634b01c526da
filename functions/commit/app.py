"""Lambda handler for the commit step: an adapter around rostersync.pipeline.commit."""

from rostersync.pipeline.steps import lambda_handler_for

handler = lambda_handler_for("commit")
