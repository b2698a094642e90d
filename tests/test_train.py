"""Training: SimPO / DPO / SFT steps on a tiny model, token ids, NaN guard, checkpoints, configs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from conftest import PAIRS, ask
from sao.engine.chat_template import encode_prompt
from sao.engine.transformers_engine import TransformersEngine
from sao.errors import ConfigError, InputError
from sao.models import load_model
from sao.recipe import validate
from sao.train.config import TrainConfig
from sao.train.pretokenized import TrainingDivergedError
from sao.train.run import last_complete_checkpoint, resolve_pairs_file, run_train
from sao.train.tokenize import end_of_turn_id, preference_examples, sft_examples


def fast(**overrides) -> TrainConfig:
    """Settings that move a tiny model in a few steps: constant high learning rate, no warm-up."""
    values = dict(
        learning_rate=1e-3,
        lr_scheduler="constant",
        warmup_ratio=0.0,
        epochs=3,
        batch_size=4,
        report_to="none",
        gradient_checkpointing=False,
        max_length=128,
    )
    return validate(TrainConfig, {**values, **overrides})


def margins(model_dir: Path, per_token: bool) -> float:
    """Mean log p(chosen) - log p(rejected) over PAIRS, scored by the engine (not the trainer)."""
    engine = TransformersEngine(load_model(str(model_dir), dtype="float32"), progress=False)
    prompts = [p["prompt"] for p in PAIRS]
    chosen = engine.score(prompts, [p["chosen"][0]["content"] for p in PAIRS])
    rejected = engine.score(prompts, [p["rejected"][0]["content"] for p in PAIRS])
    pick = (lambda s: s.mean) if per_token else (lambda s: s.total)
    return sum(pick(c) - pick(r) for c, r in zip(chosen, rejected)) / len(PAIRS)


@pytest.mark.parametrize("trainer", ["simpo", "dpo"])
def test_preference_step_lowers_loss_and_widens_margin(trainer, tiny_model_dir, pairs_file, tmp_path):
    per_token = trainer == "simpo"  # SimPO's reward is the length-normalised log-prob; DPO's the summed one
    before = margins(tiny_model_dir, per_token)
    result = run_train(fast(trainer=trainer), str(tiny_model_dir), pairs_file, tmp_path / "out", progress=False)
    m = result.metrics
    assert m["examples"] == len(PAIRS) and m["steps"] == 6
    assert m["final_loss"] < m["first_loss"]
    assert m["final_rewards/margins"] > m["first_rewards/margins"]
    assert m["last_epoch_mean_loss"] < m["first_epoch_mean_loss"]
    # Independently of the trainer's own metrics: the saved model prefers the chosen answers more.
    after = margins(result.model_dir, per_token)
    assert after > before + 0.1, (before, after)
    assert (result.model_dir / "README.md").read_text().count(f"sao {trainer}") == 1
    assert (tmp_path / "out" / "training.png").is_file()


def test_sft_and_lora(tiny_model_dir, pairs_file, tmp_path):
    result = run_train(
        fast(trainer="sft", lora={"enabled": True, "r": 4, "alpha": 8}),
        str(tiny_model_dir),
        pairs_file,
        tmp_path / "out",
        progress=False,
    )
    assert result.metrics["final_loss"] < result.metrics["first_loss"]
    # A merged plain model (loadable by the engine and the next iteration) and the adapter beside it.
    assert (tmp_path / "out" / "model-adapter" / "adapter_config.json").is_file()
    merged, base = (
        load_file(str(result.model_dir / "model.safetensors")),
        load_file(str(tiny_model_dir / "model.safetensors")),
    )
    assert set(merged) == set(base)
    assert any(not torch.equal(merged[k], base[k]) for k in base)


def test_finished_run_is_not_redone(tiny_model_dir, pairs_file, tmp_path):
    first = run_train(fast(epochs=1), str(tiny_model_dir), pairs_file, tmp_path / "out", progress=False)
    stamp = (first.model_dir / "model.safetensors").stat().st_mtime_ns
    again = run_train(fast(epochs=1), str(tiny_model_dir), pairs_file, tmp_path / "out", progress=False)
    assert again.metrics == first.metrics
    assert (first.model_dir / "model.safetensors").stat().st_mtime_ns == stamp


def test_nan_loss_stops_training(tiny_model_dir, pairs_file, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    for f in tiny_model_dir.iterdir():
        (broken / f.name).write_bytes(f.read_bytes())
    weights = load_file(str(broken / "model.safetensors"))
    weights["model.norm.weight"][:] = float("nan")
    save_file(weights, str(broken / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(TrainingDivergedError, match="loss is nan at step 1"):
        run_train(fast(), str(broken), pairs_file, tmp_path / "out", progress=False)


def test_checkpoint_killed_while_saving_is_skipped(tmp_path):
    for step, whole in ((1, True), (2, True), (3, False)):
        ckpt = tmp_path / f"checkpoint-{step}"
        ckpt.mkdir()
        if whole:
            (ckpt / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    (tmp_path / "checkpoint-3" / "trainer_state.json").write_text('{"global_st')  # torn
    assert last_complete_checkpoint(tmp_path) == tmp_path / "checkpoint-2"
    assert last_complete_checkpoint(tmp_path / "none") is None


# --- token ids: what the trainer sees is what the engine generated from ---------------------


def test_training_ids_match_the_engine(smol_engine):
    tokenizer = smol_engine.tokenizer
    end = end_of_turn_id(tokenizer)
    assert tokenizer.convert_ids_to_tokens(end) == "<|im_end|>"
    conversations = [ask("Reply with one word: what colour is the sky?"), ask("What is the capital of France?")]
    completions = smol_engine.generate(conversations, smol_engine_params())
    rows = [
        {"prompt": c, "chosen": out.samples[0].text, "rejected": out.samples[0].text + " Anyway."}
        for c, out in zip(conversations, completions)
    ]
    examples = preference_examples(tokenizer, rows, max_length=512).examples
    header = tokenizer("<|im_start|>assistant\n", add_special_tokens=False)["input_ids"]
    for conversation, out, ex in zip(conversations, completions, examples):
        sample = out.samples[0]
        assert sample.finish_reason == "stop"
        # The prompt is exactly the engine's: one BOS-like <|im_start|> opening, the assistant header at its end.
        assert ex["prompt_ids"] == encode_prompt(tokenizer, conversation)
        assert ex["prompt_ids"][-len(header) :] == header
        assert ex["prompt_ids"][:2] != [ex["prompt_ids"][0]] * 2
        # The completion is the sampled tokens plus the single end-of-turn token the model stopped on.
        assert ex["chosen_ids"] == sample.token_ids + [end]
        assert ex["rejected_ids"].count(end) == 1 and ex["rejected_ids"][-1] == end
        assert header[0] not in ex["chosen_ids"]


def smol_engine_params():
    from sao.engine import SamplingParams

    return SamplingParams(temperature=0.0, max_new_tokens=96)


def test_stock_chat_template_rendering_would_add_a_token_after_end_of_turn(smol_dir):
    """Why sao tokenizes itself: the rendered turn ends '<|im_end|>\\n', which TRL then trains on."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(smol_dir)
    prompt, chosen = ask("Hi"), [{"role": "assistant", "content": "Hello!"}]
    rendered = tokenizer.apply_chat_template(prompt + chosen, tokenize=True, return_dict=True)["input_ids"]
    ours = preference_examples(tokenizer, [{"prompt": prompt, "chosen": chosen, "rejected": chosen}], 64)
    ex = ours.examples[0]
    assert rendered[: len(ex["prompt_ids"]) + len(ex["chosen_ids"])] == ex["prompt_ids"] + ex["chosen_ids"]
    assert len(rendered) == len(ex["prompt_ids"]) + len(ex["chosen_ids"]) + 1  # the trailing "\n"


