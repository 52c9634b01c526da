"""rostersync's own exceptions.

Their class names are what Step Functions sees as ``errorType``: the state machine retries
``TransientError`` subclasses and sends everything else to the failure state.
"""


class RostersyncError(Exception):
    """Base of every error rostersync raises on purpose."""


class TransientError(RostersyncError):
    """A failure worth retrying: throttling, a timeout, a dependency briefly unavailable."""


class StorageUnavailable(TransientError):
    """S3, DynamoDB or EventBridge refused or timed out."""


class FatalError(RostersyncError):
    """A failure a retry cannot fix."""


class UnknownTenant(FatalError):
    """The tenant does not exist (and may not be created here)."""


class InvalidKey(FatalError):
    """An S3 key, tenant id or run id that is malformed or outside its tenant's prefix."""


class BundleError(FatalError):
    """A bundle that cannot be read at all (not a zip, no roster files)."""


class RunNotFound(FatalError):
    """No run with this id for this tenant."""


class RunStateError(FatalError):
    """The run is not in a state that allows the requested operation."""


class StaleBaseline(FatalError):
    """The run was staged on a committed state that has since moved."""
