"""Everything that touches AWS: S3 objects, DynamoDB items, EventBridge events."""
