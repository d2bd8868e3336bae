"""The optional compiled parts of auditjournal (all metadata is in pyproject.toml).

``auditjournal.model._canonical_accel`` is the fast path of the canonical JSON walk and
of the secret filter in C; ``auditjournal.model._records_accel`` writes the export's
hot records (rows, tokens, node states, routing events, calls, outcomes) and their
Merkle leaf hashes (OpenSSL);
``auditjournal.journal._seal_accel`` seals journal lines and checks read ones a batch
at a time (needs OpenSSL's headers);
``auditjournal.fs._digest_accel`` hashes the export's Merkle leaves and nodes and
re-checks payloads, ``auditjournal.payloads._window_accel`` reads a replay's payloads
from the read-ahead window, ``auditjournal.evidence._chunkscan_accel`` does verify's
per-record chunk work a block at a time (all three OpenSSL too),
``auditjournal.sql._rowtext_accel`` writes the SQL projector's datetime text for SQLite.
Each is built when a C
compiler (and its headers) is at hand;
without one the build goes on without it (``optional=True``) and the Python code does
the same work, with byte-identical results. For a checkout:
``python setup.py build_ext --inplace``.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "auditjournal.model._canonical_accel",
            sources=["src/auditjournal/model/_canonical_accel.c"],
            optional=True,
        ),
        Extension(
            "auditjournal.model._records_accel",
            sources=["src/auditjournal/model/_records_accel.c"],
            depends=["src/auditjournal/_payload_window.h"],
            libraries=["crypto"],  # the records' Merkle leaf hashes
            optional=True,
        ),
        Extension(
            "auditjournal.journal._seal_accel",
            sources=["src/auditjournal/journal/_seal_accel.c"],
            depends=["src/auditjournal/_sha256_evp.h"],
            libraries=["crypto"],  # OpenSSL's libcrypto, as Python's hashlib uses
            optional=True,
        ),
        Extension(
            "auditjournal.fs._digest_accel",
            sources=["src/auditjournal/fs/_digest_accel.c"],
            depends=["src/auditjournal/_sha256_evp.h"],
            libraries=["crypto"],
            optional=True,
        ),
        Extension(
            "auditjournal.payloads._window_accel",
            sources=["src/auditjournal/payloads/_window_accel.c"],
            depends=["src/auditjournal/_sha256_evp.h", "src/auditjournal/_payload_window.h"],
            libraries=["crypto"],
            optional=True,
        ),
        Extension(
            "auditjournal.evidence._chunkscan_accel",
            sources=["src/auditjournal/evidence/_chunkscan_accel.c"],
            depends=["src/auditjournal/evidence/_chunkscan_head.h"],
            libraries=["crypto"],
            optional=True,
        ),
        Extension(
            "auditjournal.sql._rowtext_accel",
            sources=["src/auditjournal/sql/_rowtext_accel.c"],
            optional=True,
        ),
    ]
)
