"""Token ids for training that match, id for id, what the engine generated from.

TRL's own preprocessing renders ``prompt + chosen`` through the chat template and then
appends EOS "if needed". With ChatML-style templates the rendered turn ends in
``<|im_end|>\\n``, so the completion is trained as ``... <|im_end|> \\n <|im_end|>``: a
doubled end-of-turn (TRL #4481; alignment-handbook #116 for the doubled BOS). Here the
prompt goes through the engine's own `encode_prompt` (assistant header included, no
extra BOS) and each completion is its text followed by exactly one end-of-turn token,
the token the model emitted to stop.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sao.engine.chat_template import encode_prompt
from sao.errors import InputError

_PROBE = "\x00sao-end-of-turn-probe\x00"


def end_of_turn_id(tokenizer: Any) -> int:
    """The token the chat template closes an assistant turn with (``<|im_end|>``, ``<|eot_id|>``...).

    Read off the template itself, because ``tokenizer.eos_token`` is not always it:
    Gemma's EOS is ``<eos>`` while its turns end in ``<end_of_turn>``.
    """
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": "hi"}, {"role": "assistant", "content": _PROBE}], tokenize=False
    )
    tail = text[text.rindex(_PROBE) + len(_PROBE) :]
    special = set(tokenizer.all_special_ids) | set(getattr(tokenizer, "added_tokens_decoder", {}))
    for token in tokenizer(tail, add_special_tokens=False)["input_ids"]:
        if token in special:
            return token
    return tokenizer.eos_token_id


def completion_ids(tokenizer: Any, text: str, end_id: int) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"] + [end_id]


def _message_text(value: Any, where: str) -> str:
    """A completion given as text or as a one-message assistant list (TRL's conversational format)."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and len(value) == 1 and isinstance(value[0], dict):
        content = value[0].get("content")
        if value[0].get("role") == "assistant" and isinstance(content, str):
            return content
    raise InputError(f"{where}: expected a string or [{{'role': 'assistant', 'content': ...}}]")


def _prompt_messages(value: Any, where: str) -> list[dict[str, str]]:
    if isinstance(value, str):
        return [{"role": "user", "content": value}]
    if isinstance(value, list):
        return value
    raise InputError(f"{where}: expected a string or a list of messages")


@dataclass
class Tokenized:
    """Examples ready for a trainer, and what was dropped or cut on the way."""

    examples: list[dict[str, list[int]]]
    dropped: dict[str, int] = field(default_factory=dict)
    truncated: int = 0
    tokens: int = 0  # prompt + completion tokens over all examples (both completions for pairs)

    def drop(self, reason: str) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + 1


def _fit(prompt: list[int], completion: list[int], max_length: int) -> tuple[list[int], bool]:
    """Cut the completion so that prompt + completion fits (TRL's ``keep_start``)."""
    room = max_length - len(prompt)
    return completion[:room], len(completion) > room


def preference_examples(tokenizer: Any, rows: list[dict[str, Any]], max_length: int) -> Tokenized:
    """``prompt_ids`` / ``chosen_ids`` / ``rejected_ids`` per pair row (TRL's tokenized preference format).

    A pair whose prompt leaves fewer than 2 tokens for the responses is dropped
    (``prompt_too_long``): nothing of the responses would be trained on.
    """
    end = end_of_turn_id(tokenizer)
    out = Tokenized([])
    for i, row in enumerate(rows):
        where = f"pair {row.get('id', i)}"
        prompt = encode_prompt(tokenizer, _prompt_messages(row.get("prompt"), f"{where}.prompt"))
        if len(prompt) > max_length - 2:
            out.drop("prompt_too_long")
            continue
        chosen, cut_c = _fit(
            prompt, completion_ids(tokenizer, _message_text(row.get("chosen"), where), end), max_length
        )
        rejected, cut_r = _fit(
            prompt, completion_ids(tokenizer, _message_text(row.get("rejected"), where), end), max_length
        )
        out.truncated += cut_c or cut_r
        out.tokens += 2 * len(prompt) + len(chosen) + len(rejected)
        out.examples.append({"prompt_ids": prompt, "chosen_ids": chosen, "rejected_ids": rejected})
    return out


def vision_preference_examples(processor: Any, rows: list[dict[str, Any]]) -> Tokenized:
    """Pairs whose prompt holds images or video frames, in the form TRL's vision collator reads: the prompt as
    messages with ``{"type": "image"}`` placeholders (one per frame), chosen and rejected as assistant messages,
    and ``images``, the frame paths in placeholder order. TRL renders and tokenizes them with the model's
    processor at each batch (`trl.trainer.dpo_trainer.DataCollatorForVisionPreference`); ``tokens`` counts
    the text tokens only (each image's tokens depend on the processor's resizing).
    """
    from sao.engine.chat_template import check_conversation
    from sao.engine.media import image_paths, template_messages

    tokenizer = processor.tokenizer
    out = Tokenized([])
    for i, row in enumerate(rows):
        where = f"pair {row.get('id', i)}"
        prompt = _prompt_messages(row.get("prompt"), f"{where}.prompt")
        check_conversation(prompt, f"{where}.prompt")
        chosen, rejected = (_message_text(row.get(side), f"{where}.{side}") for side in ("chosen", "rejected"))
        texts = [part["text"] for m in template_messages(prompt) for part in m["content"] if part["type"] == "text"]
        out.tokens += sum(
            len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in [*texts, *texts, chosen, rejected]
        )
        out.examples.append(
            {
                "prompt": template_messages(prompt),
                "chosen": [{"role": "assistant", "content": chosen}],
                "rejected": [{"role": "assistant", "content": rejected}],
                "images": image_paths(prompt),
            }
        )
    return out


def has_media(rows: list[dict[str, Any]]) -> bool:
    """Whether the first row's prompt holds images or video frames (a pairs file is one or the other)."""
    prompt = rows[0].get("prompt") if rows else None
    return isinstance(prompt, list) and any(isinstance(m, dict) and isinstance(m.get("content"), list) for m in prompt)


def sft_examples(tokenizer: Any, rows: list[dict[str, Any]], max_length: int) -> Tokenized:
    """``input_ids`` + ``completion_mask`` (loss on the response only) from prompt/completion or pair rows.

    A pair row trains on its chosen response.
    """
    end = end_of_turn_id(tokenizer)
    out = Tokenized([])
    for i, row in enumerate(rows):
        where = f"row {row.get('id', i)}"
        target = row.get("completion", row.get("chosen"))
        if target is None:
            raise InputError(f"{where}: SFT needs a 'completion' (or a pair's 'chosen')")
        prompt = encode_prompt(tokenizer, _prompt_messages(row.get("prompt"), f"{where}.prompt"))
        if len(prompt) > max_length - 2:
            out.drop("prompt_too_long")
            continue
        completion, cut = _fit(prompt, completion_ids(tokenizer, _message_text(target, where), end), max_length)
        out.truncated += cut
        out.tokens += len(prompt) + len(completion)
        out.examples.append(
            {"input_ids": prompt + completion, "completion_mask": [0] * len(prompt) + [1] * len(completion)}
        )
    return out


def grpo_examples(tokenizer: Any, rows: list[dict[str, Any]], max_prompt_length: int) -> Tokenized:
    """GRPO's rows as TRL reads them: the prompt as messages, its reference ``answer`` and, where the row has
    one, its ``checker``; TRL samples the completions itself. A prompt longer than ``max_prompt_length``
    tokens is dropped (``prompt_too_long``); ``tokens`` counts the prompt tokens."""
    out = Tokenized([])
    for i, row in enumerate(rows):
        where = f"row {row.get('id', i)}"
        if row.get("answer") is None:
            raise InputError(f"{where}: GRPO needs a reference 'answer' for the verifiable reward")
        messages = _prompt_messages(row.get("prompt"), f"{where}.prompt")
        length = len(encode_prompt(tokenizer, messages))
        if length > max_prompt_length:
            out.drop("prompt_too_long")
            continue
        out.tokens += length
        example = {"prompt": messages, "answer": str(row["answer"])}
        if row.get("checker") is not None:
            example["checker"] = row["checker"]
        out.examples.append(example)
    return out
