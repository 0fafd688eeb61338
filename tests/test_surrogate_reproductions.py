"""Surrogate-gradient LIF/ALIF reproductions (slow): Bellec et al. 2020's temporal tasks."""
import pytest


@pytest.mark.slow
def test_alif_network_learns_seven_cue_evidence_accumulation(load_example):
    result = load_example("surrogate_gradient").evidence(steps=300, batch=32, delay=0.3, seed=0)
    assert result["accuracy"] >= 0.9, result


@pytest.mark.slow
def test_lif_network_learns_the_four_sinusoid_pattern(load_example):
    result = load_example("surrogate_gradient").pattern(steps=300, seed=0)
    assert result["nmse"] < 0.1, result
