"""The run record beside a results file: `results.jsonl.run.json` says which run wrote the rows.

The results file stays plain JSONL of result rows; its companion record holds the run's identity
(the program's content hash, the resolved parameters, mode, engine, base seed, dataset and the
options that change what a query computes) and the run's status (`running`, then `finished`,
`interrupted` or `failed`). `--resume` compares the identity of the new command with the record
and refuses, naming each difference, rather than mix two configurations in one file. Options
that change only speed or transport (concurrency, timeouts, server URLs, the sim's wall-clock
scale) are not part of the identity: a resumed run may change them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from spexlang.diagnostics import UserError

if TYPE_CHECKING:
    from compiler.ir import StrategyGraph

RECORD_SUFFIX = ".run.json"
RECORD_FORMAT = 1
# Engine flags that change how fast or where requests run, never what a query computes (the
# local engine's token speculation is exact: its seeded outputs are those without it).
OPERATIONAL_ENGINE_OPTIONS = frozenset(
    {
        "request_timeout",
        "policy_url",
        "reward_url",
        "sim_time_scale",
        "draft_tokens",
        "draft_blocks",
    }
)
# How each identity key is named in a refusal.
LABELS = {
    "program_hash": "program content",
    "strategy": "strategy",
    "parameters": "parameters",
    "mode": "--mode",
    "engine": "--engine",
    "engine_options": "engine options",
    "base_seed": "--seed",
    "dataset": "dataset",
    "dataset_format": "dataset format",
    "question_field": "--question-field",
    "answer_field": "--answer-field",
    "spec_options": "speculation options",
}


def program_hash(graph: StrategyGraph) -> str:
    """sha256 of the compiled graph's canonical JSON: a .spx and its .json give the same."""
    from compiler.export_json import to_data

    canonical = json.dumps(to_data(graph), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def record_path(output: str | Path) -> Path:
    return Path(f"{output}{RECORD_SUFFIX}")


def keeps_record(output: str | Path) -> bool:
    """A record is kept beside regular files only (not beside /dev/stdout or a pipe)."""
    try:
        mode = os.stat(output).st_mode
    except FileNotFoundError:
        return True
    except OSError:
        return False
    return stat.S_ISREG(mode)


def read_record(output: str | Path) -> dict[str, Any] | None:
    """The record beside `output`, or None when there is none (a file from an older spex)."""
    path = record_path(output)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, RecursionError) as e:
        raise UserError(
            f"cannot read the run record {path} of {output} ({e}); move it away to resume "
            "without the configuration check"
        ) from None
    if not isinstance(data, dict) or not isinstance(data.get("identity"), dict):
        raise UserError(f"{path} is not a spex run record (no identity)")
    return data


def write_record(output: str | Path, body: Mapping[str, Any]) -> None:
    """Write the record atomically (a temporary file renamed over it)."""
    path = record_path(output)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    text = json.dumps({"format": RECORD_FORMAT, **body}, indent=2, ensure_ascii=False, default=str)
    try:
        tmp.write_text(text + "\n", encoding="utf-8")
        os.replace(tmp, path)
    except OSError as e:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise UserError(f"cannot write the run record {path}: {e.strerror or e}") from None


def identity_differences(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """One phrase per identity key whose value differs, e.g. "--seed: 0 in the file, 99 now"."""
    out: list[str] = []
    for key in sorted(
        old.keys() | new.keys(), key=lambda k: list(LABELS).index(k) if k in LABELS else 99
    ):
        was, now = old.get(key), new.get(key)
        if was == now:
            continue
        label = LABELS.get(key, key)
        if isinstance(was, dict) and isinstance(now, dict):
            changed = sorted(k for k in was.keys() | now.keys() if was.get(k) != now.get(k))
            detail = ", ".join(f"{k}={_show(was.get(k))} -> {_show(now.get(k))}" for k in changed)
            out.append(f"{label} ({detail})")
        elif key == "program_hash":
            out.append(f"{label} (sha256 {str(was)[:12]}… in the file, {str(now)[:12]}… now)")
        else:
            out.append(f"{label} ({_show(was)} in the file, {_show(now)} now)")
    return out


def _show(value: object) -> str:
    return "unset" if value is None else json.dumps(value, default=str)
