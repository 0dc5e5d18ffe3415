"""Cost profiles: they load, they say what the measurements say, bad names are clear errors."""

from __future__ import annotations

import argparse
import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runtime.engines.sim import SimEngine, list_profiles, load_profile
from runtime.engines.sim import cli as sim_cli
from runtime.engines.sim.profile import PiecewiseLinear
from spexlang.diagnostics import UserError

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"


def test_shipped_profiles_load() -> None:
    assert {"h100-7b", "a100-7b", "cpu-smollm"} <= set(list_profiles())
    for name in list_profiles():
        profile = load_profile(name)
        assert profile.name == name and profile.sources and profile.generated_by
        for server in (profile.policy, profile.reward):
            assert server.max_running_requests > 0 and server.kv_capacity_tokens > 0
            assert server.decode_s(1) > 0 and server.prefill_s(1000) > server.prefill_s(10)


def test_unknown_profile_is_a_user_error_listing_the_known_ones() -> None:
    with pytest.raises(UserError) as error:
        SimEngine("tpu-9000")
    assert "tpu-9000" in error.value.message
    for name in list_profiles():
        assert name in error.value.message


def test_cli_builds_engines_from_a_spec() -> None:
    parser = argparse.ArgumentParser()
    sim_cli.add_arguments(parser)
    args = parser.parse_args(["--sim-seed", "5", "--sim-max-running", "8"])
    engine = sim_cli.create("", args, {"q": "a"})
    assert engine.name == "sim:h100-7b" and engine.seed == 5
    assert engine.capacity().max_running_requests == 8
    assert sim_cli.create("cpu-smollm", args, {}).name == "sim:cpu-smollm"
    with pytest.raises(UserError, match="known profiles"):
        sim_cli.create("nope", args, {})
    with pytest.raises(UserError, match="time_scale"):
        sim_cli.create("", parser.parse_args(["--sim-time-scale", "0"]), {})


def test_gpu_profile_matches_the_vidur_measurements() -> None:
    # The calibration README's summed H100 Llama-2-7B linear ops: 5.6 ms at 1 token, 5.9 at 64,
    # 21.1 at 1024, 83.1 at 4096 (the profile adds a ~0.1 ms LM head).
    policy = load_profile("h100-7b").policy
    for tokens, ms in ((1, 5.6), (64, 5.9), (1024, 21.1), (4096, 83.1)):
        assert policy.prefill_s(tokens) * 1e3 == pytest.approx(ms, rel=0.15)
    # Decode attention reads 512 KiB per cached token at ~80% of 3.35 TB/s.
    assert policy.decode_attn_s_per_context_token == pytest.approx(2**19 / (0.8 * 3.35e12))
    assert load_profile("a100-7b").policy.decode_s(64) > policy.decode_s(64)


def test_cpu_profile_matches_the_local_measurements() -> None:
    policy = load_profile("cpu-smollm").policy
    for batch, ms in ((1, 87), (4, 176), (16, 290), (64, 629)):
        assert policy.decode_s(batch) * 1e3 == pytest.approx(ms)
    assert 1 / (policy.prefill_s(2000) - policy.prefill_s(1000)) * 1000 == pytest.approx(
        210, rel=0.25
    )


def _fit_script() -> ModuleType:
    path = REPO / "benchmarks" / "sim_fit_profiles.py"
    spec = importlib.util.spec_from_file_location("sim_fit_profiles", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(not DATA.is_dir(), reason="needs ../shared/data (the calibration files)")
def test_committed_profiles_are_what_the_fit_script_produces() -> None:
    fit = _fit_script()
    expected = {
        "h100-7b": fit.gpu_profile("h100", DATA / "calibration"),
        "a100-7b": fit.gpu_profile("a100", DATA / "calibration"),
        "cpu-smollm": fit.cpu_profile(),
    }
    folder = REPO / "runtime" / "engines" / "sim" / "profiles"
    for name, profile in expected.items():
        assert json.loads((folder / f"{name}.json").read_text()) == json.loads(json.dumps(profile))


@given(
    batch=st.integers(1, 512),
    context=st.integers(0, 200_000),
    seconds=st.floats(0.0, 30.0, allow_nan=False),
)
def test_iterations_within_inverts_the_closed_form_sum(
    batch: int, context: int, seconds: float
) -> None:
    cost = load_profile("h100-7b").policy
    k = cost.decode_iterations_within(batch, context, seconds)
    assert cost.decode_iterations_s(batch, context, k) <= seconds
    assert cost.decode_iterations_s(batch, context, k + 1) > seconds


def test_closed_form_equals_the_iteration_by_iteration_sum() -> None:
    cost = load_profile("a100-7b").policy
    batch, context = 37, 12_345
    stepwise = sum(
        cost.decode_s(batch) + cost.decode_attn_s_per_context_token * (context + batch * i)
        for i in range(50)
    )
    assert cost.decode_iterations_s(batch, context, 50) == pytest.approx(stepwise)


def test_piecewise_linear_interpolates_and_extrapolates() -> None:
    curve = PiecewiseLinear((1.0, 3.0), (10.0, 20.0))
    assert (curve(0.0), curve(1.0), curve(2.0), curve(5.0)) == (10.0, 10.0, 15.0, 30.0)
    with pytest.raises(ValueError):
        PiecewiseLinear((2.0, 1.0), (0.0, 0.0))
