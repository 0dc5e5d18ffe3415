"""Reward styles: how a spex `RewardRequest` becomes one SGLang call, and how its answer becomes
one score per step. One small class per style; `--reward-style NAME[:KEY=VALUE,...]` picks one.

`classify` — a sequence-classification reward model served with `--is-embedding` (SGLang's
  `/classify`; e.g. Qwen2ForRewardModel, LlamaForSequenceClassification, Skywork-Reward). Step i's
  score is the model's score of the path up to step i. One call sends, as a batch, the prompt and
  every prefix of the path (prompt+s1+d, prompt+s1+d+s2+d, ...) whose score this client has not
  already got (a prefix's score never changes, so a path's earlier steps usually come from the
  cache and only the newest prefix is sent); one `rid` per text. The prompt's own score is
  discarded: it is sent so that the path's structure is explicit. A one-logit head is mapped
  through a sigmoid, a two-logit head through a softmax (class 1 = good); option
  `scores=probability` takes the value as is (spex serve announces this in `/get_model_info`, so
  the client picks it by itself).
`prm` — a process reward model read at step tags through SGLang's `/v1/score` (SGLang >= 0.5.23:
  `score_extraction_token`), e.g. a causal-LM PRM in the Math-Shepherd style (the probability of a
  "good" label token after each step tag). The item is the path with `tag` after every step; the
  server reads the label-token distribution at every `token` and spex keeps the first label's
  probability. Options: `tag=TEXT` (inserted after each step; default `<extra_0>`),
  `token=TOKEN` (the tokenizer's spelling of the tag token; default: the tag), `labels=GOOD/BAD`
  (token ids, required). The server must run with `--disable-radix-cache --chunked-prefill-size -1`.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from hashlib import blake2b
from typing import Any, Protocol

from runtime.engines.protocol import EngineError, RewardRequest
from runtime.engines.sglang.wire import wire_rid
from spexlang.diagnostics import UserError


class PrefixScores:
    """Scores the reward server already gave to path prefixes, keyed by a hash of the text; the
    oldest are dropped beyond `limit` (a dropped score is simply asked for again)."""

    def __init__(self, limit: int = 200_000) -> None:
        self.limit = limit
        self._scores: OrderedDict[bytes, float] = OrderedDict()

    @staticmethod
    def _key(text: str) -> bytes:
        return blake2b(text.encode(), digest_size=16).digest()

    def get(self, text: str) -> float | None:
        key = self._key(text)
        score = self._scores.get(key)
        if score is not None:
            self._scores.move_to_end(key)
        return score

    def put(self, text: str, score: float) -> None:
        key = self._key(text)
        self._scores[key] = score
        self._scores.move_to_end(key)
        while len(self._scores) > self.limit:
            self._scores.popitem(last=False)


@dataclass(frozen=True)
class RewardCall:
    """What one reward request sends: the body (None when the cache already knows every score),
    the rids the body names, which prefix each sent text is (by its number of steps), and the
    scores already known per step."""

    body: dict[str, Any] | None
    rids: tuple[str, ...]
    rows: tuple[int, ...]
    known: tuple[float | None, ...]


class RewardStyle(Protocol):
    """Maps reward requests to one SGLang route and back."""

    @property
    def name(self) -> str:
        """The style's name, as `--reward-style` spells it."""

    @property
    def path(self) -> str:
        """The HTTP route."""

    @property
    def launch_flags(self) -> str:
        """What `sglang.launch_server` needs for this style."""

    def prepare(
        self, request: RewardRequest, priority: int | None, cache: PrefixScores
    ) -> RewardCall:
        """The call for `request`, asking only for what `cache` does not know."""

    def step_scores(
        self, request: RewardRequest, call: RewardCall, answer: Any, cache: PrefixScores
    ) -> tuple[float, ...]:
        """One score in [0, 1] per step of `request`, from the server's answer (and the cache)."""


