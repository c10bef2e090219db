"""Is a difference real? A ratio between two settings, its interval, and a verdict.

The unit is the round, not the request: requests within one round share whatever the machine
was doing at that moment (another process, a frequency change), so their thousands of samples
are not independent evidence. Each round gives one figure per setting (its p50, say, read from
the run's summary) and the statistics below see only those figures.

- The ratio is treatment / baseline of the mean of the per-round figures. Rounds are paired
  (the settings of one round ran back to back, in shuffled order), so the bootstrap resamples
  rounds, keeping each round's pair together.
- Its 95 % interval is scipy's bias-corrected and accelerated (BCa) bootstrap: it corrects the
  skew that a ratio of latencies has, and criterion.rs and pyperf rely on the same kind of
  interval.
- A paired rank test is the second opinion: Wilcoxon's signed-rank test (two-sided) on each
  round's log ratio, setting over baseline. It respects the pairing the bootstrap respects: a
  round where the whole machine was slow moves both figures, and only the ratio within the
  round is evidence. An unpaired test (Mann-Whitney U, used here before) ranks every figure
  against every other and drowns a steady 10 % effect in rounds that differ by more than that
  among themselves. It assumes no distribution, so one wild round cannot carry a verdict on
  its own; the price is that with n rounds its smallest two-sided p is 2 / 2**n, so fewer than
  :data:`FEWEST_ROUNDS_FOR_A_VERDICT` rounds can never name an effect.
- The noise band (default ±5 %): a ratio whose whole interval lies inside it is no effect worth
  naming, even if it is "significant".
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
DEFAULT_NOISE_BAND = 0.05
SIGNIFICANCE = 0.05  # the rank test must agree at this level before a verdict names an effect
BOOTSTRAP_RESAMPLES = 2000
MINIMUM_ROUNDS = 3  # fewer rounds cannot give a bootstrap interval (nor a rank test) any meaning
# The signed-rank test's smallest two-sided p with n rounds is 2 / 2**n (every round the same
# way): the fewest rounds whose p can go below SIGNIFICANCE, 6 at 0.05.
FEWEST_ROUNDS_FOR_A_VERDICT = math.floor(math.log2(2 / SIGNIFICANCE)) + 1
RANK_TEST = "Wilcoxon signed-rank, two-sided, on per-round log ratios"

SLOWER = "slower"
FASTER = "faster"
NO_EFFECT = "no detectable effect"


@dataclass(frozen=True, kw_only=True)
class Effect:
    """What changing the baseline into ``setting`` did to one metric."""

    setting: dict[str, Any]
    metric: str
    ratio: float  # mean over rounds of the setting's figure / the baseline's
    ci_low: float
    ci_high: float
    p_value: float  # RANK_TEST: each round's log(setting / baseline), paired by round
    verdict: str
    within_noise_band: bool  # the whole interval lies inside 1 ± noise_band
    noise_band: float

    def rules_out(self, change: float) -> bool:
        """True when the interval excludes a change of ``change`` (0.2: 20 %) either way: then
        "no effect" means "none as large as that", which a ratio near 1 alone does not say."""
        return 1 / (1 + change) < self.ci_low and self.ci_high < 1 + change

    def as_dict(self) -> dict[str, Any]:
        return {"setting": dict(self.setting), "metric": self.metric, "ratio": self.ratio,
                "ci_low": self.ci_low, "ci_high": self.ci_high, "p_value": self.p_value,
                "test": RANK_TEST,  # records written before it held a Mann-Whitney U p
                "verdict": self.verdict, "within_noise_band": self.within_noise_band,
                "noise_band": self.noise_band}


def _ratio_of_means(baseline: np.ndarray, treatment: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.asarray(np.mean(treatment, axis=axis) / np.mean(baseline, axis=axis))


def ratio_interval(baseline: Sequence[float], treatment: Sequence[float], *,
                   confidence: float = CONFIDENCE, seed: int = 0,
                   resamples: int = BOOTSTRAP_RESAMPLES) -> tuple[float, float, float]:
    """(ratio, low, high): the treatment/baseline ratio of paired rounds and its BCa interval."""
    base = np.asarray(baseline, dtype=np.float64)
    treated = np.asarray(treatment, dtype=np.float64)
    if base.shape != treated.shape or base.size < MINIMUM_ROUNDS:
        raise ValueError(f"need paired rounds, at least {MINIMUM_ROUNDS} of each")
    ratio = float(_ratio_of_means(base, treated))
    if np.ptp(base) == 0 and np.ptp(treated) == 0:
        return ratio, ratio, ratio  # no spread at all: every resample gives the same ratio
    result = stats.bootstrap((base, treated), _ratio_of_means, paired=True, vectorized=True,
                             confidence_level=confidence, n_resamples=resamples, method="BCa",
                             rng=np.random.default_rng(seed))
    low, high = float(result.confidence_interval.low), float(result.confidence_interval.high)
    if math.isnan(low) or math.isnan(high):  # BCa degenerate (e.g. ties): fall back to percentiles
        result = stats.bootstrap((base, treated), _ratio_of_means, paired=True, vectorized=True,
                                 confidence_level=confidence, n_resamples=resamples,
                                 method="percentile", rng=np.random.default_rng(seed))
        low, high = float(result.confidence_interval.low), float(result.confidence_interval.high)
    return ratio, low, high


def rank_test(baseline: Sequence[float], treatment: Sequence[float]) -> float:
    """The two-sided p of :data:`RANK_TEST` over paired rounds; 1.0 when every round's ratio is
    exactly 1 (nothing to rank)."""
    base = np.asarray(baseline, dtype=np.float64)
    treated = np.asarray(treatment, dtype=np.float64)
    if base.shape != treated.shape:
        raise ValueError("need paired rounds: one figure of each side per round")
    log_ratios = np.log(treated / base)
    if not np.any(log_ratios):
        return 1.0
    return float(stats.wilcoxon(log_ratios, alternative="two-sided").pvalue)


def verdict(low: float, high: float, p_value: float, noise_band: float) -> str:
    """``slower``/``faster`` only when the interval clears the noise band and the ranks agree.

    The figures are latencies, so a ratio above 1 means the setting made things slower.
    """
    if p_value >= SIGNIFICANCE:
        return NO_EFFECT
    if low > 1 + noise_band:
        return SLOWER
    if high < 1 - noise_band:
        return FASTER
    return NO_EFFECT


def measure_effect(setting: dict[str, Any], metric: str, baseline: Sequence[float],
                   treatment: Sequence[float], *, noise_band: float = DEFAULT_NOISE_BAND,
                   seed: int = 0) -> Effect:
    """The effect of ``setting`` on ``metric``, from one figure per round of each side."""
    ratio, low, high = ratio_interval(baseline, treatment, seed=seed)
    p_value = rank_test(baseline, treatment)
    return Effect(setting=setting, metric=metric, ratio=ratio, ci_low=low, ci_high=high,
                  p_value=p_value, verdict=verdict(low, high, p_value, noise_band),
                  within_noise_band=(1 - noise_band) <= low and high <= (1 + noise_band),
                  noise_band=noise_band)
