"""RAIN's search tree over token sets and its arithmetic (Li et al., ICLR 2024, section 3; the official
SafeAILab/RAIN ``HH/nodes.py`` for the exact rules). Pure: no model, no engine; `sao.rain.search` drives it.

A node is a token set hanging off its parent; the root is the committed prefix. Each node keeps its visits
``n`` (fractional: similar siblings share a visit), its whole visits ``fn``, the mean value ``q`` of the
self-evaluations below it, its prior ``p`` and a running mean of the embeddings of the texts that passed
through it. The root also keeps the smallest and largest ``q`` seen, which normalise ``q`` in selection.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

# The root's q range starts at the evaluator's range [-1, 1], as in the reference; it only ever widens.
Q_RANGE = (-1.0, 1.0)
# Added to the q range in the normalisation, so that a collapsed range divides by no zero (the reference's).
RANGE_EPS = 1e-5


@dataclass(frozen=True)
class TreeSettings:
    """The numbers of the search; `sao.rain.config.RainSection` fills them from a recipe."""

    exploration: float = 2.0  # c in the PUCT bound
    set_lengths: tuple[int, ...] = (1, 2, 4, 10)  # token-set length by depth; the last repeats
    root_prior_mix: float = 0.25  # share of the uniform prior mixed into the root's children
    similarity_threshold: float = 0.95
    similarity_weight: float = 0.2
    max_children: int = 20  # dynamic node addition stops at this many children
    variance_threshold: float = 0.03  # times the set length: children this alike trigger an addition


@dataclass(eq=False)
class Node:
    tokens: tuple[int, ...]
    prior: float
    depth: int  # counted from the first prompt token, so set lengths follow the answer, not the root
    parent: Node | None = None
    children: list[Node] = field(default_factory=list)
    n: float = 0.0
    fn: int = 0
    q: float = 0.0
    embedding: np.ndarray | None = None
    terminal: bool = False  # ends the answer (EOS, a stop string, the length limit): never expanded
    raw: float = 0.0  # the set's own probability before normalisation: a later sibling's prior is relative to it

    @property
    def is_leaf(self) -> bool:
        return not self.children

    def add_children(self, sets: Sequence[tuple[tuple[int, ...], float, float]]) -> None:
        """Hang ``(tokens, prior, raw probability)`` sets below this node, skipping any it already has."""
        have = {child.tokens for child in self.children}
        for tokens, prior, raw in sets:
            if tokens not in have:
                self.children.append(Node(tokens, prior, self.depth + 1, parent=self, raw=raw))
                have.add(tokens)


@dataclass(eq=False)
class Tree:
    root: Node
    q_min: float = Q_RANGE[0]
    q_max: float = Q_RANGE[1]


def new_tree() -> Tree:
    return Tree(Node(tokens=(), prior=0.0, depth=0))


def set_length(depth: int, lengths: Sequence[int]) -> int:
    """Tokens per set below a node at ``depth``: 1, 2, 4, then 10 with the defaults."""
    return lengths[min(depth, len(lengths) - 1)]


def normalise(priors: Sequence[float]) -> list[float]:
    """Priors scaled to sum to one; all-zero priors become uniform rather than dividing by zero."""
    total = float(sum(priors))
    if total <= 0 or not math.isfinite(total):
        return [1.0 / len(priors)] * len(priors)
    return [p / total for p in priors]


def mix_root_priors(priors: Sequence[float], mix: float) -> list[float]:
    """(1 - mix)·p + mix·uniform over normalised ``priors``, normalised again: exploration at the root."""
    uniform = 1.0 / len(priors)
    return normalise([(1 - mix) * p + mix * uniform for p in normalise(priors)])


def child_priors(priors: Sequence[float], at_root: bool, settings: TreeSettings) -> list[float]:
    """The priors of a new set of children: normalised, and mixed with the uniform prior at the root."""
    return mix_root_priors(priors, settings.root_prior_mix) if at_root else normalise(priors)


def greedy_prior(greedy: float, sampled: Sequence[float]) -> float:
    """The greedy set's probability, clipped as in the reference: no more than all sampled sets together and
    no less than the most plus the least likely of them, so that the greedy set neither swamps the samples
    (it is always likelier than any one of them) nor drops below them."""
    if not sampled:
        return greedy
    clipped = min(greedy, float(sum(sampled)))
    return max(clipped, max(sampled) + min(sampled))


def normalised_q(node: Node, tree: Tree) -> float:
    """q̂: ``q`` min-max normalised by the root's range; 0 for an unvisited node."""
    if node.n == 0:
        return 0.0
    return (node.q - tree.q_min) / (tree.q_max - tree.q_min + RANGE_EPS)


