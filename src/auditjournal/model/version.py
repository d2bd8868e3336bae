"""The package's version, declared once: the public API, the CLI, the report and the
OpenLineage producer URN all read it from here."""

__version__ = "0.1.0"
