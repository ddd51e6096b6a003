"""The error every monitoring module raises on purpose."""

from __future__ import annotations

from training.errors import DataError


class MonitorError(DataError):
    """A baseline, capture prefix, ground-truth file or threshold that cannot be used; the message says why."""
