"""The request mix (mecsim.sim.workload_mix): Zipf frequencies, adapters, determinism."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from mecsim.sim.workload_mix import NO_ADAPTER, AdapterCatalogue, ModelMix, zipf_weights


def chi2_p(counts: np.ndarray, p: np.ndarray) -> float:
    return float(stats.chisquare(counts, counts.sum() * p).pvalue)


def test_zipf_weights_closed_form():
    # P(k) = k^-s / H(n, s): for n = 4, s = 1, H = 1 + 1/2 + 1/3 + 1/4 = 25/12
    assert zipf_weights(4, 1.0) == pytest.approx([12 / 25, 6 / 25, 4 / 25, 3 / 25])
    assert zipf_weights(5, 0.0) == pytest.approx([0.2] * 5)


@pytest.mark.parametrize("s", [0.6, 1.0, 1.4])
def test_model_frequencies_match_zipf_chi_square(s):
    mix = ModelMix(tuple(f"m{k}" for k in range(8)), zipf_s=s)
    d = mix.sample(np.random.default_rng(123), 200_000)
    counts = np.bincount(d.model, minlength=8)
    assert chi2_p(counts, zipf_weights(8, s)) > 1e-3  # fixed seed: deterministic, not flaky


def test_negative_control_chi_square_rejects_a_wrong_exponent():
    """The same test rejects draws from another exponent (uniform, or s off by 0.1)."""
    n = 200_000
    for wrong in (0.0, 1.1):
        d = ModelMix(tuple(f"m{k}" for k in range(8)), zipf_s=wrong).sample(np.random.default_rng(5), n)
        assert chi2_p(np.bincount(d.model, minlength=8), zipf_weights(8, 1.0)) < 1e-6


def test_adapters_probability_and_zipf_within_their_model():
    cat = AdapterCatalogue("sd15-lora", count=20, zipf_s=0.9, probability=0.6)
    mix = ModelMix(("sd15", "sdxl"), weights=(3.0, 1.0), adapters={"sd15": cat})
    d = mix.sample(np.random.default_rng(9), 200_000)
    assert chi2_p(np.bincount(d.model, minlength=2), np.array([0.75, 0.25])) > 1e-3
    sd15 = d.model == 0
    assert (d.adapter[~sd15] == NO_ADAPTER).all()  # sdxl has no catalogue
    has = d.adapter[sd15] != NO_ADAPTER
    # fraction with an adapter: binomial, 4 standard errors
    m = sd15.sum()
    assert abs(has.mean() - 0.6) < 4 * np.sqrt(0.6 * 0.4 / m)
    counts = np.bincount(d.adapter[sd15][has], minlength=20)
    assert chi2_p(counts, zipf_weights(20, 0.9)) > 1e-3


def test_same_seed_same_draws_other_seed_differs():
    mix = ModelMix(("a", "b", "c"), zipf_s=1.0, adapters={"a": AdapterCatalogue("lora", 5, 1.0, 0.5)})
    d1 = mix.sample(np.random.default_rng(42), 1000)
    d2 = mix.sample(np.random.default_rng(42), 1000)
    d3 = mix.sample(np.random.default_rng(43), 1000)
    assert np.array_equal(d1.model, d2.model) and np.array_equal(d1.adapter, d2.adapter)
    assert not np.array_equal(d1.model, d3.model)


def test_keys_and_items():
    mix = ModelMix(("sd15", "sd15-img2img"), adapters={"sd15": AdapterCatalogue("sd15-lora", 2)})
    keys = mix.keys({"sd15": ["sd15"], "sd15-img2img": ["sd15"]})
    assert keys == {
        "sd15": ("sd15",),
        "sd15+sd15-lora#0": ("sd15", "sd15-lora#0"),
        "sd15+sd15-lora#1": ("sd15", "sd15-lora#1"),
        "sd15-img2img": ("sd15",),
    }
    assert mix.key(0, NO_ADAPTER) == "sd15" and mix.key(0, 1) == "sd15+sd15-lora#1"


def test_bad_input_names_the_field():
    with pytest.raises(ValueError, match="zipf_s"):
        ModelMix(("a",), zipf_s=-1.0)
    with pytest.raises(ValueError, match="weights"):
        ModelMix(("a", "b"), weights=(1.0,))
    with pytest.raises(ValueError, match="probability"):
        AdapterCatalogue("lora", 3, probability=1.5)
    with pytest.raises(ValueError, match="adapters"):
        ModelMix(("a",), adapters={"b": AdapterCatalogue("lora", 3)})
