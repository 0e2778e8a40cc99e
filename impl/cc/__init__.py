"""Congestion control behind one small interface (`base.CongestionControl`): per-subflow
Reno (RFC 5681) and CUBIC (RFC 9438) now; the coupled algorithms (LIA RFC 6356, OLIA,
BALIA) will subclass the same interface and share a `base.CouplingGroup` across the
subflows of one MPTCP connection.
"""

from .base import CongestionControl, CouplingGroup
from .cubic import Cubic
from .reno import Reno

__all__ = ["CongestionControl", "CouplingGroup", "Cubic", "Reno"]
