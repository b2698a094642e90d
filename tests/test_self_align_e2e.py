"""SELF-ALIGN end to end on the embedded SmolLM2-135M-Instruct: every stage with real generation and real
training, at a size a 2-core CPU runs in minutes. What the issue asks the method to show:

- principle engraving raises log p(answer | short prompt) of held-back principle-driven answers;
- the answer lengths under the short prompt are measured before and after (on SmolLM2 they do not rise);
- the final SFT starts from the starting model's weights, not the engraved model's.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

import sao
from sao.methods.self_align import content
from sao.models import model_info

pytestmark = pytest.mark.slow
BRIEF = "You are {name}, a helpful, honest and harmless assistant. Answer the user's question briefly."


def _subset(tmp_path: Path) -> dict[str, str]:
    """Three question types and the two shortest exemplars: shorter prompts, a faster run."""
    kinds = [vars(k) for k in content.load_question_types()[:3]]
    exemplars = sorted(content.load_exemplars(), key=lambda e: len(e.answer))[:2]
    files = {"question_types": tmp_path / "types.yaml", "exemplars": tmp_path / "exemplars.yaml"}
    files["question_types"].write_text(yaml.safe_dump(kinds))
    files["exemplars"].write_text(yaml.safe_dump([{**vars(e), "markers": list(e.markers)} for e in exemplars]))
    return {k: str(v) for k, v in files.items()}


def test_self_align_engraves_clones_and_distils_into_the_starting_model(tmp_path) -> None:
    train = {"report_to": "none", "epochs": 3}  # a few rows: three passes make the effect plain
    lora = {"enabled": True, "r": 16, "alpha": 16, "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"]}
    recipe = {
        "method": "self_align",
        "synth": {
            **_subset(tmp_path),
            # SmolLM2 runs to the token budget under a plain prompt, which leaves verbose cloning nothing to
            # lengthen; a short prompt that asks for brevity gives it short answers to start from.
            "system_prompt": BRIEF,
            "topics": {"rounds": 1, "per_type": 4, "max_new_tokens": 64},
            "questions": {"max_new_tokens": 48},
            "self_instruct": {"requests": 16, "max_new_tokens": 48},
            "prompts": {"total": 20},
            "answers": {"max_new_tokens": 200},
            "engrave": {"held_out": 2, "train": train},
            "verbose": {"max_new_tokens": 256, "length_tokens": 256},
        },
        "train": {
            "trainer": "sft",
            "learning_rate": 4e-4,
            "max_length": 512,
            "warmup_ratio": 0.0,
            "lora": lora,
            **train,
        },
        "report": {"prompts": ["Say hello."], "max_new_tokens": 16},
    }
    out = tmp_path / "run"
    sao.run(recipe, out)
    synth = out / "iter-1" / "synth"
    stages = json.loads((synth / "manifest.json").read_text())["stages"]

    engrave = stages["engrave"]["stats"]
    before, after = engrave["held_out_logprob_before"], engrave["held_out_logprob_after"]
    assert engrave["held_out"] == 2 and after["total"] > before["total"], engrave

    # The length check runs and is recorded; on SmolLM2 it does not show a rise (the starting model already
    # runs to the budget: docs/methods/self-align.md), so the test asserts that it was measured, not a rise.
    lengths = json.loads((out / "self-align" / "lengths.json").read_text())
    assert set(lengths) == {"iter-1/before", "iter-1/engraved", "iter-1/after"}
    assert all(v["answers"] == 2 for v in lengths.values())

    start = model_info("smollm2-135m")["fingerprint"]
    final = json.loads((out / "iter-1" / "train" / "manifest.json").read_text())
    assert final["model"]["fingerprint"] == start
    assert model_info(str(synth / "engraved"))["fingerprint"] != start