def path_prefixes(request: RewardRequest) -> list[str]:
    """[prompt, prompt+s1+d, prompt+s1+d+s2+d, ...]: the path rendered as the policy saw it."""
    texts = [request.prompt]
    for step in request.steps:
        texts.append(texts[-1] + step + request.step_delimiter)
    return texts


def _sigmoid(x: float) -> float:
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise EngineError(f"the reward server answered {what} = {value!r}, not a finite number")
    return float(value)


@dataclass(frozen=True)
class ClassifyStyle:
    """Per-prefix scores from a sequence-classification reward model (`/classify`)."""

    probability: bool = False  # the model (or spex serve) already returns probabilities
    name: str = "classify"
    path: str = "/classify"
    launch_flags: str = "--is-embedding --enable-priority-scheduling"

    def prepare(
        self, request: RewardRequest, priority: int | None, cache: PrefixScores
    ) -> RewardCall:
        prefixes = path_prefixes(request)
        known = tuple(cache.get(text) for text in prefixes[1:])
        missing = tuple(i + 1 for i, score in enumerate(known) if score is None)
        if not missing:
            return RewardCall(None, (), (), known)
        rows = (0, *missing)
        base = wire_rid(request.request_id, request.role)
        rids = tuple(f"{base}#{i}" for i in rows)
        body: dict[str, Any] = {"text": [prefixes[i] for i in rows], "rid": list(rids)}
        if priority is not None:
            body["priority"] = priority
        return RewardCall(body, rids, rows, known)

    def step_scores(
        self, request: RewardRequest, call: RewardCall, answer: Any, cache: PrefixScores
    ) -> tuple[float, ...]:
        scores = list(call.known)
        if call.body is not None:
            answered = answer if isinstance(answer, list) else [answer]
            if len(answered) != len(call.rows):
                raise EngineError(
                    f"the reward server answered {len(answered)} scores for {len(call.rows)} "
                    "texts on /classify"
                )
            prefixes = path_prefixes(request)
            for steps, row in zip(call.rows[1:], answered[1:], strict=True):
                scores[steps - 1] = score = self._score(row)
                cache.put(prefixes[steps], score)
        done = tuple(s for s in scores if s is not None)
        if len(done) != len(scores):
            raise EngineError("the reward server's /classify answer left steps unscored")
        return done

    def _score(self, row: Any) -> float:
        embedding = row.get("embedding") if isinstance(row, dict) else None
        if not isinstance(embedding, list) or not embedding:
            raise EngineError(f"the reward server's /classify row has no embedding: {row!r:.200}")
        values = [_number(v, "a /classify score") for v in embedding]
        if self.probability:
            if len(values) != 1 or not 0.0 <= values[0] <= 1.0:
                raise EngineError(f"expected one probability from /classify, got {values!r:.200}")
            return values[0]
        if len(values) == 1:
            return _sigmoid(values[0])
        if len(values) == 2:
            return _sigmoid(values[1] - values[0])  # softmax over two logits, class 1
        raise EngineError(
            f"/classify returned {len(values)} logits; a reward head has one or two. Use a "
            "reward model (one score) or a two-class classifier."
        )


@dataclass(frozen=True)
class PrmStyle:
    """Step scores read at step tags through `/v1/score` (`score_extraction_token`)."""

    good_label: int
    bad_label: int
    tag: str = "<extra_0>"
    token: str = "<extra_0>"
    name: str = "prm"
    path: str = "/v1/score"
    launch_flags: str = "--disable-radix-cache --chunked-prefill-size -1"

    def prepare(
        self, request: RewardRequest, priority: int | None, cache: PrefixScores
    ) -> RewardCall:
        # One forward pass reads every tag, so there is nothing to save by caching; /v1/score
        # carries no rid: aborting it means closing the connection.
        body = {
            "query": request.prompt,
            "items": ["".join(step + self.tag for step in request.steps)],
            "label_token_ids": [self.good_label, self.bad_label],
            "apply_softmax": True,
            "score_extraction_token": self.token,
        }
        return RewardCall(body, (), (), (None,) * len(request.steps))

    def step_scores(
        self, request: RewardRequest, call: RewardCall, answer: Any, cache: PrefixScores
    ) -> tuple[float, ...]:
        scores = answer.get("scores") if isinstance(answer, dict) else None
        if not isinstance(scores, list) or len(scores) != 1 or not isinstance(scores[0], list):
            raise EngineError(f"unexpected /v1/score answer: {str(answer)[:200]}")
        rows = scores[0]
        if len(rows) != len(request.steps):
            raise EngineError(
                f"/v1/score found {len(rows)} step tags ({self.token!r}) in a path of "
                f"{len(request.steps)} steps; check the style's tag and token options"
            )
        out = []
        for row in rows:
            if not isinstance(row, list) or len(row) != 2:
                raise EngineError(f"/v1/score row {row!r:.100} is not [p_good, p_bad]")
            out.append(min(1.0, max(0.0, _number(row[0], "a /v1/score probability"))))
        return tuple(out)


