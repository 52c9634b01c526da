"""The embedded stack: template.yaml's resources emulated in-process by moto.

``rostersync.local.runtime.LocalCloud`` is the entry point; importing it imports moto,
so this package's ``__init__`` stays empty for code that only needs the pipeline.
"""
