"""Bridges to tools users already run (OpenLineage, ...). Each module here needs an
optional extra and is imported only by whoever uses it, never by ``auditjournal``
itself, so the embedded default works without them."""
