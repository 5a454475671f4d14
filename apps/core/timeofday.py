"""The parts of a UTC day the strategy plans posts by, and the simulated audience reacts to: one definition,
so that what the bandit learns about an "evening" is about the hours the audience calls evening."""

from __future__ import annotations

# UTC hours, start included, end not.
BUCKETS: dict[str, range] = {
    "night": range(0, 6),
    "morning": range(6, 12),
    "afternoon": range(12, 18),
    "evening": range(18, 24),
}


def bucket_of(hour: int) -> str:
    """The part of the day a UTC hour (0-23) falls in."""
    return next(name for name, hours in BUCKETS.items() if hour in hours)
