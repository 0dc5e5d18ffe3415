"""Checking one `model` declaration: a generate role, a reward role (maybe served by a generate
role through a prompt, a "judge"), or a lookahead value.

```
model policy = generate(temperature = 0.7, max_tokens = 256)
model prm    = reward(aggregate = last)
model value  = reward(judge = policy, prompt = "...{path}...", verdict = logprobs(sure = 1.0, ...))
model look   = lookahead(prm, policy = greedy, steps = 2)
```

Every argument is fixed before the run: it may read parameters and literals only.
"""

from __future__ import annotations

from collections.abc import Mapping

from spexlang import ast
from spexlang.check_expr import ExprChecker, constant_context
from spexlang.checked import CheckedJudge, CheckedLookahead, CheckedModel, ValueType
from spexlang.scope import suggestion

MODEL_KINDS = ("generate", "reward", "lookahead")
AGGREGATES = ("last", "min", "prod", "mean")
VERDICT_READS = ("logprobs", "text")
GENERATE_OPTIONS: Mapping[str, ValueType] = {
    "temperature": ValueType.FLOAT,
    "top_p": ValueType.FLOAT,
    "top_k": ValueType.INT,
    "max_tokens": ValueType.INT,
}
_KNOWN = {
    "generate": (*GENERATE_OPTIONS, "stop"),
    "reward": ("aggregate", "judge", "prompt", "verdict", "samples", "max_tokens"),
    "lookahead": ("policy", "steps"),
}
_JUDGE_ONLY = ("prompt", "verdict", "samples", "max_tokens")


