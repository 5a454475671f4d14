"""Generate the reference vectors for ``test_stats.py`` from GrowthBook's gbstats 0.8 and statsmodels.

NOT run in the project's .venv: gbstats pins numpy<2, pandas<2, so it lives in a virtualenv of its own
(see README.md beside this file)::

    python3 -m venv /tmp/gbvenv
    /tmp/gbvenv/bin/pip install "gbstats==0.8.0" statsmodels
    /tmp/gbvenv/bin/python apps/experiments/tests/reference/generate.py

It writes ``vectors.json`` beside itself (deterministic: fixed seed). The cases cluster near the
decision boundary (|t| around 2, i.e. small effects) where a subtle formula slip would flip a decision.
"""

from __future__ import annotations

import importlib.metadata
import json
import math
from pathlib import Path

import numpy as np
import scipy
import statsmodels
from gbstats.bayesian.tests import EffectBayesianABTest, EffectBayesianConfig
from gbstats.frequentist.tests import (
    FrequentistConfig,
    SequentialConfig,
    SequentialTwoSidedTTest,
    TwoSidedTTest,
)
from gbstats.models.statistics import (
    ProportionStatistic,
    RegressionAdjustedStatistic,
    SampleMeanStatistic,
)
from gbstats.utils import check_srm
from statsmodels.stats.multitest import multipletests

rng = np.random.default_rng(20261204)
ALPHAS = [0.05, 0.05, 0.1, 0.01]
TUNINGS = [5000, 5000, 500, 20000]


def _stat(kind: str, side: dict):
    if kind == "proportion":
        return ProportionStatistic(n=side["n"], sum=side["conversions"])
    return SampleMeanStatistic(n=side["n"], sum=side["total"], sum_squares=side["total_squares"])


def _run(kind: str, control: dict, treatment: dict, relative: bool, alpha: float, tuning: float) -> dict:
    diff = "relative" if relative else "absolute"
    a, b = _stat(kind, control), _stat(kind, treatment)
    freq = TwoSidedTTest(a, b, FrequentistConfig(difference_type=diff, alpha=alpha)).compute_result()
    seq = SequentialTwoSidedTTest(
        a, b, SequentialConfig(difference_type=diff, alpha=alpha, sequential_tuning_parameter=tuning)
    ).compute_result()
    bay = EffectBayesianABTest(a, b, EffectBayesianConfig(difference_type=diff, alpha=alpha)).compute_result()
    return {
        "kind": kind,
        "control": control,
        "treatment": treatment,
        "relative": relative,
        "alpha": alpha,
        "tuning": tuning,
        "frequentist": {"effect": freq.expected, "ci": list(freq.ci), "p_value": float(freq.p_value)},
        "sequential": {"effect": seq.expected, "ci": list(seq.ci), "p_value": float(seq.p_value)},
        "bayesian": {"effect": bay.expected, "ci": list(bay.ci), "chance_to_win": float(bay.chance_to_win)},
    }


def _mean_side(n: int, mean: float, sd: float) -> dict:
    # Sums of a sample with exactly this mean and (n - 1) variance.
    total = n * mean
    return {"n": n, "total": total, "total_squares": (n - 1) * sd * sd + total * total / n}


