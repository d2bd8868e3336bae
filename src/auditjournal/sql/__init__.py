"""The SQL audit tables: schema, projector, lineage queries, CSV export."""
