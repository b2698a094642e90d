"""The rows SELF-ALIGN trains on: (short prompt + query, answer), with no principle, exemplar or thought."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from sao.engine.types import RawPrompt
from sao.methods.self_align.config import SelfAlignConfig
from sao.methods.self_align.turns import Turns


class SFTRow(BaseModel):
    id: str
    schema_version: int = 1
    prompt: list[dict[str, str]]
    completion: list[dict[str, str]]


def short_conversation(section: SelfAlignConfig, query: str) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": section.system_prompt.format(name=section.name)},
        {"role": "user", "content": query},
    ]


def sft_row(section: SelfAlignConfig, row_id: str, query: str, answer: str) -> SFTRow:
    return SFTRow(
        id=row_id, prompt=short_conversation(section, query), completion=[{"role": "assistant", "content": answer}]
    )


def short_prompt(section: SelfAlignConfig, query: str) -> Any:
    """``query`` under the short prompt, as a model trained on the rows reads it: through its chat template
    (turns 'model'), or as the text that `Turns.chat_template` renders (turns 'text'), which a base model
    without a template reads too. No BOS is added, as the template adds none."""
    conversation = short_conversation(section, query)
    if section.turns.chat_template == "model":
        return conversation
    turns = Turns.of(section)
    system, user = conversation[0]["content"], conversation[1]["content"]
    return RawPrompt(f"{system.strip()}\n\n{turns.turn(turns.user, user)}{turns.assistant}\n", add_special_tokens=False)
