"""Lambda handlers of the commit: an adapter around rostersync.pipeline.commit.

``handler`` begins a commit (checks, plans its chunks), ``chunk`` applies one chunk (a
Distributed Map item), ``finish`` applies what is left and completes the run."""

from rostersync.pipeline.steps import commit_chunk_handler, lambda_handler_for

handler = lambda_handler_for("commit")
chunk = commit_chunk_handler()
finish = lambda_handler_for("commit_finish")
