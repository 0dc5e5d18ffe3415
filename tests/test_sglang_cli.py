"""`--engine sglang` and `spex serve` options: mistakes are UserErrors that say what to pass."""

from __future__ import annotations

import argparse

import pytest

from runtime.cli import command_serve
from runtime.engines.sglang import cli
from runtime.engines.sglang.engine import SglangEngine
from runtime.engines.sglang.rewards import ClassifyStyle, PrmStyle, parse_reward_style
from spexlang.diagnostics import UserError


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    return parser.parse_args(list(argv))


def test_create_collects_policy_urls_from_the_spec_and_the_flags() -> None:
    args = parse(
        "--policy-url", "http://10.0.0.2:30000/", "--reward-url", "http://10.0.0.3:30001",
        "--request-timeout", "42",
    )  # fmt: skip
    engine = cli.create("http://10.0.0.1:30000", args, {})
    assert isinstance(engine, SglangEngine)
    assert engine.config.policy_urls == ("http://10.0.0.1:30000", "http://10.0.0.2:30000")
    assert engine.config.reward_url == "http://10.0.0.3:30001"
    assert engine.config.request_timeout_s == 42.0


@pytest.mark.parametrize(
    ("spec", "argv", "message"),
    [
        ("", (), "needs a policy server: pass --policy-url"),
        ("", ("--policy-url", "localhost:30000"), "is not an http:// URL"),
        ("", ("--policy-url", "http://h:1", "--reward-style", "orm"), "unknown reward style"),
        ("", ("--policy-url", "http://h:1", "--reward-style", "prm"), "prm needs labels="),
        ("", ("--policy-url", "http://h:1", "--request-timeout", "0"), "must be positive"),
    ],
)
def test_create_refuses_bad_options_clearly(spec: str, argv: tuple[str, ...], message: str) -> None:
    with pytest.raises(UserError, match=message):
        cli.create(spec, parse(*argv), {})


def test_reward_styles_parse_their_options() -> None:
    assert parse_reward_style("classify") == ClassifyStyle(probability=False)
    assert parse_reward_style("classify:scores=probability") == ClassifyStyle(probability=True)
    served = {"spex": {"classify_scores": "probability"}}
    assert parse_reward_style("classify", served) == ClassifyStyle(probability=True)
    style = parse_reward_style("prm:labels=648/387,tag=\\, ки\\n,token=▁ки")
    assert style == PrmStyle(good_label=648, bad_label=387, tag=", ки\n", token="▁ки")
    with pytest.raises(UserError, match="has no option"):
        parse_reward_style("classify:foo=1")


def test_spex_serve_refuses_an_engine_it_cannot_serve() -> None:
    args = argparse.Namespace(engine="sglang:http://h:1", port=0, step_delimiter="\\n\\n")
    with pytest.raises(UserError, match="serve runs the sim or local engine"):
        command_serve.run(args)
