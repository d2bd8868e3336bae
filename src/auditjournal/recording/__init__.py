"""The write side's front door: AuditStore, RunRecorder, argument checks, run state."""
