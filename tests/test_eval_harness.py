"""lm-evaluation-harness runs: the errors a user meets first, one tiny end-to-end run, and the report files.

The tests that need lm_eval skip without it (it is the optional extra ``sao[harness]``). None of them needs the
network: the end-to-end run scores a tiny random model on a task whose dataset is a local JSONL file.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import sao.eval.harness as harness
from sao.errors import ConfigError, SaoError
from sao.eval.harness import (
    HarnessResult,
    MissingExtraError,
    run_harness,
    write_harness_report,
)


def one_line(exc: pytest.ExceptionInfo[SaoError]) -> str:
    message = str(exc.value)
    assert "\n" not in message
    return message


@pytest.fixture(scope="module")
def task_manager():
    """lm_eval's task index, built once: building it scans ~15k YAML files (several seconds)."""
    pytest.importorskip("lm_eval")
    from lm_eval.tasks import TaskManager

    return TaskManager()


@pytest.fixture
def shared_task_manager(task_manager, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(harness, "_task_manager", lambda model_args: task_manager)
    return task_manager


# --- errors before any model is loaded ---


def test_missing_extra_names_the_install_command(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setitem(sys.modules, "lm_eval", None)  # makes `import lm_eval` raise ImportError
    with pytest.raises(MissingExtraError) as exc:
        run_harness(str(tmp_path), ["gsm8k"])
    message = one_line(exc)
    assert "pip install 'sao[harness]'" in message
    assert "failed to import" not in message


def test_unknown_task_is_named_with_close_matches(shared_task_manager, tmp_path: Path):
    # tmp_path is an empty directory: had the model been loaded, the error would be a different one.
    with pytest.raises(ConfigError) as exc:
        run_harness(str(tmp_path), ["gsm8k", "gsm8kk", "no_such_benchmark_xyz"])
    message = one_line(exc)
    assert message.startswith("tasks: unknown lm_eval tasks 'gsm8kk' (did you mean 'gsm8k'")
    assert "'no_such_benchmark_xyz'" in message
    assert "'gsm8k'," not in message.split("(did you mean")[0]  # the known task is not reported


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"limit": 0}, "limit:"), ({"batch_size": 0}, "batch_size:"), ({"num_fewshot": -1}, "num_fewshot:")],
)
def test_bad_settings_name_the_field(kwargs, field, tmp_path: Path):
    pytest.importorskip("lm_eval")
    with pytest.raises(ConfigError) as exc:
        run_harness(str(tmp_path), ["gsm8k"], **kwargs)
    assert one_line(exc).startswith(field)


def test_a_bare_string_of_tasks_is_refused(tmp_path: Path):
    pytest.importorskip("lm_eval")
    with pytest.raises(ConfigError, match="^tasks:"):
        run_harness(str(tmp_path), "gsm8k")  # type: ignore[arg-type]


_OFFLINE_SCRIPT = """
import sys

from lm_eval.tasks import TaskManager

import sao.eval.harness as harness

shared = TaskManager()  # built once for both tasks: it takes several seconds
harness._task_manager = lambda model_args: shared
for task in sys.argv[2:]:
    try:
        harness.run_harness(sys.argv[1], [task])
    except harness.SaoError as exc:
        print(f"{type(exc).__name__}: {exc}")
    else:
        print("no error")
"""


