"""The formats: events, export records, canonical JSON, settings, typed values, schemas."""
