"""The trainer table: each trainer trains, its section reaches TRL, `train.trl` passes the rest, TRL internals hold."""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import math
import subprocess
import sys
import tomllib
from pathlib import Path

import datasets
import pytest
import torch
from packaging.requirements import Requirement
from packaging.version import Version
from safetensors.torch import load_file
from transformers import AutoTokenizer

from conftest import PAIRS
from sao.errors import ConfigError
from sao.loop.config import validate_run
from sao.recipe import Section, validate
from sao.train.config import TRAINER_NAMES, TrainConfig
from sao.train.grpo import grpo_trainer
from sao.train.pretokenized import preference_trainer, simpo_trainer
from sao.train.run import run_train
from sao.train.table import PAIR_COLUMNS, TRAINERS, trainer_columns
from sao.train.trainers import build_trainer, common_arguments, training_arguments
from sao.train.trl_fields import COMMON_SETS

ROOT = Path(__file__).resolve().parents[1]
# The trainers that read pairs (or SFT rows); GRPO samples its own answers to prompts: tests/test_grpo.py.
PAIR_TRAINERS = [n for n in TRAINER_NAMES if n != "grpo"]
QUIET = {"report_to": "none", "gradient_checkpointing": False, "max_length": 128}


def config(**values) -> TrainConfig:
    return validate(TrainConfig, {**QUIET, **values})


def trl_config(values: dict, tmp_path: Path):
    return training_arguments(config(**values), tmp_path, compute=torch.float32, progress=False)


# --- the table itself ------------------------------------------------------------------------


def test_every_trainer_choice_has_a_record_and_a_section():
    assert tuple(TRAINERS) == TRAINER_NAMES
    for name, record in TRAINERS.items():
        assert record.name == name
        assert issubclass(TrainConfig.model_fields[name].annotation, Section)


