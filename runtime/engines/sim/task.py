"""The sim engine's synthetic reasoning task: what a step says, how good it is, what it scores.

The sim recognises a request's parent by its text: every generated node is registered under a
hash of its full text (request text + generated step); a request whose text, minus a trailing
step delimiter, hashes to a registered node continues that node, otherwise it starts a root whose
question is looked up among the known `answers`. Every draw for a new node comes from one hash of
(request text, request seed, engine seed), so a node's text never depends on batch composition or
timing: that is what makes the executor's exact speculation possible.

The model (parameters in `TaskParams`, reasoning beside each): every root has a difficulty level
1-5 and a latent quality logit; a child inherits its parent's logit plus Gaussian noise (a
random walk, so early rewards predict later ones only partly); step lengths are lognormal, fitted
to MATH-500 reference steps; a step is terminal ("The answer is: X") with a probability rising
with depth around the root's expected solution length; a terminal answer is right with
probability sigmoid(logit), else one of three plausible wrong answers shared across the root and
inherited along a path (so wrong votes can agree); the process reward of a step is
sigmoid(gain * logit + noise), with the final step shifted by whether its answer is right.
A terminal step ends the sequence (`FinishReason.EOS`), the other steps end at the step delimiter
(`FinishReason.STOP`), a step cut at `max_new_tokens` with `FinishReason.LENGTH`.
"""

from __future__ import annotations

import math
import re
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from hashlib import blake2b

from runtime.engines.protocol import FinishReason
from runtime.engines.sim import fitted_task

_UNPACK8 = struct.Struct("<8Q").unpack
_TWO_PI = 2.0 * math.pi
_U64 = 2.0**-64
_INTEGER = re.compile(r"-?\d+")
_DECIMAL = re.compile(r"-?\d+\.\d+")


@dataclass(frozen=True)
class TaskParams:
    """Parameters of the synthetic task; each default says where it comes from."""

    # Lognormal step length in tokens, fitted to MATH-500 reference solutions split at blank
    # lines and sentence ends (benchmarks/sim_fit_profiles.py): median ~28, mean ~40, long tail.
    step_tokens_log_mean: float = fitted_task.STEP_TOKENS_LOG_MEAN
    step_tokens_log_sd: float = fitted_task.STEP_TOKENS_LOG_SD
    min_step_tokens: int = 4
    # Lognormal expected number of steps per solution (same fit, doubled for verbose models).
    solution_steps_log_mean: float = fitted_task.SOLUTION_STEPS_LOG_MEAN
    solution_steps_log_sd: float = fitted_task.SOLUTION_STEPS_LOG_SD
    max_expected_steps: float = 30.0
    # P(terminal at depth d) = sigmoid((d - expected_steps) / width): solutions end within a
    # couple of steps of their expected length, rarely much earlier.
    terminal_width: float = 1.0
    # Root quality logit: by level, plus a wide per-question spread, so per-question
    # single-sample accuracy is U-shaped as for real models (many questions always or never
    # solved) and majority voting gains only a few points over one sample. Calibrated with
    # benchmarks/sim_task_calibration.py to MATH-500 figures of 7B maths models: pass@1 ~0.34,
    # majority@16 ~0.36 (cf. Mistral-7B-MetaMath and Llemma-7B: 28-35% greedy, ~40% maj@16).
    root_logit_easiest: float = 0.75
    root_logit_per_level: float = -1.0
    root_logit_sd: float = 2.0
    # Per-step random walk of the logit: siblings drift apart (sd ~1 in logit after ~6 steps),
    # so which branch a search keeps matters, and an early step's reward predicts the path's
    # outcome only partly: the regime where speculation often, not always, guesses right.
    step_logit_drift: float = 0.0
    step_logit_sd: float = 0.4
    # PRM score = sigmoid(gain * logit + N(0, noise^2)); the final step moves by +-shift with
    # correctness. Measured: reward-weighted vote@16 0.43 against majority 0.36, best-of-16
    # 0.49, pooled AUROC of final-step scores 0.84 (7B PRMs such as Math-Shepherd: 0.7-0.9).
    # An early step's reward barely ranks its own path's outcome (AUROC ~0.52 within a
    # question): a search gains by keeping many branches, not by trusting one early score.
    reward_gain: float = 0.4
    reward_noise_sd: float = 1.0
    terminal_reward_shift: float = 0.2
    # A path keeps its wrong-answer tendency from step to step with this probability; otherwise
    # it draws one of the root's three wrong answers with these weights, so wrong answers agree
    # often enough to compete in a vote.
    wrong_keep: float = 0.9
    wrong_weights: tuple[float, float, float] = (0.5, 0.3, 0.2)
    chars_per_token: float = 3.5


