"""File plumbing: append files, fsync, and opening files someone else may have written."""
