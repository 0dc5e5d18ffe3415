"""How a request's plain text becomes the token ids an instruct model expects.

The executor sends plain text: the rendered `.spx` prompt, then the path's steps, each followed
by the step delimiter. An instruct model needs its chat template, so the text is split in two:
the root prompt becomes the user turn, and the steps so far become the start of the assistant
turn, which the model continues. The root prompt is recognised without any help from the
request: the executor always generates a root's children (whose text is exactly the root
prompt) before any deeper node, so every text that extends no known root is recorded as a root,
and a later text is split at the longest recorded root it starts with. Deterministic for a
given search: the same text always renders the same way once its root has been seen.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

MAX_ROOTS = 4096  # recorded root prompts (least recently used are forgotten)


class PromptRenderer:
    """Turns request text into token ids, through the chat template when the model has one."""

    def __init__(self, tokenizer: Any, use_chat_template: bool = True) -> None:
        self.tokenizer = tokenizer
        self.use_chat_template = use_chat_template and bool(
            getattr(tokenizer, "chat_template", None)
        )
        self._roots: OrderedDict[str, str] = OrderedDict()  # root prompt -> its rendered turn

    def split(self, text: str) -> tuple[str, str]:
        """The root prompt a text starts with, and the steps after it (recording new roots)."""
        best = ""
        for root in self._roots:
            if len(root) > len(best) and text.startswith(root):
                best = root
        if not best:
            best = text
            self._roots[text] = self._render_turn(text)
            while len(self._roots) > MAX_ROOTS:
                self._roots.popitem(last=False)
        self._roots.move_to_end(best)
        return best, text[len(best) :]

    def _render_turn(self, prompt: str) -> str:
        if not self.use_chat_template:
            return prompt
        messages = [{"role": "user", "content": prompt.strip()}]
        rendered: str = self.tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True
        )
        return rendered

    def render(self, text: str) -> str:
        """The full text the model sees for a request."""
        root, steps = self.split(text)
        return self._roots[root] + steps

    def encode(self, text: str) -> tuple[int, ...]:
        """Token ids of the rendered request text."""
        return self.encode_rendered(self.render(text))

    def encode_rendered(self, rendered: str) -> tuple[int, ...]:
        """Token ids of already rendered text (special tokens in it are parsed as such)."""
        ids = self.tokenizer(rendered, add_special_tokens=not self.use_chat_template)["input_ids"]
        return tuple(int(i) for i in ids)

    def chat(self, messages: list[dict[str, str]], assistant_prefix: str = "") -> str:
        """A conversation rendered for the model (used by the judge reward)."""
        if not self.use_chat_template:
            return "\n\n".join(m["content"] for m in messages) + "\n" + assistant_prefix
        rendered: str = self.tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True
        )
        return rendered + assistant_prefix