class Root:
    """A question as the sim sees it."""

    __slots__ = ("expected_steps", "level", "logit", "question", "reference", "wrong_answers")

    def __init__(
        self,
        question: str,
        reference: str,
        level: int,
        expected_steps: float,
        logit: float,
        wrong_answers: tuple[str, str, str],
    ) -> None:
        self.question = question
        self.reference = reference
        self.level = level
        self.expected_steps = expected_steps
        self.logit = logit
        self.wrong_answers = wrong_answers


class Node:
    """A registered text prefix: the root prompt or a generated step; mutable cache flags ride
    along so the servers' prefix caches need no second index."""

    __slots__ = (
        "correct",
        "ctx_tokens",
        "depth",
        "kv_cached",
        "kv_ref",
        "logit",
        "own_tokens",
        "parent",
        "reward",
        "rm_cached",
        "root",
        "terminal",
        "wrong",
    )

    def __init__(
        self,
        parent: Node | None,
        root: Root,
        depth: int,
        logit: float,
        ctx_tokens: int,
        own_tokens: int,
        wrong: int,
        reward: float,
        terminal: bool,
        correct: bool,
    ) -> None:
        self.parent = parent
        self.root = root
        self.depth = depth
        self.logit = logit
        self.ctx_tokens = ctx_tokens  # tokens of the full text up to and including this node
        self.own_tokens = own_tokens  # tokens this node adds to its parent's text
        self.wrong = wrong
        self.reward = reward
        self.terminal = terminal
        self.correct = correct
        self.kv_ref = 0  # running requests and locked children holding this prefix
        self.kv_cached = False  # in the policy server's prefix cache
        self.rm_cached = False  # in the reward server's prefix cache


@dataclass(frozen=True)
class Step:
    """One generated step: its text and token accounting, and the node it creates."""

    text: str
    parent: Node
    child: Node
    prompt_tokens: int
    completion_tokens: int
    finish_reason: FinishReason


def _sigmoid(x: float) -> float:
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


def _finish_reason(truncated: bool, terminal: bool) -> FinishReason:
    """A cut step ends at the token limit; a terminal step (the final answer) ends the
    sequence, as a model emits end-of-sequence after its answer; any other step ends at the
    step delimiter (a stop string)."""
    if truncated:
        return FinishReason.LENGTH
    return FinishReason.EOS if terminal else FinishReason.STOP


def _uniforms(digest: bytes) -> list[float]:
    return [(v + 0.5) * _U64 for v in _UNPACK8(digest)]


class QuestionIndex:
    """Finds which known question a root prompt contains, in time linear in the prompt."""

    def __init__(self, answers: Mapping[str, str]) -> None:
        self._answers = {q.strip(): a for q, a in answers.items() if q.strip()}
        self._probe_len = min([32, *(len(q) for q in self._answers)]) if self._answers else 0
        self._probe: dict[str, list[str]] = {}
        for q in self._answers:
            self._probe.setdefault(q[: self._probe_len], []).append(q)

    def find(self, text: str) -> tuple[str, str] | None:
        """(question, reference) for the longest known question occurring in text, or None."""
        stripped = text.strip()
        if stripped in self._answers:
            return stripped, self._answers[stripped]
        k = self._probe_len
        if k == 0:
            return None
        best: str | None = None
        probe = self._probe
        for i in range(len(text) - k + 1):
            candidates = probe.get(text[i : i + k])
            if candidates is None:
                continue
            for q in candidates:
                if (best is None or len(q) > len(best)) and text.startswith(q, i):
                    best = q
        return None if best is None else (best, self._answers[best])


