"""``python -m auditjournal`` runs the command line."""

from .cli import main

main()