def puct(node: Node, tree: Tree, exploration: float) -> float:
    """q̂ + c·p·√N_parent / (1 + n), the bound selection maximises."""
    assert node.parent is not None, "the root is never selected"
    return normalised_q(node, tree) + exploration * node.prior * math.sqrt(node.parent.n) / (1 + node.n)


def select_child(node: Node, tree: Tree, exploration: float) -> Node:
    """The child with the largest PUCT bound; the first of equals, in the order children were added."""
    return max(node.children, key=lambda child: puct(child, tree, exploration))


def best_child(node: Node) -> Node | None:
    """The most visited child, the higher ``q`` among equals: what a step commits."""
    if not node.children:
        return None
    return max(node.children, key=lambda child: (child.n, child.q))


def embedding_spread(children: Sequence[Node]) -> float | None:
    """The norm of the per-dimension (sample) variance of the children's embeddings; None while a child has
    none or there is only one."""
    if len(children) < 2 or any(child.embedding is None for child in children):
        return None
    stacked = np.stack([child.embedding for child in children]).astype(np.float64)
    return float(np.linalg.norm(stacked.var(axis=0, ddof=1)))


def needs_addition(node: Node, settings: TreeSettings) -> bool:
    """Dynamic node addition: the children are few (< max_children), alike (embedding spread below
    variance_threshold × their set length) and all judged bad (the best ``q`` < 0)."""
    if node.is_leaf or len(node.children) >= settings.max_children:
        return False
    spread = embedding_spread(node.children)
    if spread is None or spread >= settings.variance_threshold * len(node.children[0].tokens):
        return False
    return max(child.q for child in node.children) < 0


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    norm = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(np.dot(a, b)) / norm if norm > 0 else 0.0


def share_with_siblings(node: Node, value: float, settings: TreeSettings) -> None:
    """Give every sibling whose embedding is at least ``similarity_threshold`` alike a visit of weight
    ``similarity_weight × cos`` with this ``value``: similar text, similar judgement."""
    assert node.parent is not None and node.embedding is not None
    for sibling in node.parent.children:
        if sibling is node or sibling.embedding is None:
            continue
        similarity = cosine(node.embedding, sibling.embedding)
        if similarity < settings.similarity_threshold:
            continue
        weight = settings.similarity_weight * similarity
        sibling.q = (sibling.q * sibling.n + weight * value) / (sibling.n + weight)
        sibling.n += weight


def backup(
    tree: Tree, path: Sequence[Node], value: float, embeddings: Sequence[np.ndarray], settings: TreeSettings
) -> None:
    """Back a self-evaluation ``value`` up ``path`` (root first, leaf last).

    ``embeddings[i]`` embeds the text from ``path[i + 1]``'s tokens to the end of the rollout: each node keeps
    the running mean of what followed it. Every node on the path gets a whole visit and the running mean of
    ``value``; each non-root node first shares the value with its similar siblings.
    """
    if len(embeddings) != len(path) - 1:
        raise ValueError(f"backup: {len(path) - 1} nodes below the root but {len(embeddings)} embeddings")
    for node, embedding in zip(reversed(path[1:]), reversed(embeddings)):
        node.fn += 1
        embedding = np.asarray(embedding, dtype=np.float32)
        node.embedding = (
            embedding.copy() if node.embedding is None else node.embedding + (embedding - node.embedding) / node.fn
        )
        share_with_siblings(node, value, settings)
        node.n += 1
        node.q += (value - node.q) / node.n
        tree.q_min, tree.q_max = min(tree.q_min, node.q), max(tree.q_max, node.q)
    root = path[0]
    root.fn += 1
    root.n += 1
    root.q += (value - root.q) / root.n


def commit(tree: Tree, child: Node, settings: TreeSettings) -> None:
    """Make ``child`` the root, keeping its subtree and the q range, and re-mix its children's priors with the
    uniform prior, as every root's are."""
    assert child.parent is tree.root
    child.parent = None
    tree.root = child
    if child.children:
        for node, prior in zip(
            child.children, mix_root_priors([c.prior for c in child.children], settings.root_prior_mix)
        ):
            node.prior = prior
