"""Shared test configuration.

Hypothesis runs derandomized by default, so the suite a new user or CI runs is the same
every time (a property failure is reproducible, never a flaky red). Set
``HYPOTHESIS_PROFILE=explore`` to draw fresh random examples, as the deep ``-m slow``
runs are meant to be used when hunting for bugs.
"""

from __future__ import annotations

import os

from hypothesis import settings

settings.register_profile("default", derandomize=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

from pgtools import pg_url  # noqa: E402, F401 - a database of the test's own (PostgreSQL tests)
