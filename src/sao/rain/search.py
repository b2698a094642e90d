"""One prompt's RAIN search, written as a coroutine that yields engine requests and receives their results.

The search is sequential within a prompt (each iteration walks the tree the last one changed), but the
requests of many prompts in flight can share one engine call: `sao.rain.driver` runs the coroutines side by
side and batches what they yield. A coroutine yields a list of requests and gets back the list of results,
in order; it returns a `RainAnswer`.

One inner iteration (the reference's ``search``): walk from the root by PUCT, adding a child where the
children are alike and all bad; roll out from the leaf to the end of the sentence; have the model judge the
text; expand the leaf into candidate token sets; back the judgement up with the embeddings of what followed
each node. The outer loop commits the most visited child of the root once it is visited and judged well
enough, or when the iteration budget is spent, and keeps its subtree.
"""

from __future__ import annotations

import math
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from typing import Any

from sao.engine.types import FinishReason, NextTokenLogprobs, SamplingParams, derive_seed
from sao.rain.evaluate import Criterion, evaluation_requests, vote
from sao.rain.tree import (
    Node,
    Tree,
    TreeSettings,
    backup,
    best_child,
    child_priors,
    commit,
    greedy_prior,
    needs_addition,
    new_tree,
    select_child,
    set_length,
)

# A rollout runs to the end of the clause: the reference stops at these characters.
CLAUSE_ENDS = (",", ".", "?", ":", ";", "\n")


@dataclass(frozen=True)
class SearchSettings:
    """The loop's numbers (the official HH defaults) and the tree's; `sao.rain.config` fills them."""

    tree: TreeSettings = field(default_factory=TreeSettings)
    max_iterations: int = 50  # maxT
    min_visits: int = 6  # minT: a step commits once its best child has more whole visits than this...
    value_threshold: float = 0.8  # Vt: ...and a higher q than this
    min_new_iterations: int = 15  # the iterations a step may always run, beyond the root's earlier visits
    width: int = 10  # candidate sets per expansion
    sample_top_k: int = 15  # top-k of the sampled sets longer than one token
    criterion: Criterion | None = None


# ------------------------------------------------------------------------------------------------ requests
@dataclass(frozen=True)
class TopTokens:
    """The ``k`` most likely next tokens after ``ids`` (`Engine.top_logprobs`)."""

    ids: tuple[int, ...]
    k: int


@dataclass(frozen=True)
class Draw:
    """Samples after ``ids`` (`Engine.generate`)."""

    ids: tuple[int, ...]
    params: SamplingParams


@dataclass(frozen=True)
class Score:
    """The log-prob of ``continuation`` after the evaluation chat ``prompt`` (`Engine.score`)."""

    prompt: Any  # a Conversation
    continuation: str


@dataclass(frozen=True)
class Embed:
    texts: tuple[str, ...]


Request = TopTokens | Draw | Score | Embed


@dataclass(frozen=True)
class Problem:
    """What one search answers: the prompt's token ids, how the evaluator shows the conversation, the token
    budget and stop strings of the request, and the seed its samples derive from."""

    prompt_ids: tuple[int, ...]
    dialogue: Any  # callable: answer text -> the dialogue the evaluator reads
    decode: Any  # callable: token ids -> text
    eos_ids: frozenset[int]
    max_new_tokens: int
    stop: tuple[str, ...] = ()
    seed: int = 0


@dataclass
class StepRecord:
    """One committed step: the tokens, the inner iterations it took, and the root's children at commit
    (their text, visits and q), for reports and plots."""

    tokens: tuple[int, ...]
    iterations: int
    children: list[tuple[str, float, float]]


@dataclass
class RainAnswer:
    token_ids: list[int]
    finish_reason: FinishReason
    eos_token_id: int | None
    steps: list[StepRecord]
    evaluations: int  # distinct texts the model judged
    cached_evaluations: int  # judgements reused for a text judged before

    @property
    def iterations(self) -> int:
        return sum(step.iterations for step in self.steps)


Coroutine = Generator[list[Request], list[Any], RainAnswer]


