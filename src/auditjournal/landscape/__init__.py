"""Importing Landscape databases (elspeth's audit model) into auditjournal (issue 14)."""
