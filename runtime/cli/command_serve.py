"""`spex serve`: serve an in-process engine (sim or local) over SGLang's native HTTP API.

    spex serve --engine sim:h100-7b --port 30000 --dataset data/math500.jsonl
    spex run PROGRAM --engine sglang --policy-url http://127.0.0.1:30000 \
        --reward-url http://127.0.0.1:30000

One server answers both the policy routes (`/generate`) and the reward routes (`/classify`,
`/v1/score`). The sim runs in scaled real time: `--sim-time-scale` (default 100 here) simulated
seconds pass per wall second, so a 7B step of ~40 tokens, about a quarter of a simulated second
on an H100, takes under 3 ms of wall time.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
from collections.abc import Mapping

from runtime.cli.option_checks import check_numeric_options
from runtime.engines.factory import create_engine, parse_engine_spec
from runtime.serve.schema import DEFAULT_MAX_REQUEST_BYTES
from spexlang.diagnostics import UserError

SERVE_TIME_SCALE = 100.0
SERVED_KINDS = ("sim", "local")
DEFAULT_CACHE_BYTES = 512 * 1024 * 1024


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="serve the sim or local engine over SGLang's native HTTP API",
        description=(
            "Serve an in-process engine over the subset of SGLang's native HTTP API that spex "
            "uses (/generate, /abort_request, /classify, /v1/score, /get_server_info, "
            "/get_model_info, /health), so `--engine sglang` runs without a GPU server."
        ),
    )
    parser.add_argument(
        "--engine",
        default="sim",
        metavar="ENGINE",
        help="sim[:PROFILE] (default) or local[:MODEL]",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=30000, help="port (0 picks a free one)")
    parser.add_argument(
        "--dataset",
        metavar="FILE",
        default=None,
        help="JSONL problems; gives the engine its question -> reference answer map",
    )
    parser.add_argument(
        "--step-delimiter",
        default="\\n\\n",
        metavar="TEXT",
        help=(
            "the programs' step delimiter, with \\n escapes (default \\n\\n); /classify splits "
            "paths at it"
        ),
    )
    parser.add_argument(
        "--cache-bytes",
        type=int,
        default=DEFAULT_CACHE_BYTES,
        metavar="N",
        help=(
            "memory budget of the sim's record of the texts it has seen; the least recently "
            f"used are dropped beyond it (default {DEFAULT_CACHE_BYTES // 2**20} MiB). The local "
            "engine's prefix cache is bounded in tokens instead"
        ),
    )
    parser.add_argument(
        "--max-request-bytes",
        type=int,
        default=DEFAULT_MAX_REQUEST_BYTES,
        metavar="N",
        help=(
            "larger request bodies are answered HTTP 413 "
            f"(default {DEFAULT_MAX_REQUEST_BYTES // 2**20} MiB)"
        ),
    )
    for kind in SERVED_KINDS:
        importlib.import_module(f"runtime.engines.{kind}.cli").add_arguments(parser)
    parser.set_defaults(func=run, sim_time_scale=SERVE_TIME_SCALE)


def _unescape(text: str) -> str:
    return text.replace("\\n", "\n").replace("\\t", "\t")


def _answers(path: str | None) -> Mapping[str, str | None]:
    if path is None:
        return {}
    from runtime.datasets import load_dataset

    dataset = load_dataset(path)
    return {q.question: q.reference for q in dataset.queries}


def run(args: argparse.Namespace) -> int:
    from runtime.serve.app import ServeConfig
    from runtime.serve.runner import serve_until_stopped

    check_numeric_options(args)
    spec = parse_engine_spec(args.engine)
    if spec.kind not in SERVED_KINDS:
        raise UserError(f"serve runs the sim or local engine, not '{args.engine}'")
    delimiter = _unescape(args.step_delimiter)
    if not delimiter:
        raise UserError("--step-delimiter must not be empty")
    engine = create_engine(spec, args, _answers(args.dataset))
    config = ServeConfig(
        engine_label=engine.name,
        step_delimiter=delimiter,
        max_request_bytes=args.max_request_bytes,
    )
    try:
        asyncio.run(serve_until_stopped(engine, config, args.host, args.port))
    except OSError as e:
        raise UserError(f"cannot listen on {args.host}:{args.port}: {e.strerror or e}") from None
    return 0