STYLE_NAMES = ("classify", "prm")


def _unescape(text: str) -> str:
    """Backslash escapes in option values: \\n \\t \\, \\\\ (so a tag can hold a newline)."""
    out, i = [], 0
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text):
            nxt = text[i + 1]
            out.append({"n": "\n", "t": "\t"}.get(nxt, nxt))
            i += 2
            continue
        out.append(c)
        i += 1
    return "".join(out)


def _split_options(text: str) -> dict[str, str]:
    options: dict[str, str] = {}
    part, parts, escaped = [], [], False
    for c in text:
        if escaped:
            part.append("\\" + c)
            escaped = False
        elif c == "\\":
            escaped = True
        elif c == ",":
            parts.append("".join(part))
            part = []
        else:
            part.append(c)
    parts.append("".join(part))
    for item in filter(None, parts):
        key, eq, value = item.partition("=")
        if not eq:
            raise UserError(f"reward style option '{item}' is not KEY=VALUE")
        options[key.strip()] = _unescape(value)
    return options


def parse_reward_style(
    text: str, server_model_info: Mapping[str, Any] | None = None
) -> RewardStyle:
    """`classify[:scores=logit|probability]` or `prm:labels=GOOD/BAD[,tag=T][,token=K]`.

    `server_model_info` is the reward server's `/get_model_info`; spex serve says there that its
    `/classify` scores are probabilities, which sets the classify default.
    """
    name, _, rest = text.strip().partition(":")
    options = _split_options(rest)
    if name == "classify":
        scores = options.pop("scores", None)
        if scores is None:
            spex = (server_model_info or {}).get("spex")
            declared = spex.get("classify_scores") if isinstance(spex, dict) else None
            scores = "probability" if declared == "probability" else "logit"
        if scores not in ("logit", "probability"):
            raise UserError(
                f"reward style classify: scores must be logit or probability, not {scores}"
            )
        _no_more(name, options)
        return ClassifyStyle(probability=scores == "probability")
    if name == "prm":
        labels = options.pop("labels", None)
        if labels is None:
            raise UserError(
                "reward style prm needs labels=GOOD/BAD: the token ids of the PRM's good and bad "
                "labels (e.g. prm:labels=648/387 for Math-Shepherd's '+' and '-')"
            )
        good, _, bad = labels.partition("/")
        try:
            good_id, bad_id = int(good), int(bad)
        except ValueError:
            raise UserError(
                f"reward style prm: labels must be two token ids, not {labels}"
            ) from None
        tag = options.pop("tag", "<extra_0>")
        token = options.pop("token", tag)
        if not tag or not token:
            raise UserError("reward style prm: tag and token must not be empty")
        _no_more(name, options)
        return PrmStyle(good_label=good_id, bad_label=bad_id, tag=tag, token=token)
    raise UserError(f"unknown reward style '{name}': choose one of {', '.join(STYLE_NAMES)}")


def _no_more(name: str, options: Mapping[str, str]) -> None:
    if options:
        raise UserError(f"reward style {name} has no option {', '.join(sorted(options))}")
