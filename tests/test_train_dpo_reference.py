"""DPO's reference in `sao run` is the previous iterate (issue 14): two iterations, full fine-tuning and LoRA."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import sao.train.trainers
from sao.loop.config import validate_run
from sao.loop.run import run_loop
from test_loop import tiny_recipe


def reference_weights(trainer) -> dict[str, torch.Tensor]:
    """The parameters the trainer computes its reference log-probs with, named as in the saved model.

    Full fine-tuning: the separate frozen model. LoRA: the same model with the adapter switched
    off, i.e. its base weights (``...q_proj.base_layer.weight`` is ``...q_proj.weight``).
    """
    if trainer.ref_model is not None:
        return {name: p.detach().clone() for name, p in trainer.ref_model.named_parameters()}
    base = trainer.model.get_base_model()
    return {
        name.replace(".base_layer.", "."): p.detach().clone()
        for name, p in base.named_parameters()
        if "lora_" not in name
    }


def first_loss(train_dir: Path) -> float:
    history = [json.loads(line) for line in (train_dir / "history.jsonl").read_text().splitlines()]
    return next(h["loss"] for h in history if "loss" in h)


@pytest.mark.slow  # two `sao run` iterations, synthesis included: about 70 s of CPU each
@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
def test_dpo_reference_is_the_previous_iterate(lora, chatty_tiny_dir, tmp_path, monkeypatch):
    built = []  # (trainer, its reference weights before training), one per iteration
    build = sao.train.trainers.build_trainer

    def recording_build_trainer(*args, **kwargs):
        trainer = build(*args, **kwargs)
        built.append((trainer, reference_weights(trainer)))
        return trainer

    monkeypatch.setattr(sao.train.trainers, "build_trainer", recording_build_trainer)
    recipe = tiny_recipe(chatty_tiny_dir)
    recipe["report"] = {"prompts": ["Say hi."], "max_new_tokens": 8}
    recipe["train"].update(trainer="dpo", learning_rate=1e-3, lora={"enabled": lora, "r": 4, "alpha": 8})
    iterations = run_loop(validate_run(recipe), tmp_path / "run", progress=False)

    assert len(iterations) == len(built) == 2
    # weights[k]: iteration k's model as saved (0 is the starting model); iteration k + 1 starts from it.
    weights = [load_file(str(Path(chatty_tiny_dir) / "model.safetensors"))]
    weights += [load_file(str(it.model_out / "model.safetensors")) for it in iterations]
    for k, (iteration, (trainer, reference)) in enumerate(zip(iterations, built)):
        assert iteration.model_in == (str(chatty_tiny_dir) if k == 0 else str(iterations[k - 1].model_out))
        assert (trainer.ref_model is None) == lora  # LoRA: the adapter switched off is the reference
        assert set(reference) == set(weights[k])
        for name, p in reference.items():
            # In the dtype the trainer keeps it in (a LoRA base may be bf16): equal after the same cast.
            assert torch.equal(p, weights[k][name].to(p.dtype)), f"iteration {k + 1}: reference {name}"
        if k > 0:
            assert any(not torch.equal(p, weights[k - 1][n].to(p.dtype)) for n, p in reference.items())
        if not lora:  # frozen: training left it as it was (with LoRA the save merges into the base)
            after = reference_weights(trainer)
            assert all(torch.equal(after[n], p) for n, p in reference.items())
        # Policy and reference are the same weights computed the same way: every log-ratio is 0.
        assert first_loss(iteration.root / "train") == pytest.approx(math.log(2), abs=1e-6)
