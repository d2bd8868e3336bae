"""Cryptographic evidence primitives: Merkle trees, signatures, signed notes, timestamps."""
