"""The export: projector, chunk files, checkpoint, replay and tail."""