def test_the_table_is_read_without_importing_torch_or_trl():
    """The loop reads columns while it plans an iteration; TRL and torch load only to train."""
    code = (
        "import sys, sao.train.table as t; t.trainer_columns('dpo'); "
        "print('torch' in sys.modules, 'trl' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_columns_for_the_loop():
    for name in ("simpo", "dpo", "ipo", "robust_dpo"):
        assert trainer_columns(name) == (PAIR_COLUMNS,) and PAIR_COLUMNS == {"prompt", "chosen", "rejected"}
    # SFT trains on a completion, or on a pair's chosen response.
    assert trainer_columns("sft") == ({"prompt", "completion"}, {"prompt", "chosen"})
    with pytest.raises(ConfigError, match=r"^train.trainer: unknown trainer 'ppo'"):
        trainer_columns("ppo")


def test_what_sao_sets_is_declared_and_exists_in_trl(tmp_path):
    """Each TRL field sao sets names what to change instead, and is a field of the TRL config class."""
    common = common_arguments(config(), tmp_path, compute=torch.float32, progress=False)
    assert set(common) == set(COMMON_SETS)
    for name, record in TRAINERS.items():
        batch = {"batch_size": 6} if name == "grpo" else {}  # GRPO's steps are whole groups of 6
        assert set(record.arguments(config(trainer=name, **batch))) == set(record.sets), name
        fields = {f.name for f in dataclasses.fields(record.config_class())}
        assert (set(common) - record.without) | set(record.sets) <= fields, name
        assert record.without <= set(common) and not record.without & fields, name


@pytest.mark.parametrize(
    "values, expected",
    [
        (
            {"simpo": {"beta": 2.0, "gamma_beta_ratio": 0.5, "label_smoothing": 0.1}},
            {"loss_type": "simpo", "cpo_alpha": 0.0, "beta": 2.0, "simpo_gamma": 1.0, "label_smoothing": 0.1},
        ),
        ({"trainer": "dpo", "dpo": {"beta": 0.2}}, {"loss_type": ["sigmoid"], "beta": 0.2, "label_smoothing": 0.0}),
        ({"trainer": "ipo", "ipo": {"beta": 0.3}}, {"loss_type": ["ipo"], "beta": 0.3}),
        ({"trainer": "robust_dpo"}, {"loss_type": ["robust"], "beta": 0.1, "label_smoothing": 0.1}),
        ({"trainer": "sft"}, {"completion_only_loss": True, "packing": False}),
        (
            {"trainer": "grpo", "batch_size": 6},
            {
                "num_generations": 6,
                "beta": 0.001,
                "loss_type": "dr_grpo",
                "scale_rewards": "none",
                "max_completion_length": 4096,
                "reward_weights": [1.0, 0.2],
            },
        ),
    ],
)
def test_a_trainers_section_reaches_its_trl_config(values, expected, tmp_path):
    args = trl_config(values, tmp_path)
    assert {key: getattr(args, key) for key in expected} == expected
    assert args.learning_rate == 1e-6
    if values.get("trainer") != "grpo":  # GRPOConfig has no max_length: prompt and completion have their own
        assert args.max_length == 128


def test_only_the_chosen_trainers_section_is_part_of_the_run():
    edited = config(trainer="dpo", simpo={"beta": 3.0})
    assert "simpo" not in edited.effective() and edited.effective()["dpo"] == {"beta": 0.1, "label_smoothing": 0.0}
    assert edited.effective() == config(trainer="dpo").effective()


# --- every trainer trains on sao's token ids ---------------------------------------------------


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    return AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.mark.parametrize("name", PAIR_TRAINERS)
def test_the_trainer_keeps_saos_token_ids(name, tokenizer, tiny_model_dir, tmp_path):
    """What each TRL trainer will compute on is sao's tokenisation, not TRL's own."""
    from transformers import AutoModelForCausalLM

    record = TRAINERS[name]
    cfg = config(trainer=name)
    ours = record.examples(tokenizer, PAIRS, cfg).examples
    args = training_arguments(cfg, tmp_path, compute=torch.float32, progress=False)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    reference = AutoModelForCausalLM.from_pretrained(tiny_model_dir) if record.needs_reference(cfg.options) else None
    trainer = build_trainer(cfg, model, tokenizer, datasets.Dataset.from_list(ours), args, ref_model=reference)
    held = trainer.train_dataset.to_list()
    assert len(held) == len(ours)
    for row, ex in zip(held, ours):
        if name == "sft":  # the loss is on the response tokens only
            assert row["input_ids"] == ex["input_ids"]
            assert row["labels"] == [t if m else -100 for t, m in zip(ex["input_ids"], ex["completion_mask"])]
        elif name == "simpo":  # CPO's layout of the same ids
            for side in ("chosen", "rejected"):
                assert row[f"{side}_input_ids"] == ex["prompt_ids"] + ex[f"{side}_ids"]
                assert row[f"{side}_labels"] == [-100] * len(ex["prompt_ids"]) + ex[f"{side}_ids"]
        else:
            assert {k: row[k] for k in ex} == ex


# The first logged loss when the policy is its own reference (every log-ratio 0): ln 2 for DPO and
# robust DPO (its ε-correction cancels at 0), and (1/(2β))² for IPO.
FIRST_LOSS = {"dpo": math.log(2), "ipo": (1 / (2 * 0.1)) ** 2, "robust_dpo": math.log(2)}


@pytest.mark.parametrize("name", PAIR_TRAINERS)
def test_every_trainer_trains_one_step(name, tiny_model_dir, pairs_file, tmp_path):
    one_step = config(
        trainer=name, learning_rate=1e-3, lr_scheduler="constant", warmup_ratio=0.0, epochs=1, batch_size=len(PAIRS)
    )
    result = run_train(one_step, str(tiny_model_dir), pairs_file, tmp_path / "out", progress=False)
    m = result.metrics
    assert m["steps"] == 1 and m["examples"] == len(PAIRS) and math.isfinite(m["first_loss"])
    if name in FIRST_LOSS:
        assert m["first_loss"] == pytest.approx(FIRST_LOSS[name], abs=1e-5)
    if name != "sft":
        assert "first_rewards/margins" in m
    before = load_file(str(tiny_model_dir / "model.safetensors"))
    after = load_file(str(result.model_dir / "model.safetensors"))
    assert any(not torch.equal(after[k], before[k]) for k in before)
    assert f"sao {name}" in (result.model_dir / "README.md").read_text()


# --- train.trl: the rest of the TRL config -----------------------------------------------------


def test_trl_fields_reach_the_trl_config(tmp_path):
    args = trl_config({"trl": {"adam_beta2": 0.95, "max_completion_length": 64}}, tmp_path)
    assert (args.adam_beta2, args.max_completion_length) == (0.95, 64)
    dpo = trl_config({"trainer": "dpo", "trl": {"truncation_mode": "keep_end"}}, tmp_path)
    assert dpo.truncation_mode == "keep_end"
    assert trl_config({}, tmp_path).adam_beta2 == 0.999  # TRL's default where nothing is passed


@pytest.mark.parametrize(
    "train, message",
    [
        ({"trl": {"no_such_field": 1}}, "not a field of CPOConfig"),
        ({"trainer": "sft", "trl": {"simpo_gamma": 1.0}}, "not a field of SFTConfig"),  # another trainer's field
        ({"trl": {"beta": 5.0}}, "sao sets beta itself: use train.simpo.beta"),
        ({"trl": {"simpo_gamma": 5.0}}, "use train.simpo.gamma_beta_ratio"),
        ({"trainer": "ipo", "trl": {"beta": 5.0}}, "use train.ipo.beta"),
        ({"trainer": "dpo", "trl": {"loss_type": ["hinge"]}}, "use train.trainer"),
        ({"trl": {"learning_rate": 1e-5}}, "use train.learning_rate"),
        ({"trl": {"bf16": True}}, "use train.dtype"),
        ({"trl": {"activation_checkpointing": True}}, "use train.gradient_checkpointing"),  # its newer name
        ({"trainer": "sft", "trl": {"packing": True}}, "sao sets packing itself: fixed"),
    ],
)
def test_trl_fields_refused_at_validation_name_the_field(train, message):
    field = next(iter(train["trl"]))
    with pytest.raises(ConfigError, match=rf"^train\.trl\.{field}: .*{message}"):
        validate_run({"train": train})
    with pytest.raises(ConfigError, match=rf"^trl\.{field}: "):  # `sao train --set trl.FIELD=...`
        validate(TrainConfig, train)


def test_a_trl_value_trl_rejects_names_the_field(tmp_path):
    # A valid field first, so that the culprit is found rather than the first field named.
    bad = {"adam_beta2": 0.95, "optim": "no_such_optimizer"}
    with pytest.raises(ConfigError, match=r"^train\.trl\.optim: no_such_optimizer is not a valid OptimizerNames"):
        trl_config({"trl": bad}, tmp_path)
    with pytest.raises(ConfigError, match=r"^train\.trl\.eval_strategy: "):
        trl_config({"trainer": "dpo", "trl": {"eval_strategy": "sometimes"}}, tmp_path)


# --- recipes written before the trainer sections --------------------------------------------


@pytest.mark.parametrize(
    "train, field, place",
    [
        ({"method": "dpo"}, "method", "use train.trainer: dpo"),
        ({"beta": 2.0}, "beta", "use train.simpo.beta"),
        ({"trainer": "dpo", "beta": 2.0}, "beta", "use train.dpo.beta"),
        ({"gamma_beta_ratio": 0.3}, "gamma_beta_ratio", "use train.simpo.gamma_beta_ratio"),
        ({"trainer": "robust_dpo", "label_smoothing": 0.2}, "label_smoothing", "use train.robust_dpo.label_smoothing"),
        ({"trainer": "ipo", "label_smoothing": 0.2}, "label_smoothing", "train.dpo.label_smoothing"),  # ipo has none
        ({"trainer": "sft", "beta": 1.0}, "beta", "train.sft has no beta"),
    ],
)
def test_old_flat_keys_name_their_new_place(train, field, place):
    with pytest.raises(ConfigError, match=rf"^train\.{field}: .*{place}"):
        validate_run({"train": train})


# --- the TRL internals sao overrides -------------------------------------------------------------


def test_installed_trl_lies_in_the_pinned_range():
    import trl

    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    pin = next(r for r in map(Requirement, dependencies) if r.name == "trl").specifier
    installed = Version(trl.__version__)
    assert installed in pin, f"TRL {installed} is outside sao's tested range {pin}"
    # Tight: the next minor release, which may move the internals below, is outside it.
    assert Version(f"{installed.major}.{installed.minor + 1}") not in pin


@pytest.mark.parametrize(
    "module, cls, method, parameters, ours, caller",
    [
        (
            "trl.experimental.cpo",
            "CPOTrainer",
            "tokenize_row",
            ["self", "feature", "model"],
            simpo_trainer,
            "__init__",
        ),
        (
            "trl",
            "DPOTrainer",
            "_prepare_dataset",
            ["self", "dataset", "processing_class", "args", "dataset_name"],
            preference_trainer,
            "__init__",
        ),
        (
            "trl",
            "GRPOTrainer",
            "_generate_single_turn",
            ["self", "prompt_ids", "images", "multimodal_fields", "num_generations", "has_tool_images"],
            grpo_trainer,
            "_generate",
        ),
    ],
)
def test_overridden_trl_methods_are_still_there_and_called(module, cls, method, parameters, ours, caller):
    """A TRL that renamed, re-signed or stopped calling these would silently re-tokenise sao's rows (or, for
    GRPO, sample its rollouts with model.generate again)."""
    trl_class = getattr(importlib.import_module(module), cls)
    assert method in vars(trl_class), f"{cls}.{method} is gone: sao's override of it is dead"
    assert list(inspect.signature(getattr(trl_class, method)).parameters) == parameters
    assert list(inspect.signature(getattr(ours(), method)).parameters) == parameters
    assert f"self.{method}" in inspect.getsource(getattr(trl_class, caller))
