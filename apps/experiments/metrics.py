"""The metrics an A/B test may decide on or watch, and how each is counted.

``kind`` picks the statistics: a proportion (did the unit click, check out, pay) uses the binomial
variance; a mean (an engagement rate, revenue) the sample variance. ``missing`` says what an exposed unit
without an outcome row means: ``zero`` (an offer nobody clicked is a 0, so the unit count is the exposures)
or ``skip`` (a post the platform reported nothing for is unknown, so only units with a row count).
``has_pre`` marks metrics whose outcome rows carry a pre-period value, which CUPED uses to narrow the
interval.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class Metric:
    name: str
    label: str
    kind: Literal["proportion", "mean"]
    missing: Literal["zero", "skip"]
    has_pre: bool = False


METRICS: dict[str, Metric] = {
    metric.name: metric
    for metric in (
        # The post's engagement rate; its pre-period value is the mean rate of its platform and format
        # before it was published, which explains much of the spread between posts.
        Metric("engagement_rate", "Engagement rate", "mean", "skip", has_pre=True),
        Metric("click", "Offer clicked", "proportion", "zero"),
        Metric("checkout", "Checkout completed", "proportion", "zero"),
        Metric("conversion", "Paid conversion", "proportion", "zero"),
        # In minor units of the currency paid; summed over the unit's payments.
        Metric("revenue", "Revenue (minor units)", "mean", "zero"),
    )
}


def metric_get(name: str) -> Metric:
    """The metric called ``name``; ValueError for a name the registry does not know."""
    try:
        return METRICS[name]
    except KeyError:
        raise ValueError(f"unknown metric {name!r}; known: {', '.join(sorted(METRICS))}") from None