def test_offline_dataset_names_the_task_and_the_dataset(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """Run in a fresh interpreter: huggingface_hub and datasets read HF_* variables once, at import."""
    pytest.importorskip("lm_eval")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # an empty cache
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf" / "datasets"))
    model = tmp_path / "model"
    model.mkdir()  # empty: the datasets must fail before the model is loaded
    proc = subprocess.run(
        [sys.executable, "-c", _OFFLINE_SCRIPT, str(model), "gsm8k", "mmlu"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    gsm8k, mmlu = proc.stdout.strip().splitlines()[-2:]
    assert gsm8k.startswith(
        "DatasetUnavailableError: lm_eval task 'gsm8k' needs the dataset 'openai/gsm8k' (config 'main'), which "
        "could not be downloaded or found in the local HF cache: "
    )
    assert "OfflineModeIsEnabled" in gsm8k
    # A group names the subtask whose dataset failed.
    assert mmlu.startswith("DatasetUnavailableError: lm_eval task 'mmlu' (subtask 'mmlu_")
    assert "needs the dataset 'cais/mmlu' (config '" in mmlu


def test_unreachable_hub_switches_to_offline_mode_and_back(monkeypatch: pytest.MonkeyPatch):
    import datasets.config
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(harness, "hub_reachable", lambda: False)
    with harness._offline_if_hub_unreachable() as switched:
        assert switched
        assert constants.HF_HUB_OFFLINE and datasets.config.HF_HUB_OFFLINE and datasets.config.HF_DATASETS_OFFLINE
    assert not constants.HF_HUB_OFFLINE and not datasets.config.HF_HUB_OFFLINE

    monkeypatch.setattr(harness, "hub_reachable", lambda: True)
    with harness._offline_if_hub_unreachable() as switched:
        assert not switched
        assert not constants.HF_HUB_OFFLINE


# --- a real run on a tiny model ---


def local_task(tmp_path: Path) -> Path:
    """A 6-question multiple-choice task read from a local JSONL file, so no download is needed."""
    docs = tmp_path / "docs.jsonl"
    rows = [{"question": f"What is {i} + 1?", "choices": [str(i + 1), str(i + 2)], "answer": 0} for i in range(6)]
    docs.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    config = tmp_path / "sao_tiny_mc.yaml"
    config.write_text(
        textwrap.dedent(f"""\
            task: sao_tiny_mc
            dataset_path: json
            dataset_kwargs:
              data_files:
                test: {docs}
              cache_dir: {tmp_path / "datasets-cache"}
            test_split: test
            output_type: multiple_choice
            doc_to_text: "Question: {{{{question}}}}\\nAnswer:"
            doc_to_choice: "{{{{choices}}}}"
            doc_to_target: answer
            metric_list:
              - metric: acc
                aggregation: mean
                higher_is_better: true
            """),
        encoding="utf-8",
    )
    return config


def test_tiny_model_run_returns_metrics_and_settings(shared_task_manager, tiny_model_dir: Path, tmp_path: Path):
    if not hasattr(shared_task_manager, "load"):
        pytest.skip("task YAML files by path need lm_eval >= 0.4.12")
    import lm_eval

    task = str(local_task(tmp_path))
    result = run_harness(str(tiny_model_dir), [task], limit=4, batch_size=2, num_fewshot=1)

    assert result.metrics.keys() == {"sao_tiny_mc"}
    metrics = result.metrics["sao_tiny_mc"]
    assert metrics.keys() == {"acc,none", "acc_stderr,none"}
    assert 0.0 <= metrics["acc,none"] <= 1.0
    assert metrics["acc_stderr,none"] is not None and metrics["acc_stderr,none"] >= 0.0
    assert result.n_samples == {"sao_tiny_mc": 4}
    assert result.n_shot == {"sao_tiny_mc": 1}
    assert result.settings() == {
        "model": str(tiny_model_dir),
        "model_path": str(tiny_model_dir),
        "tasks": [task],
        "limit": 4,
        "num_fewshot": 1,
        "batch_size": 2,
        "device": "cpu",
        "dtype": "float32",
        "lm_eval_version": lm_eval.__version__,
    }


# --- the report ---


def hand_made_result() -> HarnessResult:
    return HarnessResult(
        model="smollm2-135m",
        model_path="/models/smollm2-135m",
        tasks=("gsm8k", "arc_easy"),
        limit=50,
        num_fewshot=None,
        batch_size=8,
        device="cpu",
        dtype="float32",
        lm_eval_version="0.4.13",
        metrics={
            "gsm8k": {
                "exact_match,strict-match": 0.04,
                "exact_match_stderr,strict-match": 0.0277,
                "exact_match,flexible-extract": 0.06,
                "exact_match_stderr,flexible-extract": None,
            },
            "arc_easy": {
                "acc,none": 0.5,
                "acc_stderr,none": 0.0714,
                "acc_norm,none": 0.52,
                "acc_norm_stderr,none": 0.07,
            },
        },
        n_samples={"gsm8k": 50, "arc_easy": 50},
        n_shot={"gsm8k": 5, "arc_easy": 0},
    )


def test_report_writes_json_and_markdown(tmp_path: Path):
    result = hand_made_result()
    out = tmp_path / "report"  # does not exist yet

    json_path = write_harness_report(result, out)

    assert json_path == out / "harness.json"
    assert json.loads(json_path.read_text(encoding="utf-8")) == {
        "settings": {
            "model": "smollm2-135m",
            "model_path": "/models/smollm2-135m",
            "tasks": ["gsm8k", "arc_easy"],
            "limit": 50,
            "num_fewshot": None,
            "batch_size": 8,
            "device": "cpu",
            "dtype": "float32",
            "lm_eval_version": "0.4.13",
        },
        "metrics": result.metrics,
        "n_samples": {"gsm8k": 50, "arc_easy": 50},
        "n_shot": {"gsm8k": 5, "arc_easy": 0},
    }
    markdown = (out / "harness.md").read_text(encoding="utf-8")
    assert markdown.startswith("# lm-evaluation-harness: smollm2-135m\n")
    assert "lm_eval 0.4.13, limit 50 per task, task default few-shot, float32 on cpu, batch size 8." in markdown
    table = markdown[markdown.index("| task |") :].splitlines()
    assert table == [
        "| task | metric | value | stderr |",
        "| --- | --- | ---: | ---: |",
        "| gsm8k | exact_match (strict-match) | 0.0400 | 0.0277 |",
        "| gsm8k | exact_match (flexible-extract) | 0.0600 |  |",
        "| arc_easy | acc | 0.5000 | 0.0714 |",
        "| arc_easy | acc_norm | 0.5200 | 0.0700 |",
    ]
    assert sorted(os.listdir(out)) == ["harness.json", "harness.md"]  # no temp files left behind


def test_report_replaces_an_earlier_one(tmp_path: Path):
    write_harness_report(hand_made_result(), tmp_path)
    smaller = HarnessResult(**{**hand_made_result().__dict__, "metrics": {"gsm8k": {"exact_match,strict-match": 0.1}}})
    write_harness_report(smaller, tmp_path)
    assert json.loads((tmp_path / "harness.json").read_text(encoding="utf-8"))["metrics"] == smaller.metrics
    assert "| gsm8k | exact_match (strict-match) | 0.1000 |  |" in (tmp_path / "harness.md").read_text(encoding="utf-8")
