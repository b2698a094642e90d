"""Generate the recipe reference (docs/recipes.md) from the config declarations.

Run ``python -m sao.recipe_docs > docs/recipes.md``; a test fails when the file is stale.
"""

from __future__ import annotations

import json

from pydantic import BaseModel

from sao.synth.config import SynthConfig

HEADER = """# Recipe reference

Generated from the config classes by `python -m sao.recipe_docs`; do not edit by hand.
A recipe is YAML. `sao synth --recipe FILE` reads its `synth:` section (or the whole file),
and `--set section.key=value` overrides any field. Unknown keys are errors.
"""


def _default(value: object) -> str:
    text = json.dumps(value) if not isinstance(value, str) else value
    text = text.replace("\n", "\\n").replace("|", "\\|")
    return f"`{text}`" if len(text) <= 60 else f"`{text[:57]}...`"


def section_table(cls: type[BaseModel], prefix: str) -> list[str]:
    lines = ["| field | default | meaning |", "|---|---|---|"]
    nested = []
    for name, field in cls.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            nested.append((name, annotation))
            continue
        lines.append(
            f"| `{prefix}{name}` | {_default(field.get_default(call_default_factory=True))} | {field.description} |"
        )
    for name, sub in nested:
        lines += ["", f"## `{name}`", "", *section_table(sub, f"{name}.")]
    return lines


def recipe_reference() -> str:
    return HEADER + "\n## `synth` (top level)\n\n" + "\n".join(section_table(SynthConfig, "")) + "\n"


if __name__ == "__main__":
    print(recipe_reference(), end="")
