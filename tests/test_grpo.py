"""The grpo trainer (`sao.train.grpo`): rewards wired into TRL's GRPOTrainer on a tiny model, SAR read from the
live weights, sao's rollouts, and the settings refused before anything runs."""

from __future__ import annotations

import json
from unittest import mock

import datasets
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from sao.errors import ConfigError
from sao.recipe import validate
from sao.rewards.sar import context_pair, sar_from_model
from sao.train import grpo
from sao.train.config import TrainConfig
from sao.train.grpo import SelfAlignedReward, VerifiableReward, rollout_seeds, sao_rollouts
from sao.train.run import run_train
from sao.train.table import TRAINERS
from sao.train.trainers import build_trainer, training_arguments

QUIET = {"report_to": "none", "gradient_checkpointing": False, "save_steps": 100, "logging_steps": 1}
ROWS = [
    {"id": "q1", "prompt": [{"role": "user", "content": "What is 2 + 2?"}], "answer": "4"},
    {"id": "q2", "prompt": [{"role": "user", "content": "What is 3 + 4?"}], "answer": "7"},
]


def config(**values) -> TrainConfig:
    grpo_section = {"num_generations": 3, "max_completion_length": 8, **values.pop("grpo", {})}
    return validate(TrainConfig, {**QUIET, "trainer": "grpo", "batch_size": 6, "grpo": grpo_section, **values})


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    return AutoTokenizer.from_pretrained(tiny_model_dir)


def scripted(tokenizer):
    """Rollouts that answer right, wrong or not at all, in turn, each closed by EOS: the verifiable reward then
    varies within every group, so the weighted total has both terms."""
    texts = ["Answer: {right}", "Answer: 99", "no idea"]

    def rollouts(model, tok, prompt_ids, params, seeds):
        out = []
        for i, ids in enumerate(prompt_ids):
            right = "4" if "2 + 2" in tok.decode(ids) else "7"
            text = texts[i % 3].format(right=right)
            out.append(tok(text, add_special_tokens=False)["input_ids"] + [tok.eos_token_id])
        return out

    return rollouts


def test_a_grpo_step_logs_both_rewards_and_the_total_is_their_weighted_sum(tiny_model_dir, tokenizer, tmp_path):
    rows = tmp_path / "rows.jsonl"
    rows.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    with mock.patch.object(grpo, "sao_rollouts", scripted(tokenizer)):
        result = run_train(config(), str(tiny_model_dir), rows, tmp_path / "out", progress=False)
    history = [json.loads(line) for line in (tmp_path / "out" / "history.jsonl").read_text().splitlines()]
    steps = [h for h in history if "reward" in h]
    assert steps, history
    for h in steps:
        verifiable, sar = h["rewards/verifiable/mean"], h["rewards/sar/mean"]
        assert verifiable == pytest.approx(1 / 3)  # one right answer in every three
        assert sar != 0.0
        assert h["reward"] == pytest.approx(verifiable + 0.2 * sar, abs=1e-6)
    assert result.metrics["final_rewards/verifiable/mean"] == pytest.approx(1 / 3, abs=1e-4)
    assert (tmp_path / "out" / "training.png").is_file()
    assert (tmp_path / "out" / "model" / "config.json").is_file()


def built_trainer(tiny_model_dir, tokenizer, tmp_path, cfg):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    reference = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    examples = TRAINERS["grpo"].examples(tokenizer, ROWS, cfg).examples
    args = training_arguments(cfg, tmp_path, compute=torch.float32, progress=False)
    with mock.patch("trl.trainer.grpo_trainer.create_model_from_path", side_effect=AssertionError("reloaded")):
        trainer = build_trainer(cfg, model, tokenizer, datasets.Dataset.from_list(examples), args, ref_model=reference)
    return trainer, reference


def test_sar_reads_the_current_policy_not_a_copy(tiny_model_dir, tokenizer, tmp_path):
    trainer, reference = built_trainer(tiny_model_dir, tokenizer, tmp_path, config())
    sar = next(f for f in trainer.reward_funcs if isinstance(f, SelfAlignedReward))
    prompts = [r["prompt"] for r in ROWS]
    completions = [tokenizer("Answer: 4", add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]] * 2
    before = sar(prompts=prompts, completions=["Answer: 4"] * 2, completion_ids=completions)
    with torch.no_grad():  # an optimiser step, in effect: the trainer's own weights move
        for p in trainer.model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    after = sar(prompts=prompts, completions=["Answer: 4"] * 2, completion_ids=completions)
    assert after != pytest.approx(before, abs=1e-4)
    contexts = [context_pair(tokenizer, p) for p in prompts]
    assert after == pytest.approx(sar_from_model(trainer.model, contexts, completions, pad_id=tokenizer.pad_token_id))
    # The frozen reference is the copy run_train made, not a reload (create_model_from_path would have raised).
    assert trainer.ref_model is not None
    ref_params = dict(trainer.ref_model.named_parameters())
    for name, p in reference.named_parameters():
        assert torch.equal(ref_params[name], p)