# ------------------------------------------------------------------------------------------------ the search
class Search:
    """The state of one prompt's search; `run` is the coroutine."""

    def __init__(self, problem: Problem, settings: SearchSettings):
        if settings.criterion is None:
            raise ValueError("SearchSettings.criterion: RAIN needs an evaluation criterion")
        self.problem = problem
        self.settings = settings
        self.tree: Tree = new_tree()
        self.answer: list[int] = []
        self.judged: dict[str, int] = {}
        self.cached = 0
        self.draws = 0  # numbers each random request, for its seed

    # -------------------------------------------------------------- helpers
    def _seed(self) -> int:
        self.draws += 1
        return derive_seed(self.problem.seed, self.draws)

    def _budget(self, tokens: Sequence[int]) -> int:
        return self.problem.max_new_tokens - len(tokens)

    def _ends(self, tokens: Sequence[int]) -> bool:
        """Whether an answer of ``tokens`` is over: EOS, a stop string, or the token budget."""
        if any(t in self.problem.eos_ids for t in tokens) or self._budget(tokens) <= 0:
            return True
        text = self.problem.decode(list(tokens))
        return any(s in text for s in self.problem.stop)

    def _sets(self, completions: Sequence[Any]) -> list[tuple[tuple[int, ...], float]]:
        """Candidate sets from sampled completions: each sample's tokens (with the EOS that ended it, so that
        committing it ends the answer) and its probability, distinct sets only, in order."""
        seen, sets = set(), []
        for completion in completions:
            for sample in completion.samples:
                tokens = tuple(sample.token_ids)
                if sample.eos_token_id is not None:
                    tokens += (sample.eos_token_id,)
                if tokens and tokens not in seen:
                    seen.add(tokens)
                    sets.append((tokens, math.exp(sum(sample.logprobs or ()))))
        return sets

    def _set_requests(self, ids: Sequence[int], length: int, samples: int, greedy: bool) -> list[Request]:
        """Draws for sets of ``length`` tokens: the greedy one (if asked) and ``samples`` top-k samples."""
        length = max(1, min(length, self._budget(ids[len(self.problem.prompt_ids) :])))
        prompt = tuple(ids)
        requests: list[Request] = []
        if greedy:
            requests.append(Draw(prompt, SamplingParams(temperature=0, max_new_tokens=length, logprobs=True)))
        if samples:
            sampled = SamplingParams(
                n=samples,
                temperature=1.0,
                top_k=self.settings.sample_top_k,
                max_new_tokens=length,
                seed=self._seed(),
                logprobs=True,
            )
            requests.append(Draw(prompt, sampled))
        return requests

    # -------------------------------------------------------------- expansion and addition
    def _expansion_requests(self, leaf: Node, ids: Sequence[int]) -> list[Request]:
        length = set_length(leaf.depth, self.settings.tree.set_lengths)
        if length == 1:
            return [TopTokens(tuple(ids), self.settings.width)]
        return self._set_requests(ids, length, self.settings.width - 1, greedy=True)

    def _expand(self, leaf: Node, results: list[Any], at_root: bool) -> None:
        """Hang the candidate sets of `_expansion_requests`' results below ``leaf``; a leaf with none (every
        sample empty) is terminal."""
        if isinstance(results[0], NextTokenLogprobs):
            top = results[0]
            sets = [((t,), math.exp(lp)) for t, lp in zip(top.token_ids, top.logprobs)]
        else:
            found = self._sets(results[:1]) + self._sets(results[1:])
            if not found:
                leaf.terminal = True
                return
            greedy, *sampled = found
            sampled = [s for s in sampled if s[0] != greedy[0]][: self.settings.width - 1]
            sets = [(greedy[0], greedy_prior(greedy[1], [p for _, p in sampled])), *sampled]
        priors = child_priors([p for _, p in sets], at_root, self.settings.tree)
        leaf.add_children([(tokens, prior, raw) for (tokens, raw), prior in zip(sets, priors)])

    def _add_child(self, node: Node, ids: Sequence[int]) -> Coroutine:
        """Dynamic node addition: one more candidate, the next likeliest token or a fresh sampled set. Its
        prior is its probability normalised with its siblings' (and mixed at the root)."""
        length = len(node.children[0].tokens)
        if length == 1:
            [top] = yield [TopTokens(tuple(ids), len(node.children) + 1)]
            candidates = [((t,), math.exp(lp)) for t, lp in zip(top.token_ids, top.logprobs)]
        else:
            candidates = self._sets((yield self._set_requests(ids, length, 1, greedy=False)))
        have = {child.tokens for child in node.children}
        new = next((c for c in candidates if c[0] not in have), None)
        if new is None:
            return
        prior = child_priors(
            [child.raw for child in node.children] + [new[1]], node.parent is None, self.settings.tree
        )[-1]
        node.add_children([(new[0], prior, new[1])])

    # -------------------------------------------------------------- one inner iteration
    def _iterate(self) -> Coroutine:
        prompt = self.problem.prompt_ids
        node, path = self.tree.root, [self.tree.root]
        tokens = list(self.answer)
        while not node.is_leaf:
            if needs_addition(node, self.settings.tree):
                yield from self._add_child(node, prompt + tuple(tokens))
            node = select_child(node, self.tree, self.settings.tree.exploration)
            path.append(node)
            tokens.extend(node.tokens)

        ids = prompt + tuple(tokens)
        terminal = node.terminal or self._ends(tokens)
        node.terminal = terminal
        text = self.problem.decode(tokens)
        requests: list[Request] = []
        if not terminal and not text.endswith(CLAUSE_ENDS):
            rollout = SamplingParams(
                temperature=1.0,
                max_new_tokens=self._budget(tokens),
                stop=CLAUSE_ENDS + self.problem.stop,
                seed=self._seed(),
            )
            requests.append(Draw(ids, rollout))
        rolled = len(requests)
        if not terminal:
            requests += self._expansion_requests(node, ids)
        results = (yield requests) if requests else []
        rollout_ids = list(results[0].samples[0].token_ids) if rolled else []
        if not terminal:
            self._expand(node, results[rolled:], at_root=node is self.tree.root)

        full = self.problem.decode(tokens + rollout_ids)
        value = self.judged.get(full)
        suffixes = [
            self.problem.decode([t for n in path[i:] for t in n.tokens] + rollout_ids) for i in range(1, len(path))
        ]
        asks: list[Request] = [Embed(tuple(suffixes))] if suffixes else []
        if value is None:
            dialogue = self.problem.dialogue(full)
            asks += [Score(p, letter) for p, letter in evaluation_requests(self.settings.criterion, dialogue)]
        else:
            self.cached += 1
        answers = (yield asks) if asks else []
        embeddings = list(answers[0]) if suffixes else []
        if value is None:
            value = vote([r.mean for r in answers[1 if suffixes else 0 :]])
            self.judged[full] = value
        backup(self.tree, path, float(value), embeddings, self.settings.tree)

    # -------------------------------------------------------------- the outer loop
    def run(self) -> Coroutine:
        s = self.settings
        steps: list[StepRecord] = []
        while True:
            start = self.tree.root.fn
            iterations = 0
            for _ in range(start, max(s.max_iterations, start + s.min_new_iterations)):
                yield from self._iterate()
                iterations += 1
                best = best_child(self.tree.root)
                if best is not None and best.fn > s.min_visits and best.q > s.value_threshold:
                    break
            move = best_child(self.tree.root)
            if move is None:  # a root that cannot be expanded: the answer ended with it
                break
            children = [(self.problem.decode(list(c.tokens)), c.n, c.q) for c in self.tree.root.children]
            steps.append(StepRecord(move.tokens, iterations, children))
            commit(self.tree, move, s.tree)
            self.answer.extend(move.tokens)
            if self._ends(self.answer):
                break
        return self._finish(steps)

    def _finish(self, steps: list[StepRecord]) -> RainAnswer:
        tokens = self.answer[: self.problem.max_new_tokens]
        cut = next((i for i, t in enumerate(tokens) if t in self.problem.eos_ids), None)
        eos = tokens[cut] if cut is not None else None
        tokens = tokens[:cut] if cut is not None else tokens
        stopped = eos is not None or any(s in self.problem.decode(tokens) for s in self.problem.stop)
        return RainAnswer(tokens, "stop" if stopped else "length", eos, steps, len(self.judged), self.cached)
