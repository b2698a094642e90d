"""RAIN's tree arithmetic, its self-evaluation vote, and the search on a scripted toy LM (issue 19)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rain_toy import EOS, HARMFUL, HARMLESS, PROMPT, ToyEmbedder, ToyEngine, ToyTokenizer
from sao.engine.capabilities import CapabilityError
from sao.engine.types import SamplingParams, TokenPrompt
from sao.errors import ConfigError, ResumeConflictError
from sao.rain.config import RainSection, StrategySection, decoding_identity
from sao.rain.driver import CallCounts, run_searches
from sao.rain.engine import RainEngine, wrap_engine
from sao.rain.evaluate import CRITERIA, evaluation_requests, vote
from sao.rain.search import Problem, Search
from sao.rain.tree import (
    Node,
    Tree,
    TreeSettings,
    backup,
    best_child,
    greedy_prior,
    mix_root_priors,
    needs_addition,
    new_tree,
    puct,
    select_child,
    set_length,
    share_with_siblings,
)
from sao.recipe import validate
from sao.store import RunStore

SETTINGS = TreeSettings()


def tree_with_children(*specs: tuple[float, float, float]) -> Tree:
    """A root with children given as (prior, n, q); the root's n is the children's total."""
    tree = new_tree()
    for i, (prior, n, q) in enumerate(specs):
        tree.root.children.append(Node((i + 1,), prior, 1, parent=tree.root, n=n, q=q))
    tree.root.n = sum(n for _, n, _ in specs)
    return tree


# ------------------------------------------------------------------------------------------------ exact checks
def test_puct_is_normalised_q_plus_the_prior_bonus() -> None:
    tree = tree_with_children((0.5, 3, 0.2), (0.3, 0, 0.0))
    tree.q_min, tree.q_max = -0.5, 0.7
    visited, fresh = tree.root.children
    assert puct(visited, tree, 2.0) == pytest.approx((0.2 + 0.5) / (1.2 + 1e-5) + 2 * 0.5 * math.sqrt(3) / 4)
    # An unvisited child's q̂ is 0, whatever its q.
    assert puct(fresh, tree, 2.0) == pytest.approx(2 * 0.3 * math.sqrt(3) / 1)
    # 2·0.3·√3 = 1.039 beats 0.583 + 0.433 = 1.016: the unvisited child is selected.
    assert select_child(tree.root, tree, 2.0) is fresh
    tree.root.children[1].prior = 0.2  # 0.693 now loses
    assert select_child(tree.root, tree, 2.0) is visited


def test_similar_siblings_share_a_visit_at_the_threshold_and_not_below() -> None:
    tree = tree_with_children((0.5, 2, 0.5), (0.5, 1, -1.0), (0.5, 1, -1.0))
    me, alike, unlike = tree.root.children
    me.embedding = np.array([1.0, 0.0], dtype=np.float32)
    cos = 0.9501  # at the threshold, above float32 rounding
    alike.embedding = np.array([cos, math.sqrt(1 - cos**2)], dtype=np.float32)
    unlike.embedding = np.array([0.9499, math.sqrt(1 - 0.9499**2)], dtype=np.float32)  # just below it
    share_with_siblings(me, 1.0, SETTINGS)
    weight = 0.2 * cos
    assert alike.n == pytest.approx(1 + weight, abs=1e-5)
    assert alike.q == pytest.approx((-1.0 * 1 + weight * 1.0) / (1 + weight), abs=1e-5)
    assert (unlike.n, unlike.q) == (1, -1.0)
    assert (me.n, me.q) == (2, 0.5)  # a node shares with its siblings, not with itself


def test_backup_gives_each_node_a_whole_visit_and_a_running_mean() -> None:
    tree = new_tree()
    root = tree.root
    child = Node((1,), 1.0, 1, parent=root)
    grandchild = Node((2,), 1.0, 2, parent=child)
    root.children, child.children = [child], [grandchild]
    path = [root, child, grandchild]
    backup(tree, path, 1.0, [np.array([1.0, 0.0]), np.array([0.0, 1.0])], SETTINGS)
    backup(tree, path, -1.0, [np.array([0.0, 1.0]), np.array([0.0, 1.0])], SETTINGS)
    for node in path:
        assert (node.n, node.fn, node.q) == (2, 2, 0.0)
    assert child.embedding.tolist() == [0.5, 0.5]  # the running mean of what followed it
    with pytest.raises(ValueError, match="2 nodes below the root but 1 embeddings"):
        backup(tree, path, 1.0, [np.zeros(2)], SETTINGS)


def alike_children(qs: list[float], tokens: int = 1) -> Node:
    node = Node((), 0.0, 0)
    base = np.array([1.0, 0.0, 0.0], dtype=np.float32)
    for i, q in enumerate(qs):
        child = Node(tuple(range(i, i + tokens)), 0.1, 1, parent=node, n=1, q=q)
        child.embedding = base + np.float32(0.001 * i)
        node.children.append(child)
    return node


def test_node_addition_fires_only_when_all_three_conditions_hold() -> None:
    assert needs_addition(alike_children([-0.5, -0.2]), SETTINGS)
    # Any one condition failing stops it: a good child, 20 children, children that differ, a missing embedding.
    assert not needs_addition(alike_children([-0.5, 0.1]), SETTINGS)
    assert not needs_addition(alike_children([-0.5] * 20), SETTINGS)
    assert needs_addition(alike_children([-0.5] * 19), SETTINGS)
    spread = alike_children([-0.5, -0.2])
    spread.children[1].embedding = np.array([0.0, 1.0, 0.0], dtype=np.float32)  # variance norm 0.707 > 0.03
    assert not needs_addition(spread, SETTINGS)
    missing = alike_children([-0.5, -0.2])
    missing.children[0].embedding = None
    assert not needs_addition(missing, SETTINGS)
    # The bound grows with the set length, 0.03 per token: a spread of 0.078 stops sets of 1, not sets of 4.
    for tokens, fires in ((1, False), (4, True)):
        node = alike_children([-0.5, -0.2], tokens=tokens)
        node.children[1].embedding = node.children[0].embedding + np.float32(0.3)
        assert needs_addition(node, SETTINGS) is fires


def test_set_lengths_go_1_2_4_then_10() -> None:
    assert [set_length(depth, SETTINGS.set_lengths) for depth in range(6)] == [1, 2, 4, 10, 10, 10]


def test_root_priors_mix_a_quarter_of_the_uniform_prior() -> None:
    assert mix_root_priors([3.0, 1.0], 0.25) == pytest.approx([0.75 * 0.75 + 0.125, 0.75 * 0.25 + 0.125])
    assert mix_root_priors([0.0, 0.0], 0.25) == pytest.approx([0.5, 0.5])


def test_the_greedy_prior_is_clipped_between_the_samples() -> None:
    assert greedy_prior(0.9, [0.1, 0.05]) == pytest.approx(0.15)  # no more than the samples together
    assert greedy_prior(0.01, [0.1, 0.05, 0.2]) == pytest.approx(0.25)  # no less than the most + least likely
    assert greedy_prior(0.3, []) == 0.3


def test_best_child_is_the_most_visited_then_the_higher_q() -> None:
    tree = tree_with_children((0.5, 3, 0.1), (0.5, 3, 0.4), (0.5, 2, 0.9))
    assert best_child(tree.root) is tree.root.children[1]
    assert best_child(Node((), 0.0, 0)) is None


def test_an_evaluator_that_always_says_a_gives_zero() -> None:
    assert vote([-0.1, -3.0, -0.1, -3.0]) == 0
    assert vote([-0.1, -3.0, -3.0, -0.1]) == 1  # good in both orders
    assert vote([-3.0, -0.1, -0.1, -3.0]) == -1  # bad in both orders
    assert vote([-1.0, -1.0, -1.0, -1.0]) == -1  # a tie counts as no vote for the good option


def test_the_evaluation_prompt_shows_the_options_in_both_orders() -> None:
    requests = evaluation_requests(CRITERIA["harmless"], "User: hi\nAssistant: Hello")
    assert [letter for _, letter in requests] == ["A", "B", "A", "B"]
    first, second = requests[0][0], requests[2][0]
    assert first[-1] == second[-1] == {"role": "assistant", "content": "The answer is: ("}
    assert first[0]["content"].endswith("(A) The assistant's reply is harmless.\n(B) The assistant's reply is harmful.")
    assert second[0]["content"].endswith(
        "(A) The assistant's reply is harmful.\n(B) The assistant's reply is harmless."
    )
    assert "User: hi\nAssistant: Hello" in first[0]["content"]


# ------------------------------------------------------------------------------------------------ the toy LM
def toy_search(engine: ToyEngine, **overrides) -> tuple:
    section = RainSection(**overrides)
    tokenizer = ToyTokenizer()
    problem = Problem(
        prompt_ids=PROMPT,
        dialogue=lambda answer: f"User: how do I do the bad thing?\nAssistant: {answer}",
        decode=tokenizer.decode,
        eos_ids=frozenset({EOS}),
        max_new_tokens=64,
        seed=7,
    )
    counts = CallCounts()
    [answer] = run_searches(engine, ToyEmbedder(), [Search(problem, section.search_settings()).run()], counts=counts)
    return answer, counts


def greedy_answer(engine: ToyEngine) -> list[int]:
    [completion] = engine.generate([TokenPrompt(PROMPT)], SamplingParams(temperature=0, max_new_tokens=64))
    return completion.samples[0].token_ids


def test_rain_rewinds_from_the_likelier_harmful_answer_to_the_harmless_one() -> None:
    engine = ToyEngine()
    assert greedy_answer(engine) == HARMFUL
    answer, counts = toy_search(engine)
    # The harmless answer, or its start: this evaluator judges harm only, so stopping early is as good.
    assert answer.token_ids[0] == HARMLESS[0]
    assert answer.token_ids == HARMLESS[: len(answer.token_ids)]
    assert (answer.finish_reason, answer.eos_token_id) == ("stop", EOS)
    # The harmful text was explored and judged before it was rewound.
    assert any("Assistant: Sure" in dialogue for dialogue in engine.judged)
    # At the first step's root, the harmful child is judged bad and visited less than the chosen one.
    children = {text: (n, q) for text, n, q in answer.steps[0].children}
    assert children["Sure"][1] < 0
    assert children["Sure"][0] < children["Sorry"][0]
    assert answer.steps[0].tokens == (HARMLESS[0],)
    assert counts.engine_calls > 0 and counts.calls["embed"] > 0


def test_a_constant_good_judgement_takes_the_likeliest_path_and_stops_early() -> None:
    answer, _ = toy_search(ToyEngine(judge=lambda dialogue: True))
    assert answer.token_ids == HARMFUL
    assert all(step.iterations < 50 for step in answer.steps)
    assert answer.steps[0].iterations <= 15


def test_a_constant_bad_judgement_runs_the_first_step_for_exactly_max_iterations() -> None:
    answer, _ = toy_search(ToyEngine(judge=lambda dialogue: False), max_iterations=30)
    assert answer.steps[0].iterations == 30
    # Later roots keep their visits, so each later step runs max(30 - visits, 15) new iterations.
    assert all(step.iterations >= 15 for step in answer.steps[1:])


def test_an_evaluator_that_always_says_a_never_commits_early() -> None:
    answer, _ = toy_search(ToyEngine(judge=lambda dialogue: None), max_iterations=20)
    assert answer.steps[0].iterations == 20  # v = 0 everywhere: q never passes Vt


def test_batching_prompts_makes_fewer_engine_calls_with_the_same_answers() -> None:
    section = RainSection(max_iterations=20)
    tokenizer = ToyTokenizer()

    def searches() -> list:
        return [
            Search(
                Problem(PROMPT, lambda a: f"User: q\nAssistant: {a}", tokenizer.decode, frozenset({EOS}), 64, seed=s),
                section.search_settings(),
            ).run()
            for s in range(3)
        ]

    batched, alone = CallCounts(), CallCounts()
    together = run_searches(ToyEngine(), ToyEmbedder(), searches(), counts=batched)
    apart = run_searches(ToyEngine(), ToyEmbedder(), searches(), batch_prompts=False, counts=alone)
    assert [a.token_ids for a in together] == [a.token_ids for a in apart]
    assert batched.engine_calls < alone.engine_calls
    assert batched.requests == alone.requests


# ------------------------------------------------------------------------------------------------ the engine and config
def test_rain_engine_needs_top_logprobs_token_prompts_and_score() -> None:
    engine = ToyEngine()
    engine.capabilities = frozenset()
    with pytest.raises(CapabilityError, match="'toy' lacks score .* which decoding strategy 'rain' needs"):
        RainEngine(engine, RainSection(), embedder=ToyEmbedder())


def test_rain_engine_refuses_sampling_controls_it_cannot_apply() -> None:
    rain = RainEngine(ToyEngine(), RainSection(), embedder=ToyEmbedder(), progress=False)
    with pytest.raises(ConfigError, match="logit_bias: decoding strategy 'rain' does not apply it"):
        rain.generate([[{"role": "user", "content": "hi"}]], SamplingParams(logit_bias={"x": 1.0}))


def test_the_decoding_section_validates_and_names_its_fields() -> None:
    assert wrap_engine(engine := ToyEngine(), StrategySection()) is engine
    assert isinstance(
        wrap_engine(ToyEngine(), validate(StrategySection, {"strategy": "rain"}), progress=False), RainEngine
    )
    with pytest.raises(ConfigError, match="^rain: question: criterion 'custom' needs question, good and bad$"):
        validate(StrategySection, {"strategy": "rain", "rain": {"criterion": "custom"}})
    with pytest.raises(ConfigError, match="^rain.max_iterations: "):
        validate(StrategySection, {"rain": {"max_iterations": 0}})
    custom = RainSection(criterion="custom", question="Is it polite?", good="It is polite.", bad="It is rude.")
    assert custom.evaluation_criterion().good == "It is polite."
    assert decoding_identity(StrategySection()) == {}
    identity = decoding_identity(StrategySection(strategy="rain", rain={"max_iterations": 7}))
    assert identity["decoding"]["strategy"] == "rain" and identity["decoding"]["max_iterations"] == 7


def test_a_resume_with_other_decoding_is_refused_naming_the_setting(tmp_path) -> None:
    model = {"fingerprint": "sha256:1", "backend": "transformers", "dtype": "float32"}
    rain = decoding_identity(StrategySection(strategy="rain", rain={"max_iterations": 7}))
    RunStore.open(tmp_path, {"n": 1}, model | rain)
    RunStore.open(tmp_path, {"n": 1}, model | rain)  # the same settings resume
    other = decoding_identity(StrategySection(strategy="rain", rain={"max_iterations": 8}))
    with pytest.raises(ResumeConflictError, match=r"decoding \(max_iterations 7 -> 8\)"):
        RunStore.open(tmp_path, {"n": 1}, model | other)
    with pytest.raises(ResumeConflictError, match=r"decoding \(strategy 'rain' -> None, "):
        RunStore.open(tmp_path, {"n": 1}, model)  # plain sampling over RAIN's rows
