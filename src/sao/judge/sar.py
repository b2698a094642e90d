"""SAR as a judge (issue 18): each candidate answer scored on its own by its self-aligned reward under the judge
model (`sao.rewards.sar`), and candidates ranked by that score.

It needs no judge prompt, and since no answer is ever shown beside another it has no position bias: there is
no order to swap, so nothing is judged twice. SAO's judge stage (`sao.stages.sar_judge`), DNO's scores
(`sao.methods.dno.sar`) and ``sao judge-eval`` (`sao.eval.pairwise`) score with `score_answers`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sao.engine.capabilities import Capability
from sao.engine.lazy import loaded_engine
from sao.engine.types import Conversation, Engine
from sao.errors import ConfigError
from sao.judge.config import SAR
from sao.rewards.sar import sar_scores

# The contexts and answers go to the engine as token ids, so that it scores exactly the ids SAR is defined on.
SAR_NEEDS = frozenset({Capability.SCORE, Capability.TOKEN_PROMPTS})
TIE = 1e-9  # scores closer than this are equal: neither answer is preferred
SAR_WEIGHT = 0.2  # α in R_VR + α·R_SA, the paper's (and train.grpo.sar_weight's) default


def sar_label(judge: str) -> str:
    """How reports name SAR under the model ``judge`` names, beside a prompted judge's name."""
    return f"SAR (self-aligned reward) under {judge}"


def sar_needs(section: Any) -> frozenset[Capability]:
    """What the judge's engine must do under ``section`` (a method section with a ``judge``): `Stage.needs`."""
    return SAR_NEEDS if section.judge.signal == SAR else frozenset()


def scoring_tokenizer(engine: Engine) -> Any:
    """The HF tokenizer of the model behind ``engine`` (a lazy engine loads its model here: it is about to score).

    Raises ConfigError when the engine keeps no tokenizer in this process (a Ray engine's are on its actors).
    """
    inner = loaded_engine(engine)
    tokenizer = getattr(inner, "tokenizer", None)
    if tokenizer is None:
        kind = getattr(engine, "kind", type(engine).__name__)
        raise ConfigError(
            f"judge.signal: 'sar' renders the answers with the judge model's tokenizer, and the '{kind}' engine "
            "keeps none in this process (Ray keeps it on its actors); judge on an engine without engine.ray"
        )
    return tokenizer


def answer_ids(tokenizer: Any, text: str) -> list[int]:
    """The token ids of ``text`` as an assistant turn the model ended itself: its tokens, then the end-of-turn
    token (the tokenizer's EOS; SmolLM2's is ``<|im_end|>``), which SAR scores too."""
    return [*tokenizer(text, add_special_tokens=False)["input_ids"], tokenizer.eos_token_id]


def score_answers(engine: Engine, conversations: Sequence[Conversation], texts: Sequence[str]) -> list[float]:
    """R_SA of each answer text to the conversation before it, under the model behind ``engine``.

    Raises ConfigError as `scoring_tokenizer` does, and CapabilityError from an engine without ``score`` or
    ``token_prompts`` (a run checks `SAR_NEEDS` before any model loads).
    """
    if not texts:
        return []
    tokenizer = scoring_tokenizer(engine)
    return sar_scores(engine, conversations, [answer_ids(tokenizer, t) for t in texts], tokenizer)


def ranking_scores(r_sa: Sequence[float], r_vr: Sequence[float] | None, weight: float = SAR_WEIGHT) -> list[float]:
    """What SAR's judge ranks candidates by: R_VR + ``weight`` x R_SA where a verifier gave R_VR (the paper's
    reward: with R_VR 0 or 1 and ``weight`` <= 1/2 a correct answer outranks every wrong one), else R_SA alone.

    No prompt source that judges today carries a reference answer (SAO writes its own prompts, DNO's and
    judge-eval's have none), so they rank by R_SA, which is this with ``r_vr`` None; a source with references
    passes `sao.rewards.verifiable.verifiable_rewards`' rewards.

    Raises ValueError when ``r_vr`` is given for a different number of candidates.
    """
    if r_vr is None:
        return list(r_sa)
    if len(r_vr) != len(r_sa):
        raise ValueError(f"{len(r_vr)} verifier rewards for {len(r_sa)} candidates")
    return [v + weight * s for s, v in zip(r_sa, r_vr)]


def preference(score_a: float, score_b: float) -> float:
    """1.0 when A's score is higher, 0.0 when B's is, 0.5 when they are equal within `TIE`."""
    if abs(score_a - score_b) <= TIE:
        return 0.5
    return 1.0 if score_a > score_b else 0.0


def gap_drop_reason(gap: float, margin: float) -> str | None:
    """Why a (chosen, rejected) pair whose scores differ by ``gap`` is not kept (SAO's ``below_margin``, the
    prompted judge's reason too), or None to keep it. A tie is never kept, whatever the margin."""
    return "below_margin" if gap <= TIE or gap < margin else None
