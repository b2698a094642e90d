"""sao's own wording of VideoSAVi's requests (the paper's prompts were not released). Every request shows
the model the video's frames first (`video_turn`), then one of these."""

from __future__ import annotations

from typing import Any

QUESTIONS = """These {count} frames were taken in order from one video.{caption}
Write questions that someone who watched the video could answer, {per_type} of each kind:
- What: what can be seen (objects, people, actions, colours, places);
- Why: the cause or purpose of something that happens;
- How: how something happens or changes from one frame to the next.
Put each question on its own line, starting with its kind, like this:
What: ...?
Why: ...?
How: ...?"""

ANSWER = """{question}
Answer from what the frames show."""

RUBRIC = """The frames come from one video.
Question: {question}
Answer: {answer}

Score the answer from 0 to 10 on each of these:
Relevance: does it answer the question that was asked?
Accuracy: is everything it says true to the frames, with nothing made up?
Temporal grounding: does it get the order and timing of events right?
Clarity: is it clear and easy to follow?
Reply with four lines and nothing else:
Relevance: <score>
Accuracy: <score>
Temporal grounding: <score>
Clarity: <score>"""

CRITIQUE = """The frames come from one video.
Question: {question}
Answer: {answer}

Check the answer against the frames. Name each error: objects, places or positions it gets wrong (spatial), the
order or timing of events it gets wrong (temporal), anything it states that the frames do not show
(hallucination), and what it leaves out that the question needs (omission). If it has no errors, say so."""

REVISION = """The frames come from one video.
Question: {question}
First answer: {answer}
Critique of the first answer: {critique}

Write a better answer to the question that fixes every problem the critique names. Reply with the answer only."""


def video_turn(frames: list[str], text: str) -> list[dict[str, Any]]:
    """A one-turn conversation: the video's frames, then ``text``."""
    return [{"role": "user", "content": [{"type": "video", "frames": list(frames)}, {"type": "text", "text": text}]}]


def caption_line(caption: str | None) -> str:
    return f"\nThe video's caption: {caption}" if caption else ""
