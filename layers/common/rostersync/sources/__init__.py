"""Sources: each turns its raw input into canonical records, row issues and a
source-neutral read summary (see ``sources.base``); ``sources.registry`` picks one by
kind."""
