"""The self-aligned reward (SAR; Han et al. 2025, "Self-Aligned Reward", arXiv 2509.05489).

SAR asks how much the question makes the answer likelier, under the policy itself:

    R_SA = max((ppl(a) - ppl(a|q)) / ppl(a), -1) = max(1 - exp(mean_lp(a) - mean_lp(a|q)), -1)

``mean_lp(a|q)`` is the mean log-prob of the answer's tokens (the end-of-turn token that closed it
included) after the usual chat prompt; ``mean_lp(a)`` the same after the *standalone* context: the same
system prompt and an empty user turn, then the assistant header. An answer specific to the question
(concise, on topic) gains much from it and scores near 1; padding and generic text gain little and score
near 0 or below; the floor of -1 is reached once ppl(a|q) >= 2 ppl(a). The formula and its defaults
follow the official code's ``compute_ppl_qa_log``.

Two ways to get the log-probs: `sar_scores` through any engine's ``score`` (judging, eval), and
`sar_from_model` through a live model's forward pass (GRPO's reward, on the weights being trained).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from sao.engine.types import Conversation, Engine
from sao.errors import InputError

FLOOR = -1.0


def self_aligned_reward(mean_lp_with_query: float, mean_lp_alone: float) -> float:
    """R_SA from the answer's mean token log-prob after the query and after the standalone context."""
    return max(1.0 - math.exp(mean_lp_alone - mean_lp_with_query), FLOOR)


def standalone_conversation(conversation: Conversation) -> Conversation:
    """The context ppl(a) is measured in: the conversation's system messages, then an empty user turn."""
    return [*(m for m in conversation if m["role"] == "system"), {"role": "user", "content": ""}]


def accepts_system(tokenizer: Any) -> bool:
    """Whether the tokenizer's chat template renders a system message (Gemma's raises on one)."""
    probe = [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]
    try:
        tokenizer.apply_chat_template(probe, tokenize=False, add_generation_prompt=True)
    except Exception:  # jinja2's TemplateError, raised by the template's own `raise_exception`
        return False
    return True


def fold_system(conversation: Conversation) -> Conversation:
    """``conversation`` with its system text moved to the front of the first user turn, for a template
    with no system role (the official code does the same for such models)."""
    system = "\n\n".join(m["content"] for m in conversation if m["role"] == "system")
    rest = [dict(m) for m in conversation if m["role"] != "system"]
    if system and rest and rest[0]["role"] == "user":
        rest[0]["content"] = f"{system}\n\n{rest[0]['content']}" if rest[0]["content"] else system
    return rest


def context_pair(tokenizer: Any, conversation: Conversation) -> tuple[list[int], list[int]]:
    """Token ids of (the prompt as the policy saw it, the standalone context), each ending with the assistant
    header, rendered with the tokenizer's chat template (a model with no system role gets its system text in
    the user turn). Raises InputError when the standalone context has no tokens and the tokenizer no BOS to
    stand for it: the answer's first token would have nothing to be predicted from."""
    from sao.engine.chat_template import encode_prompt

    alone = standalone_conversation(conversation)
    if any(m["role"] == "system" for m in conversation) and not accepts_system(tokenizer):
        conversation, alone = fold_system(conversation), fold_system(alone)
    with_query, standalone = encode_prompt(tokenizer, conversation), encode_prompt(tokenizer, alone)
    if not standalone:
        if tokenizer.bos_token_id is None:
            raise InputError("sar: the standalone context renders to no tokens and the tokenizer has no BOS")
        standalone = [tokenizer.bos_token_id]
    return with_query, standalone


def sar_scores(
    engine: Engine, prompts: Sequence[Conversation], answers: Sequence[Sequence[int]], tokenizer: Any
) -> list[float]:
    """R_SA of each answer (token ids, end-of-turn token included) to its prompt, by ``engine.score``.

    ``tokenizer`` renders both contexts (`context_pair`); they go to the engine as token prompts, so it
    scores exactly those ids (needs the ``score`` and ``token_prompts`` capabilities).
    """
    from sao.engine.types import TokenPrompt

    pairs = [context_pair(tokenizer, p) for p in prompts]
    contexts = [TokenPrompt(q) for q, _ in pairs] + [TokenPrompt(s) for _, s in pairs]
    scored = engine.score(contexts, [list(a) for a in answers] * 2)
    n = len(pairs)
    return [self_aligned_reward(scored[i].mean, scored[n + i].mean) for i in range(n)]


def sar_from_model(
    model: Any,
    contexts: Sequence[tuple[list[int], list[int]]],
    answers: Sequence[Sequence[int]],
    *,
    pad_id: int,
    batch_size: int = 8,
) -> list[float]:
    """R_SA of each answer under ``model``'s current weights, from (with-query, standalone) context ids.

    One forward pass per context and answer, ``batch_size`` sequences at a time, with no gradient.
    An empty answer has no tokens to average over: its reward is 0 (no evidence either way).
    """
    import torch

    sequences = [(ctx, list(a)) for pair, a in zip(contexts, answers) for ctx in pair]
    means: list[float] = []
    with torch.no_grad():
        for start in range(0, len(sequences), batch_size):
            means.extend(_mean_logprobs(model, sequences[start : start + batch_size], pad_id))
    rewards = []
    for i, answer in enumerate(answers):
        with_query, alone = means[2 * i], means[2 * i + 1]
        rewards.append(self_aligned_reward(with_query, alone) if answer else 0.0)
    return rewards


def _mean_logprobs(model: Any, batch: list[tuple[list[int], list[int]]], pad_id: int) -> list[float]:
    """Mean log-prob of each answer's tokens after its context, one right-padded forward pass."""
    import torch

    device = next(model.parameters()).device
    width = max(len(c) + len(a) for c, a in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long, device=device)
    mask = torch.zeros_like(ids)
    for row, (context, answer) in enumerate(batch):
        seq = context + answer
        ids[row, : len(seq)] = torch.tensor(seq, device=device)
        mask[row, : len(seq)] = 1
    logits = model(input_ids=ids, attention_mask=mask).logits.float()
    logprobs = logits[:, :-1].log_softmax(-1).gather(-1, ids[:, 1:, None]).squeeze(-1)
    means = []
    for row, (context, answer) in enumerate(batch):
        if not answer:
            means.append(0.0)
            continue
        # The token at position t is predicted by the logits at t - 1.
        means.append(logprobs[row, len(context) - 1 : len(context) + len(answer) - 1].mean().item())
    return means
