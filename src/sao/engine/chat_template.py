"""Turn chat-message lists into prompt token ids with the model's own chat template."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sao.engine.media import check_parts
from sao.engine.types import Conversation
from sao.errors import InputError, ModelLoadError

ROLES = ("system", "user", "assistant")


def check_conversation(conversation: Conversation, where: str = "conversation") -> None:
    """Raise InputError unless ``conversation`` is a non-empty list of {role, content} messages, each content a
    string or a list of parts (`sao.engine.media.check_parts`)."""
    if not isinstance(conversation, list) or not conversation:
        raise InputError(f"{where}: expected a non-empty list of messages")
    for i, message in enumerate(conversation):
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            raise InputError(f"{where}: message {i} needs a role in {ROLES}")
        if not isinstance(message.get("content"), (str, list)):
            raise InputError(f"{where}: message {i} needs a string 'content' or a list of parts")
    check_parts(conversation, where)


def render_prompt(tokenizer: Any, conversation: Conversation) -> str:
    """``conversation`` as text through the model's chat template, ending with the assistant header.

    A conversation that ends with an assistant message is a prefill: the model continues
    that message (``continue_final_message``, as in vLLM and TRL) instead of starting a
    new one. Raises ModelLoadError for a tokenizer without a chat template.
    """
    if not getattr(tokenizer, "chat_template", None):
        raise ModelLoadError(f"tokenizer of '{tokenizer.name_or_path}' has no chat template; use a chat model")
    check_conversation(conversation)
    prefill = conversation[-1]["role"] == "assistant"
    return tokenizer.apply_chat_template(
        conversation, tokenize=False, add_generation_prompt=not prefill, continue_final_message=prefill
    )


def encode_prompt(tokenizer: Any, conversation: Conversation) -> list[int]:
    """Token ids of `render_prompt`'s text, ready for generation.

    The template already places BOS and the special tokens, so the text is tokenized with
    ``add_special_tokens=False``: otherwise models such as Llama 3 get a doubled BOS.
    """
    return tokenizer(render_prompt(tokenizer, conversation), add_special_tokens=False)["input_ids"]


def encode_prompts(tokenizer: Any, conversations: Sequence[Conversation]) -> list[list[int]]:
    return [encode_prompt(tokenizer, c) for c in conversations]
