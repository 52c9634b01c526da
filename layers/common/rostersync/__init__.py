"""rostersync: keeps an education app's roster in step with a school's SIS/MIS."""

__version__ = "0.1.0"
