"""The synthetic reasoning task: parents found by text, deterministic steps, plausible answers."""

from __future__ import annotations

from runtime.engines.protocol import FinishReason
from runtime.engines.sim.task import QuestionIndex, SyntheticTask

DELIM = "\n\n"
ANSWERS = {"What is 6 times 7?": "42", "Simplify $\\frac{2}{4}$.": "\\frac{1}{2}"}


def test_question_index_finds_a_question_inside_a_template() -> None:
    index = QuestionIndex(ANSWERS)
    assert index.find("What is 6 times 7?") == ("What is 6 times 7?", "42")
    found = index.find("<|user|>Solve: Simplify $\\frac{2}{4}$.\nThink step by step.")
    assert found == ("Simplify $\\frac{2}{4}$.", "\\frac{1}{2}")
    assert index.find("Something else entirely") is None


def test_steps_are_a_function_of_text_and_seed() -> None:
    task = SyntheticTask(ANSWERS, seed=1)
    a = task.step("Q: What is 6 times 7?\n", DELIM, 5, 512)
    b = task.step("Q: What is 6 times 7?\n", DELIM, 5, 512)
    c = task.step("Q: What is 6 times 7?\n", DELIM, 6, 512)
    assert (a.text, a.completion_tokens) == (b.text, b.completion_tokens)
    assert a.text != c.text
    other_engine = SyntheticTask(ANSWERS, seed=2).step("Q: What is 6 times 7?\n", DELIM, 5, 512)
    assert other_engine.text != a.text


def test_a_request_continues_the_node_its_text_names() -> None:
    task = SyntheticTask(ANSWERS, seed=0)
    prompt = "Q: What is 6 times 7?\n"
    first = task.step(prompt, DELIM, 1, 512)
    assert first.child.depth == 1 and first.parent.depth == 0
    second = task.step(prompt + first.text + DELIM, DELIM, 1, 512)
    assert second.parent is first.child and second.child.depth == 2
    # The prompt of a continuation is the parent's tokens plus the delimiter.
    assert second.prompt_tokens == first.child.ctx_tokens + 1
    # Text the sim never generated starts a new root.
    stranger = task.step(prompt + "I made this up." + DELIM, DELIM, 1, 512)
    assert stranger.parent.depth == 0 and stranger.parent is not first.parent


def test_paths_end_with_the_reference_or_a_shared_wrong_answer() -> None:
    task = SyntheticTask(ANSWERS, seed=0)
    prompt = "Q: What is 6 times 7?\n"
    answers: list[str] = []
    for seed in range(300):
        text = prompt
        for _ in range(40):
            step = task.step(text, DELIM, seed, 4096)
            if step.child.terminal:
                assert step.text.startswith("The answer is: ")
                answers.append(step.text.removeprefix("The answer is: "))
                assert step.child.correct == (answers[-1] == "42")
                break
            assert step.text.startswith(f"Step {step.child.depth}: ")
            text += step.text + DELIM
    assert len(answers) == 300  # every path ends (terminal probability rises with depth)
    distinct = set(answers)
    assert len(distinct) <= 4  # the reference plus at most three wrong answers
    assert len(distinct - {"42"}) >= 1


def test_steps_longer_than_the_limit_are_cut() -> None:
    task = SyntheticTask(ANSWERS, seed=0)
    lengths = [task.step("Q: What is 6 times 7?\n", DELIM, s, 10_000) for s in range(200)]
    assert len({s.completion_tokens for s in lengths}) > 20  # a spread of lengths
    longest = max(lengths, key=lambda s: s.completion_tokens)
    seed = lengths.index(longest)
    cut = SyntheticTask(ANSWERS, seed=0).step("Q: What is 6 times 7?\n", DELIM, seed, 5)
    assert cut.finish_reason == FinishReason.LENGTH and cut.completion_tokens == 5
    assert not cut.child.terminal


def test_unknown_questions_get_a_stable_reference() -> None:
    one = SyntheticTask({}, seed=0).step("Q: a question nobody listed\n", DELIM, 0, 512)
    two = SyntheticTask({}, seed=0).step("Q: a question nobody listed\n", DELIM, 0, 512)
    assert one.parent.root.reference == two.parent.root.reference
    assert set(one.parent.root.wrong_answers).isdisjoint({one.parent.root.reference})


def test_path_nodes_find_each_step() -> None:
    task = SyntheticTask(ANSWERS, seed=0)
    prompt = "Q: What is 6 times 7?\n"
    first = task.step(prompt, DELIM, 1, 512)
    second = task.step(prompt + first.text + DELIM, DELIM, 1, 512)
    nodes = task.path_nodes(prompt, (first.text, second.text), DELIM)
    assert nodes == [first.child, second.child]
    assert task.path_nodes(prompt, ("never generated",), DELIM) == [None]


def test_path_nodes_accept_a_root_rendered_with_a_trailing_delimiter() -> None:
    task = SyntheticTask(ANSWERS, seed=0)
    prompt = "Q: What is 6 times 7?"
    first = task.step(prompt + DELIM, DELIM, 1, 512)
    second = task.step(prompt + DELIM + first.text + DELIM, DELIM, 1, 512)
    assert second.parent is first.child
    assert task.path_nodes(prompt, (first.text, second.text), DELIM) == [first.child, second.child]
    assert task.path_nodes(prompt + DELIM, (first.text,), DELIM) == [first.child]
