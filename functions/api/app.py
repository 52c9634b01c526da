"""Lambda handler of the admin API: an adapter around rostersync.api."""

from typing import Any

from aws_lambda_powertools.logging import correlation_paths

from rostersync.api.app import default_api
from rostersync.observability import logger, metrics, tracer


@logger().inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@metrics().log_metrics
@tracer().capture_lambda_handler(capture_response=False)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return default_api().handle(event, context)