def test_beta_zero_needs_no_reference():
    assert not TRAINERS["grpo"].needs_reference(config(grpo={"beta": 0.0}).options)
    assert TRAINERS["grpo"].needs_reference(config().options)


def test_the_verifiable_reward_reads_each_rows_answer_and_checker():
    reward = VerifiableReward("math")
    completions = [[{"role": "assistant", "content": c}] for c in ("Answer: 1/2", "Answer: 0.5", "Answer: Paris", "")]
    rewards = reward(
        prompts=[None] * 4,
        completions=completions,
        answer=["0.5", "1/2", "paris", "3"],
        checker=["math", "exact", "exact", "math"],
    )
    # 1/2 = 0.5 for maths; exact match is on normalised text, so "0.5" is not "1/2"; no answer scores 0
    assert rewards == [1.0, 0.0, 1.0, 0.0]


def test_sao_rollouts_end_with_the_eos_that_stopped_them_and_groups_differ(smol_dir):
    model = AutoModelForCausalLM.from_pretrained(smol_dir)
    tok = AutoTokenizer.from_pretrained(smol_dir)
    prompt = context_pair(tok, [{"role": "user", "content": "Say hello in one word."}])[0]
    params = {"temperature": 1.0, "top_p": 1.0, "max_new_tokens": 24}
    seeds = rollout_seeds(0, step=3, process=0, count=4)
    assert len(set(seeds)) == 4 and seeds == rollout_seeds(0, step=3, process=0, count=4)
    with torch.no_grad():
        out = sao_rollouts(model, tok, [prompt] * 4, params, seeds)
        again = sao_rollouts(model, tok, [prompt] * 4, params, seeds)
    assert out == again  # a resumed step samples the same rollouts
    assert len({tuple(o) for o in out}) > 1  # one seed per rollout, not one per group
    finished = [o for o in out if len(o) <= 24 and o[-1] == tok.eos_token_id]
    assert finished, out  # SmolLM2 says hello within 24 tokens, and the EOS that stopped it is kept
    assert all(tok.eos_token_id not in o[:-1] for o in out)


@pytest.mark.parametrize(
    "values, message",
    [
        ({"batch_size": 4}, r"^batch_size: GRPO trains on whole groups: .* \(4 completions\) must be a multiple"),
        ({"grpo": {"rewards": ["sar", "sar"]}}, r"^grpo.rewards: each reward may appear once"),
        ({"grpo": {"rewards": []}}, r"^grpo.rewards"),
    ],
)
def test_bad_grpo_settings_name_their_field(values, message):
    with pytest.raises(ConfigError, match=message):
        config(**values)


def test_sampling_settings_saos_rollouts_cannot_honour_are_refused(tiny_model_dir, tokenizer, tmp_path):
    with pytest.raises(ConfigError, match=r"^train.trl.top_k: sao's rollouts sample with temperature and top_p"):
        built_trainer(tiny_model_dir, tokenizer, tmp_path, config(trl={"top_k": 5}))
    built_trainer(tiny_model_dir, tokenizer, tmp_path, config(trl={"top_k": 5}, grpo={"rollouts": "trl"}))


def test_rollouts_decode_in_the_compute_dtype_without_autocasts_per_call_casts(tiny_model_dir):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)  # float32 master weights
    original = model.forward
    # What accelerate does under mixed precision: the instance's forward becomes an autocast wrapper.
    model._original_forward = original
    model.forward = torch.autocast("cpu", dtype=torch.bfloat16)(original)
    wrapper = model.forward
    with grpo.decoding_model(model, torch.bfloat16) as decoder:
        assert decoder is not model and next(decoder.parameters()).dtype == torch.bfloat16
        assert "forward" not in decoder.__dict__  # the class's forward: no cast of every weight on each call
    assert next(model.parameters()).dtype == torch.float32 and model.forward is wrapper
    with grpo.decoding_model(model, torch.float32) as decoder:
        assert decoder is model and model.forward is original
    assert model.forward is wrapper  # put back for training
