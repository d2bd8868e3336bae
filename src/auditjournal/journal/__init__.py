"""The run's append-only, hash-chained journal: the backend interface (:mod:`.base`),
the line format (:mod:`.lines`) and the file backend (:mod:`.segments`, :mod:`.files`
the writer, :mod:`.reader` the cursor, :mod:`.filebackend`)."""