def test_truncation_and_dropping(smol_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(smol_dir)
    long_answer = " ".join(["word"] * 200)
    rows = [
        {"prompt": ask("Short question?"), "chosen": long_answer, "rejected": "No."},
        {"prompt": ask(" ".join(["long"] * 300)), "chosen": "Yes.", "rejected": "No."},
    ]
    out = preference_examples(tokenizer, rows, max_length=64)
    assert len(out.examples) == 1 and out.dropped == {"prompt_too_long": 1} and out.truncated == 1
    ex = out.examples[0]
    assert len(ex["prompt_ids"]) + len(ex["chosen_ids"]) == 64
    sft = sft_examples(tokenizer, [{"prompt": "Q?", "completion": "A."}], max_length=64).examples[0]
    assert sum(sft["completion_mask"]) == len(tokenizer("A.", add_special_tokens=False)["input_ids"]) + 1


# --- configs and inputs ---------------------------------------------------------------------


def test_each_trainer_has_its_own_defaults():
    config = validate(TrainConfig, {})
    assert config.trainer == "simpo" and config.options == config.simpo
    assert (config.simpo.beta, config.simpo.gamma_beta_ratio) == (10.0, 0.3)  # the paper's β 10, γ 3
    assert (config.dpo.beta, config.ipo.beta, config.robust_dpo.beta) == (0.1, 0.1, 0.1)
    assert config.robust_dpo.label_smoothing == 0.1  # at 0 robust DPO would be DPO
    dpo = validate(TrainConfig, {"trainer": "dpo", "dpo": {"beta": 0.5}})
    assert dpo.options.beta == 0.5 and dpo.simpo.beta == 10.0


@pytest.mark.parametrize(
    "values, field",
    [
        ({"trainer": "ppo"}, "trainer"),
        ({"lora": {"r": 0}}, "lora.r"),
        ({"learning_rate": -1}, "learning_rate"),
        ({"lr": 1e-5}, "lr"),
        ({"simpo": {"beta": 0}}, "simpo.beta"),
        ({"dpo": {"gamma_beta_ratio": 0.3}}, "dpo.gamma_beta_ratio"),  # SimPO's option, not DPO's
        ({"robust_dpo": {"label_smoothing": 0.5}}, "robust_dpo.label_smoothing"),
        ({"method": "dpo"}, "method"),  # the old name of `trainer`
    ],
)
def test_bad_train_config_names_the_field(values, field):
    with pytest.raises(ConfigError, match=rf"^{field}: "):
        validate(TrainConfig, values)


def test_pairs_path_forms(tmp_path, pairs_file):
    assert resolve_pairs_file(tmp_path) == pairs_file  # a run directory
    assert resolve_pairs_file(tmp_path / "pairs") == pairs_file  # RUN_DIR/pairs (the stage name)
    assert resolve_pairs_file(pairs_file) == pairs_file
    with pytest.raises(InputError, match="no pairs found"):
        resolve_pairs_file(tmp_path / "elsewhere")