class ModelChecker:
    """Checks model declarations against the scope the checker has built."""

    def __init__(self, exprs: ExprChecker) -> None:
        self.exprs = exprs
        self.reporter = exprs.reporter

    def check(self, decl: ast.ModelDecl) -> CheckedModel | None:
        kind = decl.kind.text
        if kind not in MODEL_KINDS:
            self.reporter.error(
                f"unknown model kind `{kind}`; a model is `generate(...)`, `reward(...)` or "
                f"`lookahead(...)`{suggestion(kind, MODEL_KINDS)}",
                decl.kind,
            )
            return None
        positional, given = self._arguments(decl, kind)
        if kind == "lookahead":
            return self._lookahead(decl, positional, given)
        for arg in positional:
            self.reporter.error(f"model arguments are named, e.g. `{_KNOWN[kind][0]} = ...`", arg)
        if kind == "reward":
            judge = self._judge(decl, given)
            aggregate = self._aggregate(given.get("aggregate"))
            return CheckedModel(decl.name.text, kind, decl, {}, aggregate=aggregate, judge=judge)
        stop = self._stop(given.pop("stop", None))
        for key, value in given.items():
            self.exprs.expect(value, constant_context(key), GENERATE_OPTIONS[key])
        return CheckedModel(decl.name.text, kind, decl, given, stop=stop)

    def _arguments(
        self, decl: ast.ModelDecl, kind: str
    ) -> tuple[list[ast.Expression], dict[str, ast.Expression]]:
        known = _KNOWN[kind]
        positional: list[ast.Expression] = []
        given: dict[str, ast.Expression] = {}
        for arg in decl.arguments:
            if arg.keyword is None:
                positional.append(arg.value)
                continue
            key = arg.keyword.text
            if key not in known:
                self.reporter.error(
                    f"unknown argument `{key}` for a {kind} model (its arguments: "
                    f"{', '.join(known)}){suggestion(key, known)}",
                    arg.keyword,
                )
            elif key in given:
                self.reporter.error(f"`{key}` is given twice", arg.keyword)
            else:
                given[key] = arg.value
        return positional, given

    def _aggregate(self, value: ast.Expression | None) -> str:
        if value is None:
            return "last"
        name = value.name if isinstance(value, ast.Var) else ""
        if name not in AGGREGATES:
            shown = f"`{name}`" if name else "this"
            self.reporter.error(
                f"unknown aggregate {shown}; the aggregates are last, min, prod and mean"
                f"{suggestion(name, AGGREGATES)}",
                value,
            )
        return name

    def _stop(self, value: ast.Expression | None) -> tuple[str, ...]:
        if value is None:
            return ()
        items = value.items if isinstance(value, ast.ListLit) else (value,)
        out: list[str] = []
        for item in items:
            if not isinstance(item, ast.StringLit) or not item.value:
                self.reporter.error(
                    'stop takes a list of non-empty strings, e.g. `stop = ["\\n\\n"]`', item
                )
                continue
            out.append(item.value)
        return tuple(out)

    def _generate_role(self, value: ast.Expression, what: str) -> str | None:
        """The generate model `value` names, or None after reporting."""
        name = value.name if isinstance(value, ast.Var) else ""
        model = self.exprs.scope.models.get(name)
        if model is not None and model.kind == "generate":
            return name
        if model is not None:
            self.reporter.error(
                f"`{name}` is a {model.kind or 'broken'} model; {what} needs a generate model",
                value,
            )
            return None
        generators = self.exprs.scope.generate_models()
        shown = f"`{name}`" if name else "this"
        self.reporter.error(
            f"{what} needs the name of a generate model, and {shown} is not one"
            f"{suggestion(name, generators) if name else ''}",
            value,
        )
        return None

    # -- judges

    def _judge(
        self, decl: ast.ModelDecl, given: Mapping[str, ast.Expression]
    ) -> CheckedJudge | None:
        if "judge" not in given:
            for key in _JUDGE_ONLY:
                if key in given:
                    self.reporter.error(
                        f"`{key}` belongs to a judge: add `judge = policy` (the generate model "
                        "that answers the prompt)",
                        given[key],
                    )
            return None
        generator = self._generate_role(given["judge"], "`judge`")
        prompt = given.get("prompt")
        if not isinstance(prompt, ast.StringLit):
            self.reporter.error(
                'a judge needs `prompt = "..."`, a string with {path} where the node\'s steps go',
                prompt if prompt is not None else decl,
            )
            return None
        if "{path}" not in prompt.value:
            self.reporter.error(
                "the judge's prompt must contain {path}, where the node's steps go", prompt
            )
        verdict = given.get("verdict")
        read, verdicts = self._verdict(verdict, decl)
        for key in ("samples", "max_tokens"):
            if key in given:
                self.exprs.expect(given[key], constant_context(key), ValueType.INT)
        if "samples" in given and read == "logprobs":
            self.reporter.error(
                "`samples` applies to `verdict = text(...)`; log-probabilities need one call",
                given["samples"],
            )
        if generator is None or read is None:
            return None
        return CheckedJudge(
            generator,
            prompt.value,
            read,
            verdicts,
            given.get("samples"),
            given.get("max_tokens"),
            decl,
        )

    def _verdict(
        self, verdict: ast.Expression | None, decl: ast.ModelDecl
    ) -> tuple[str | None, tuple[tuple[str, ast.Expression], ...]]:
        example = "`verdict = logprobs(sure = 1.0, likely = 0.5, impossible = 0.0)`"
        if not isinstance(verdict, ast.CallExpr) or verdict.function.text not in VERDICT_READS:
            where: ast.Node = verdict if verdict is not None else decl
            if isinstance(verdict, ast.CallExpr):
                where = verdict.function
            word = verdict.function.text if isinstance(verdict, ast.CallExpr) else ""
            self.reporter.error(
                f"a judge needs `verdict = logprobs(WORD = SCORE, ...)` or `verdict = text(WORD = "
                f"SCORE, ...)`, e.g. {example}{suggestion(word, VERDICT_READS) if word else ''}",
                where,
            )
            return None, ()
        out: list[tuple[str, ast.Expression]] = []
        seen: set[str] = set()
        duplicated = False
        for arg in verdict.arguments:
            if arg.keyword is None:
                self.reporter.error(f"each verdict is `WORD = SCORE`, e.g. {example}", arg.value)
                continue
            word = arg.keyword.text
            if word.lower() in seen:
                self.reporter.error(
                    f"the verdict `{word}` is given twice (verdicts match case-insensitively)",
                    arg.keyword,
                )
                duplicated = True
                continue
            seen.add(word.lower())
            if self.exprs.expect(arg.value, constant_context(f"score of {word}"), ValueType.FLOAT):
                out.append((word, arg.value))
        if len(seen) < 2 and not duplicated:
            self.reporter.error(f"a judge needs two verdicts or more, e.g. {example}", verdict)
            return None, ()
        return verdict.function.text, tuple(out)

    # -- lookahead

    def _lookahead(
        self,
        decl: ast.ModelDecl,
        positional: list[ast.Expression],
        given: Mapping[str, ast.Expression],
    ) -> CheckedModel | None:
        usage = "write `lookahead(prm, policy = greedy, steps = 2)`"
        if len(positional) != 1:
            self.reporter.error(
                f"`lookahead` takes one reward model to score the continuation; {usage}", decl
            )
            return None
        reward = positional[0]
        name = reward.name if isinstance(reward, ast.Var) else ""
        model = self.exprs.scope.models.get(name)
        reward_role: str | None = None
        if model is not None and model.kind == "reward":
            reward_role = name
        else:
            hint = suggestion(name, self.exprs.scope.reward_models()) if name else ""
            self.reporter.error(
                "`lookahead` scores the continuation with a reward model declared with "
                f"`reward(...)`{hint}",
                reward,
            )
        if "policy" not in given or "steps" not in given:
            missing = "policy" if "policy" not in given else "steps"
            self.reporter.error(f"`lookahead` needs `{missing} = ...`; {usage}", decl)
            return None
        policy = self._generate_role(given["policy"], "`policy`")
        steps_ok = self.exprs.expect(given["steps"], constant_context("steps"), ValueType.INT)
        if reward_role is None or policy is None or not steps_ok:
            return None
        return CheckedModel(
            decl.name.text,
            "lookahead",
            decl,
            {},
            lookahead=CheckedLookahead(reward_role, policy, given["steps"]),
        )
