"""Run recipes: the shipped ones are valid, bad ones fail with one line naming the field."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from sao.errors import ConfigError
from sao.loop.config import CommandRecipe, command_recipe, merge_sections, validate_run
from sao.recipe import load_yaml
from sao.synth.prompts import PAPER_PROMPT_TEMPLATE

RECIPES = Path(__file__).parent.parent / "recipes"


@pytest.mark.parametrize("path", sorted(RECIPES.glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_recipes_are_valid(path):
    config = validate_run(load_yaml(path))
    assert config.iterations >= 1


def test_paper_recipes_carry_the_papers_settings():
    for name in ("sao-gemma2-9b", "sao-llama3-8b"):
        config = validate_run(load_yaml(RECIPES / f"{name}.yaml"))
        assert config.synth.num_prompts == 60000
        assert config.synth.prompts.template == PAPER_PROMPT_TEMPLATE
        assert (config.synth.responses.temperature, config.synth.responses.top_p) == (0.6, 0.95)
        t = config.train
        assert (t.trainer, t.simpo.beta, t.simpo.gamma_beta_ratio, t.learning_rate) == ("simpo", 10.0, 0.3, 1e-6)
        assert (t.lr_scheduler, t.warmup_ratio, t.epochs) == ("cosine", 0.1, 1.0)


@pytest.mark.parametrize(
    "values, field",
    [
        ({"iterations": 0}, "iterations"),
        ({"trian": {}}, "trian"),
        ({"train": {"trainer": "ppo"}}, "train.trainer"),
        ({"train": {"method": "simpo"}}, "train.method"),  # renamed train.trainer
        ({"train": {"beta": 10.0}}, "train.beta"),  # moved to train.simpo.beta
        ({"train": {"lora": {"enabled": "maybe"}}}, "train.lora.enabled"),
        ({"synth": {"responses": {"k": 1}}}, "synth.responses.k"),
        ({"synth": {"model": "other"}}, "synth"),
        ({"report": {"prompts": "one string"}}, "report.prompts"),
        ({"engine": {"dtype": "int4"}}, "engine.dtype"),
    ],
)
def test_bad_recipe_names_the_field(values, field):
    with pytest.raises(ConfigError, match=rf"^{field}: "):
        validate_run(values)


def _sao(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sao", *args], capture_output=True, text=True, timeout=120)


def test_cli_rejects_a_bad_recipe_in_one_line(tmp_path):
    recipe = tmp_path / "bad.yaml"
    recipe.write_text(yaml.safe_dump({"train": {"learning_rate": "fast"}}))
    proc = _sao("run", str(recipe), "--out", str(tmp_path / "out"))
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "sao: error: train.learning_rate: Input should be a valid number, unable to parse string as a number"
    ]
    proc = _sao("run", str(recipe), "--set", "train.learning_rate=1e-5", "--set", "iterations=-1")
    assert proc.returncode == 2 and proc.stderr.startswith("sao: error: iterations: ")
    assert not (tmp_path / "out").exists()


def test_cli_refuses_the_old_train_keys_in_one_line(tmp_path):
    recipe = tmp_path / "old.yaml"
    recipe.write_text(yaml.safe_dump({"iterations": 1, "train": {"method": "dpo", "beta": 0.05}}))
    proc = _sao("run", str(recipe), "--out", str(tmp_path / "out"))
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert proc.stderr.startswith("sao: error: train.method: renamed: use train.trainer: dpo")
    train = ["--pairs", str(tmp_path), "--out", str(tmp_path / "o")]
    proc = _sao("train", "--recipe", str(recipe), *train)  # keys relative to the train section
    assert proc.returncode == 2 and proc.stderr.startswith("sao: error: method: renamed: use train.trainer: dpo")
    proc = _sao("train", "--trainer", "dpo", "--set", "beta=0.05", *train)
    assert proc.returncode == 2 and proc.stderr.startswith("sao: error: beta: moved: use train.dpo.beta")
    assert not (tmp_path / "out").exists() and not (tmp_path / "o").exists()


def test_cli_train_names_missing_pairs(tmp_path):
    proc = _sao("train", "--pairs", str(tmp_path / "none"), "--out", str(tmp_path / "o"))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith(f"sao: error: {tmp_path / 'none'}: no pairs found")


# --- issue 14: a run recipe's model and engine reach every command that takes --recipe ----------------------


def _manifest(run_dir: Path) -> dict:
    return json.loads((run_dir / "manifest.json").read_text())


def test_synth_recipe_runs_the_run_recipes_model_on_its_engine_and_flags_override(tmp_path, tiny_model_dir):
    # Before the fix `sao synth --recipe` read only the synth section: this ran SmolLM2, in the default dtype.
    recipe = tmp_path / "run.yaml"
    synth = {"num_prompts": 2, "personas": {"max_new_tokens": 8}}
    recipe.write_text(yaml.safe_dump({"model": str(tiny_model_dir), "engine": {"dtype": "float32"}, "synth": synth}))
    out = tmp_path / "synth"
    proc = _sao("synth", "--recipe", str(recipe), "--out", str(out), "--until", "personas")
    assert proc.returncode == 0, proc.stderr
    manifest = _manifest(out)
    assert manifest["config"]["model"] == str(tiny_model_dir)
    assert (manifest["model"]["spec"], manifest["model"]["dtype"]) == (str(tiny_model_dir), "float32")

    flagged = tmp_path / "flagged"
    proc = _sao("synth", "--recipe", str(recipe), "-o", str(flagged), "--until", "personas", "--dtype", "bfloat16")
    assert proc.returncode == 0, proc.stderr
    assert _manifest(flagged)["model"]["dtype"] == "bfloat16"  # the flag wins over the recipe's engine


def test_synth_until_a_stage_that_does_not_run_is_one_error_line(tmp_path, tiny_model_dir):
    out = tmp_path / "synth"
    args = ["synth", "--model", str(tiny_model_dir), "--no-personas", "--until", "personas", "--out", str(out)]
    proc = _sao(*args)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "sao: error: until: 'personas' does not run with prompts.no_personas; stop after 'prompts' instead"
    ]
    assert not out.exists()  # refused before anything was written


def test_train_recipe_trains_the_run_recipes_model_unless_told_otherwise(tmp_path):
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(json.dumps({"prompt": "p", "chosen": "a", "rejected": "b"}) + "\n")
    recipe = tmp_path / "run.yaml"
    recipe.write_text(yaml.safe_dump({"model": str(tmp_path / "recipe-model"), "train": {"dtype": "float32"}}))
    # Both models are missing, so the error shows which one `sao train` went for, with nothing trained.
    proc = _sao("train", "--recipe", str(recipe), "--pairs", str(pairs), "--out", str(tmp_path / "o"))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "recipe-model" in proc.stderr and proc.stderr.startswith("sao: error: ")
    flag = str(tmp_path / "flag-model")
    proc = _sao("train", "--recipe", str(recipe), "--model", flag, "--pairs", str(pairs), "--out", str(tmp_path / "o"))
    assert proc.returncode == 2 and "flag-model" in proc.stderr and "recipe-model" not in proc.stderr


def test_command_recipe_splits_run_recipes_and_section_files():
    run = {"model": "m", "engine": {"dtype": "float32"}, "iterations": 2, "train": {"simpo": {"beta": 2.0}}}
    assert command_recipe(run, "train") == CommandRecipe({"simpo": {"beta": 2.0}}, "m", {"dtype": "float32"})
    assert command_recipe(run, "eval") == CommandRecipe({}, "m", {"dtype": "float32"})  # a run recipe, no eval section
    section_file = {"model": "m", "num_prompts": 3}
    assert command_recipe(section_file, "synth") == CommandRecipe(section_file)  # the whole file is the section
    with pytest.raises(ConfigError, match="^engine: must be a section"):
        command_recipe({"synth": {}, "engine": "vllm"}, "synth")
    # A run recipe's permission to run a model repo's code reaches `sao synth` and `sao train` too.
    assert command_recipe({**run, "trust_remote_code": True}, "train").trust_remote_code is True
    assert command_recipe(run, "train").trust_remote_code is False
    with pytest.raises(ConfigError, match="^trust_remote_code: must be true or false"):
        command_recipe({**run, "trust_remote_code": "yes"}, "train")
    assert merge_sections({"dtype": "float32", "ray": {"enabled": True}}, {"ray": {"num_actors": 2}}) == {
        "dtype": "float32",
        "ray": {"enabled": True, "num_actors": 2},
    }


def test_judge_eval_recipe_judges_with_the_run_recipes_model(tmp_path):
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(json.dumps({"prompt": "p", "response_a": "a", "response_b": "b", "label": "a"}) + "\n")
    recipe = tmp_path / "run.yaml"
    recipe.write_text(yaml.safe_dump({"model": str(tmp_path / "recipe-judge"), "iterations": 1}))
    proc = _sao("judge-eval", "--recipe", str(recipe), "--pairs", str(pairs), "-o", str(tmp_path / "j"))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "recipe-judge" in proc.stderr


def test_check_until_refuses_stages_that_do_not_exist_or_do_not_run():
    from sao.methods.sao import METHOD as SAO
    from sao.synth.config import SynthConfig
    from sao.synth.pipeline import check_until

    with pytest.raises(ConfigError, match=r"^until: 'pairz' is not a stage \(personas, prompts"):
        check_until(SAO, SynthConfig(), "pairz")
    with pytest.raises(ConfigError, match="^until: 'personas' does not run with prompts.no_personas"):
        check_until(SAO, SynthConfig(prompts={"no_personas": True}), "personas")
    check_until(SAO, SynthConfig(prompts={"no_personas": True}), "prompts")
    check_until(SAO, SynthConfig(), None)


ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    "command",
    [
        ["run", str(ROOT / "recipes" / "quickstart-cpu.yaml")],
        ["eval", "-i", str(ROOT / "tests/data/mt_bench/question.jsonl"), "-m", "x", "--baseline", "y"],
        ["judge-eval", "--pairs", "PAIRS"],
    ],
)
def test_every_command_that_builds_an_engine_takes_engine_settings(command, tmp_path):
    """`--engine KEY=VALUE` is the same flag everywhere: here an unknown backend, refused in one line."""
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(json.dumps({"prompt": "p", "response_a": "a", "response_b": "b", "label": "a"}) + "\n")
    command = [str(pairs) if c == "PAIRS" else c for c in command]
    proc = _sao(*command, "--out", str(tmp_path / "out"), "--engine", "backend=telepathy")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.startswith("sao: error: ") and "engine.backend" in proc.stderr, proc.stderr
