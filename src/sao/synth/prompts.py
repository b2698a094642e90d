"""Prompt synthesis by persona role-play (arXiv 2510.06652, section 3.1), and its ablation."""

from __future__ import annotations

# The paper's wording. SmolLM2-135M mostly repeats it back instead of answering it (with
# or without the 'User prompt:' prefill), which makes every prompt a near-duplicate, so
# the default below asks the same thing in plainer words. Use this one for 7B+ models.
PAPER_PROMPT_TEMPLATE = (
    "Guess a prompt that the following persona may ask you to do:\n{persona}\n\n"
    "Note:\n"
    "1. The prompt should be informative and specific.\n"
    "2. Your output should start with 'User prompt:'"
)
PROMPT_TEMPLATE = "{persona}\nWhat would this person ask an AI assistant? Write their message in the first person."
# The --no-personas ablation: the same request with no persona, which the paper shows
# collapses onto repeated prompts (45.65% repetition without personas, 0.73% with).
NO_PERSONA_TEMPLATE = "What would a person ask an AI assistant? Write their message in the first person."
PROMPT_MARKER = "User prompt:"


def build_prompt_request(persona: str | None, template: str) -> str:
    """The role-play request for one persona (``template`` must contain ``{persona}`` unless persona is None)."""
    return template.format(persona=persona) if persona is not None else template
