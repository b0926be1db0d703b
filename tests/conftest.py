"""Shared pytest configuration: hypothesis settings profiles.

Pick one with the environment variable ``HYPOTHESIS_PROFILE``:

* ``ci`` (default) -- 200 examples per property, no deadline (the CI machine is small and
  shared, so timing-based deadlines would be flaky);
* ``dev`` -- 50 examples, for quick local runs.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci", max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "dev", max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
