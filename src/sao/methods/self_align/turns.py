"""The plain-text turn format of SELF-ALIGN's prompts, and the chat template built from it.

Every prompt the method writes is a document the model continues as raw text (a base model has no
chat template): a label line opens each turn (``### User``, ``### Sage (internal thoughts)``,
``### Sage``), the turn's text follows, and a blank line ends it. The model's continuation is cut
where it starts a turn of its own.
"""

from __future__ import annotations

from dataclasses import dataclass

from sao.methods.self_align.config import SelfAlignConfig


@dataclass(frozen=True)
class Turns:
    user: str
    assistant: str
    thoughts: str

    @classmethod
    def of(cls, section: SelfAlignConfig) -> Turns:
        t = section.turns
        return cls(t.user, t.assistant.format(name=section.name), t.thoughts.format(name=section.name))

    def turn(self, label: str, text: str) -> str:
        return f"{label}\n{text.strip()}\n\n"

    @property
    def labels(self) -> tuple[str, ...]:
        return (self.user, self.assistant, self.thoughts)

    @property
    def stops(self) -> tuple[str, ...]:
        """Stop strings: the model opening the next user turn (it only ever continues an assistant's)."""
        return (f"\n{self.user}",)

    def cut(self, text: str) -> str:
        """``text`` up to the first line that opens a turn, stripped."""
        ends = [i for label in self.labels if (i := text.find(f"\n{label}")) >= 0]
        if text.startswith(self.labels):
            ends.append(0)
        return text[: min(ends)].strip() if ends else text.strip()

    def chat_template(self) -> str:
        """A Jinja chat template that renders a conversation in this format: the system prompt, then each
        user and answer turn; an answer is closed by EOS, so that the trained model learns to stop."""
        user, answer = _jinja(self.user), _jinja(self.assistant)
        return (
            "{% for message in messages %}"
            "{% if message['role'] == 'system' %}{{ message['content'] | trim }}{{ '\\n\\n' }}"
            f"{{% elif message['role'] == 'user' %}}{{{{ '{user}\\n' }}}}{{{{ message['content'] | trim }}}}"
            "{{ '\\n\\n' }}"
            f"{{% else %}}{{{{ '{answer}\\n' }}}}{{{{ message['content'] | trim }}}}"
            "{{ eos_token }}{{ '\\n\\n' }}"
            "{% endif %}{% endfor %}"
            f"{{% if add_generation_prompt %}}{{{{ '{answer}\\n' }}}}{{% endif %}}"
        )


def _jinja(label: str) -> str:
    """``label`` safe inside a single-quoted Jinja string."""
    return label.replace("\\", "\\\\").replace("'", "\\'")
