"""Projectors seen from the write side (live threads) and as a service (the project command)."""