def _wrong_answers(reference: str) -> tuple[str, str, str]:
    """Three plausible wrong answers, each numerically different from the reference."""
    ref = reference.strip()
    if _INTEGER.fullmatch(ref):
        n = int(ref)
        return str(n + 1), str(n - 1), str(n + 10)
    if _DECIMAL.fullmatch(ref):
        x = float(ref)
        return f"{x + 1:g}", f"{x - 1:g}", f"{x * 2 + 1:g}"
    return f"{ref}+1", f"{ref}-1", f"{ref}+2"


class SyntheticTask:
    """Turns (request text, seed) into a step deterministically; scores registered paths."""

    def __init__(
        self, answers: Mapping[str, str] | None, seed: int, params: TaskParams | None = None
    ) -> None:
        self.params = params or TaskParams()
        self._index = QuestionIndex(answers or {})
        self._seed_key = struct.pack("<q", seed)
        self._nodes: dict[bytes, Node] = {}
        p = self.params
        total = sum(p.wrong_weights)
        self._wrong_cdf = (
            p.wrong_weights[0] / total,
            (p.wrong_weights[0] + p.wrong_weights[1]) / total,
        )

    @property
    def node_count(self) -> int:
        return len(self._nodes)

    def step(self, text: str, delimiter: str, seed: int, max_new_tokens: int) -> Step:
        """The next step after `text`, a function of (text, seed, engine seed) only."""
        data = text.encode()
        hasher = blake2b(digest_size=16)
        parent: Node | None = None
        delim = delimiter.encode()
        if delim and data.endswith(delim):
            # The usual case: a registered node's text plus the step delimiter.
            hasher.update(memoryview(data)[: len(data) - len(delim)])
            parent = self._nodes.get(hasher.digest())
            hasher.update(delim)
        else:
            hasher.update(data)
        text_key = hasher.digest()
        if parent is not None:
            prompt_tokens = parent.ctx_tokens + 1  # the delimiter: one token
        else:
            # Exactly a registered node's text (a root asked again), or a new root.
            parent = self._nodes.get(text_key) or self._new_root(text, text_key)
            prompt_tokens = parent.ctx_tokens
        draw = blake2b(text_key + struct.pack("<q", seed), digest_size=64, key=self._seed_key)
        ints = _UNPACK8(draw.digest())
        u = [(v + 0.5) * _U64 for v in ints]
        p = self.params
        radius = math.sqrt(-2.0 * math.log(u[0]))
        logit_noise = radius * math.cos(_TWO_PI * u[1])
        length_noise = radius * math.sin(_TWO_PI * u[1])
        reward_noise = math.sqrt(-2.0 * math.log(u[6])) * math.cos(_TWO_PI * u[7])
        root = parent.root
        depth = parent.depth + 1
        logit = parent.logit + p.step_logit_drift + p.step_logit_sd * logit_noise
        length = max(
            p.min_step_tokens,
            round(math.exp(p.step_tokens_log_mean + p.step_tokens_log_sd * length_noise)),
        )
        if u[4] < p.wrong_keep:
            wrong = parent.wrong
        else:
            wrong = 0 if u[5] < self._wrong_cdf[0] else 1 if u[5] < self._wrong_cdf[1] else 2
        truncated = length > max_new_tokens
        terminal = not truncated and u[2] < _sigmoid(
            (depth - root.expected_steps) / p.terminal_width
        )
        correct = terminal and u[3] < _sigmoid(logit)
        if terminal:
            answer = root.reference if correct else root.wrong_answers[wrong]
            step_text = f"The answer is: {answer}"
            shift = p.terminal_reward_shift if correct else -p.terminal_reward_shift
        else:
            step_text = f"Step {depth}: consider the {ints[5] & 0xFFFFFF:06x} case."
            shift = 0.0
        completion = max_new_tokens if truncated else length
        reward = _sigmoid(p.reward_gain * logit + p.reward_noise_sd * reward_noise + shift)
        hasher.update(step_text.encode())
        key = hasher.digest()
        child = self._nodes.get(key)
        if child is None:
            child = Node(
                parent,
                root,
                depth,
                logit,
                prompt_tokens + completion,
                prompt_tokens + completion - parent.ctx_tokens,
                wrong,
                reward,
                terminal,
                correct,
            )
            self._nodes[key] = child
        return Step(
            step_text,
            parent,
            child,
            prompt_tokens,
            completion,
            _finish_reason(truncated, terminal),
        )

    def path_nodes(self, prompt: str, steps: tuple[str, ...], delimiter: str) -> list[Node | None]:
        """The registered node of each step of a rendered path (None where unknown).

        The first step is looked up both right after the prompt and after prompt + delimiter,
        since an executor may render the root request either way.
        """
        hasher = blake2b(prompt.encode(), digest_size=16)
        delim = delimiter.encode()
        out: list[Node | None] = []
        for i, step in enumerate(steps):
            data = step.encode()
            if i:
                hasher.update(delim)
                hasher.update(data)
            else:
                plain = hasher.copy()
                plain.update(data)
                if delim and plain.digest() not in self._nodes:
                    hasher.update(delim)
                    hasher.update(data)
                else:
                    hasher = plain
            out.append(self._nodes.get(hasher.digest()))
        return out

    def unknown_step_score(self, prompt: str, steps: tuple[str, ...], index: int) -> float:
        """A deterministic, uninformative score for a step the sim did not generate."""
        draw = blake2b(digest_size=16, key=self._seed_key)
        draw.update(prompt.encode())
        for step in steps[: index + 1]:
            draw.update(b"\x00" + step.encode())
        return (int.from_bytes(draw.digest()[:8], "little") + 0.5) * _U64

    def tokens_of(self, text: str) -> int:
        return max(1, math.ceil(len(text) / self.params.chars_per_token))

    def _new_root(self, text: str, key: bytes) -> Node:
        found = self._index.find(text)
        qh = blake2b(digest_size=64, key=self._seed_key)
        if found is None:
            qh.update(text.encode())
            u = _uniforms(qh.digest())
            question, reference = text, str(int(u[5] * 1000))
        else:
            question, reference = found
            qh.update(question.encode())
            u = _uniforms(qh.digest())
        p = self.params
        # MATH-500's levels are spread over 1-5; the sim sees only text, so a hash of the
        # question picks the level, uniformly.
        level = 1 + min(4, int(u[0] * 5))
        normal_a = math.sqrt(-2.0 * math.log(u[1])) * math.cos(_TWO_PI * u[2])
        normal_b = math.sqrt(-2.0 * math.log(u[1])) * math.sin(_TWO_PI * u[2])
        expected = min(
            p.max_expected_steps,
            math.exp(p.solution_steps_log_mean + p.solution_steps_log_sd * normal_a),
        )
        logit = p.root_logit_easiest + p.root_logit_per_level * (level - 1)
        logit += p.root_logit_sd * normal_b
        root = Root(
            question, reference, level, max(1.0, expected), logit, _wrong_answers(reference)
        )
        wrong = 0 if u[3] < self._wrong_cdf[0] else 1 if u[3] < self._wrong_cdf[1] else 2
        tokens = self.tokens_of(text)
        node = Node(None, root, 0, logit, tokens, tokens, wrong, 0.5, False, False)
        self._nodes[key] = node
        return node
