"""Hypothesis profiles, chosen by HYPOTHESIS_PROFILE (default "ci"), registered and loaded on import.

A property test takes its example count from the profile through ``examples(n)``: n, the test's quick
count, under "ci" (what `make test` runs); the profile's own count under any other ("long": 10,000,
what `make test-long` runs)."""
from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

HYPOTHESIS_PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "ci")
settings.register_profile("ci", max_examples=100)  # Hypothesis's own default, for a test naming no count
settings.register_profile("long", max_examples=10_000, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
# A tenth of "long", for a run that must end within a session (HYPOTHESIS_PROFILE=medium).
settings.register_profile("medium", max_examples=1_000, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.load_profile(HYPOTHESIS_PROFILE)


def examples(quick: int) -> int:
    """How many examples a property test runs: ``quick`` under "ci", the loaded profile's count otherwise."""
    return quick if HYPOTHESIS_PROFILE == "ci" else settings.default.max_examples
