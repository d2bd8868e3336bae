"""The run's append-only, hash-chained journal: line format and the file backend."""
