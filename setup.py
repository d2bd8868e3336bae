"""The optional compiled part of auditjournal (all metadata is in pyproject.toml).

``auditjournal.model._canonical_accel`` is the fast path of the canonical JSON walk in
C. It is built when a C compiler is at hand; without one the build goes on without it
(``optional=True``) and canonical.py walks in Python, with byte-identical results.
For a checkout: ``python setup.py build_ext --inplace``.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "auditjournal.model._canonical_accel",
            sources=["src/auditjournal/model/_canonical_accel.c"],
            optional=True,
        )
    ]
)
