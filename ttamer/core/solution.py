"""What a solver returns: :class:`Solution`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .policy import Policy


@dataclass
class Solution:
    """The optimal expected trade-off ``value`` = E[λ X + (1−λ) cost] and a policy achieving it."""

    value: float
    policy: Policy
    method: str
    lam: float
    recall: bool
    details: dict[str, Any] = field(default_factory=dict)
