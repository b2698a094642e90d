"""Generate the recipe reference (docs/recipes.md) from the config declarations.

Run ``python -m sao.recipe_docs > docs/recipes.md``; a test fails when the file is stale.
"""

from __future__ import annotations

import json

from pydantic import BaseModel

from sao import methods
from sao.eval.config import EvalConfig, JudgeEvalConfig
from sao.loop.config import run_config_class

HEADER = """# Recipe reference

Generated from the config classes by `python -m sao.recipe_docs`; do not edit by hand.

A recipe is YAML; unknown keys are errors, and a bad value is one error line that names
its dotted field. `method:` names the self-alignment method (default `sao`; `sao methods`
lists them), and the method's own section validates `synth:`. `sao run RECIPE` reads the
whole file. `sao synth --recipe FILE` reads
its `synth:` section and `sao train --recipe FILE` its `train:` section; from a run recipe
they also take the top-level `model` and `engine` (`sao train` runs no engine), so
`sao synth --recipe recipes/sao-llama3-8b.yaml` runs Llama 3 on vLLM as `sao run` would;
their flags (`--model`, `--dtype`, `--engine KEY=VALUE`, ...) override the recipe. A file
with no run-recipe keys (`method`, `iterations`, `synth`, `train`, `report`) and no such section is
the section itself. `--set section.key=value` overrides any field, e.g.
`sao run recipes/quickstart-cpu.yaml --set train.learning_rate=1e-5`
(for `sao synth` and `sao train` the keys are relative to their section).
`sao eval --recipe FILE` and `sao judge-eval --recipe FILE` read their own `eval:` and
`judge_eval:` sections, documented at the end; a run recipe's `engine` applies under them,
and its `model` is the default baseline and judge of `sao eval` and the judge of `sao judge-eval`.

Shipped recipes: `recipes/quickstart-cpu.yaml` (the embedded model, one iteration on a
CPU), `recipes/sao-gemma2-9b.yaml` and `recipes/sao-llama3-8b.yaml` (the paper's settings),
`recipes/dno-quickstart-cpu.yaml` (DNO, two iterations of the embedded model) and
`recipes/dno-orca-paper.yaml` (DNO with the paper's settings, for GPUs).
"""


def _default(value: object) -> str:
    text = json.dumps(value) if not isinstance(value, str) else value
    text = text.replace("\n", "\\n").replace("|", "\\|")
    return f"`{text}`" if len(text) <= 60 else f"`{text[:57]}...`"


def section_table(cls: type[BaseModel], prefix: str, *, skip: tuple[str, ...] = ()) -> list[str]:
    lines = ["| field | default | meaning |", "|---|---|---|"]
    nested = []
    for name, field in cls.model_fields.items():
        if name in skip:
            continue
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            nested.append((name, annotation))
            continue
        default = "required" if field.is_required() else _default(field.get_default(call_default_factory=True))
        meaning = (field.description or "").replace("|", "\\|")
        lines.append(f"| `{prefix}{name}` | {default} | {meaning} |")
    if len(lines) == 2 and not nested:
        lines = ["*(no fields)*"]
    for name, sub in nested:
        lines += ["", f"## `{prefix}{name}`", "", *section_table(sub, f"{prefix}{name}.")]
    return lines


def method_reference(name: str) -> list[str]:
    """The ``synth:`` section of a recipe with ``method: name``."""
    method = methods.get(name)
    return [
        f"# Method `{name}` (section `synth:`)",
        "",
        f"{method.summary} Stages: {', '.join(method.stage_names)}; default trainer `{method.trainer}`; "
        f"see {method.doc}.",
        "",
        *section_table(method.section, "synth."),
        "",
    ]


def recipe_reference() -> str:
    run_config = run_config_class(methods.get(methods.DEFAULT))
    parts = [
        HEADER,
        "## Top level\n",
        "The fields every method's run recipe has; `synth:` is the method's own section (below).\n",
        *section_table(run_config, "", skip=("synth",)),
        "",
        *(line for name in methods.names() for line in method_reference(name)),
        "# `sao eval` (section `eval:`)\n",
        *section_table(EvalConfig, "eval."),
        "",
        "# `sao judge-eval` (section `judge_eval:`)\n",
        *section_table(JudgeEvalConfig, "judge_eval."),
    ]
    return "\n".join(parts) + "\n"


if __name__ == "__main__":
    print(recipe_reference(), end="")
