"""
Settings of the property tests (hypothesis).
"""

from __future__ import annotations

from hypothesis import HealthCheck, Phase, settings

#: modest and without the "explain" phase, whose report (under -W error)
#: trips over a deprecation warning of one of its imports
FUZZ = settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    phases=[phase for phase in Phase if phase is not Phase.explain],
)