def mean_cases(count: int) -> list[dict]:
    cases = []
    for i in range(count):
        na, nb = (int(x) for x in rng.integers(20, 20000, 2))
        mu = float(rng.uniform(0.5, 50)) * (-1 if i % 7 == 0 else 1)
        sd_a = abs(mu) * float(rng.uniform(0.2, 3))
        sd_b = sd_a * float(rng.uniform(0.7, 1.4))
        se = math.sqrt(sd_a**2 / na + sd_b**2 / nb)
        # Treatment mean a few tenths of a standard error around the 1.96 boundary, either sign.
        shift = float(rng.choice([-1, 1])) * float(rng.uniform(1.0, 3.0)) * se
        if i % 5 == 0:
            shift = float(rng.normal(0, se))
        control = _mean_side(na, mu, sd_a)
        treatment = _mean_side(nb, mu + shift, sd_b)
        cases.append(_run("mean", control, treatment, i % 2 == 0, ALPHAS[i % 4], TUNINGS[(i // 2) % 4]))
    return cases


def proportion_cases(count: int) -> list[dict]:
    cases = []
    for i in range(count):
        na, nb = (int(x) for x in rng.integers(50, 50000, 2))
        p = float(rng.uniform(0.005, 0.6))
        se = math.sqrt(p * (1 - p) * (1 / na + 1 / nb))
        q = min(0.99, max(0.001, p + float(rng.choice([-1, 1])) * float(rng.uniform(0.5, 3.0)) * se))
        control = {"n": na, "conversions": round(p * na)}
        treatment = {"n": nb, "conversions": round(q * nb)}
        cases.append(_run("proportion", control, treatment, i % 2 == 1, ALPHAS[i % 4], TUNINGS[(i // 2) % 4]))
    return cases


def degenerate_cases() -> list[dict]:
    zero = {"n": 100, "total": 0.0, "total_squares": 0.0}
    flat = {"n": 100, "total": 500.0, "total_squares": 2500.0}  # every unit 5: no variance
    one = {"n": 1, "total": 3.0, "total_squares": 9.0}
    normal = _mean_side(100, 5.0, 2.0)
    out = []
    for relative in (True, False):
        for control, treatment in ((zero, normal), (flat, normal), (normal, flat), (one, normal)):
            out.append(_run("mean", control, treatment, relative, 0.05, 5000))
        out.append(
            _run(
                "proportion", {"n": 100, "conversions": 0}, {"n": 100, "conversions": 3}, relative, 0.05, 5000
            )
        )
    return out


def cuped_cases(count: int) -> list[dict]:
    cases = []
    for i in range(count):
        n = [int(x) for x in rng.integers(30, 3000, 2)]
        corr = float(rng.uniform(0.1, 0.95))
        sides = []
        for j in range(2):
            x = rng.normal(10, 3, n[j])
            y = 10 + corr * (x - 10) + math.sqrt(1 - corr * corr) * 3 * rng.normal(0, 1, n[j]) + 0.15 * j
            sides.append(
                {
                    "n": n[j],
                    "total": float(y.sum()),
                    "total_squares": float((y * y).sum()),
                    "pre_total": float(x.sum()),
                    "pre_total_squares": float((x * x).sum()),
                    "cross_total": float((x * y).sum()),
                }
            )
        stats = [
            RegressionAdjustedStatistic(
                n=s["n"],
                post_statistic=SampleMeanStatistic(n=s["n"], sum=s["total"], sum_squares=s["total_squares"]),
                pre_statistic=SampleMeanStatistic(
                    n=s["n"], sum=s["pre_total"], sum_squares=s["pre_total_squares"]
                ),
                post_pre_sum_of_products=s["cross_total"],
                theta=0,
            )
            for s in sides
        ]
        relative = i % 2 == 0
        diff = "relative" if relative else "absolute"
        test = TwoSidedTTest(stats[0], stats[1], FrequentistConfig(difference_type=diff))
        res = test.compute_result()
        cases.append(
            {
                "control": sides[0],
                "treatment": sides[1],
                "relative": relative,
                "theta": float(test.stat_a.theta),
                "frequentist": {"effect": res.expected, "ci": list(res.ci), "p_value": float(res.p_value)},
            }
        )
    return cases


def srm_cases(count: int) -> list[dict]:
    cases = []
    for i in range(count):
        k = int(rng.integers(2, 5))
        weights = [float(w) for w in rng.dirichlet(np.ones(k) * 3)] if i % 3 else [1.0 / k] * k
        total = int(rng.integers(200, 200000))
        counts = [int(c) for c in rng.multinomial(total, weights)]
        if i % 4 == 0:  # push toward a mismatch
            counts[0] += int(rng.integers(0, int(3 * math.sqrt(total)) + 1))
        if i == 1:
            weights[-1] = 0.0
        cases.append({"counts": counts, "weights": weights, "p_value": float(check_srm(counts, weights))})
    cases.append({"counts": [0, 0], "weights": [0.5, 0.5], "p_value": float(check_srm([0, 0], [0.5, 0.5]))})
    return cases


def correction_cases(count: int) -> list[dict]:
    cases = []
    for i in range(count):
        m = int(rng.integers(1, 15))
        p = rng.uniform(0, 0.12, m) if i % 2 else rng.beta(0.5, 3, m)
        if m > 2 and i % 3 == 0:
            p[1] = p[0]  # ties
        p_values = [float(x) for x in p]
        cases.append(
            {
                "p_values": p_values,
                "holm": [float(x) for x in multipletests(p_values, method="holm")[1]],
                "bh": [float(x) for x in multipletests(p_values, method="fdr_bh")[1]],
            }
        )
    return cases


def main() -> None:
    vectors = {
        "versions": {
            "gbstats": importlib.metadata.version("gbstats"),
            "statsmodels": statsmodels.__version__,
            "scipy": scipy.__version__,
            "numpy": np.__version__,
        },
        "tests": mean_cases(200) + proportion_cases(200) + degenerate_cases(),
        "cuped": cuped_cases(40),
        "srm": srm_cases(60),
        "corrections": correction_cases(60),
    }
    path = Path(__file__).with_name("vectors.json")
    path.write_text(json.dumps(vectors, indent=1) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
