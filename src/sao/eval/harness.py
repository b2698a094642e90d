"""Run lm-evaluation-harness (``lm_eval``) benchmarks on a model, to check that tuning left them unharmed.

``lm_eval`` is an optional extra (``pip install 'sao[harness]'``) because it pulls in some 40 packages that nothing
else here needs. It is imported only inside the functions below, so ``sao`` works without it.

Everything a user can get wrong is checked before the model is loaded, because loading a model and then failing on
a typo or a missing dataset wastes minutes: task names are looked up in lm_eval's task index, and every task is
built (which loads its dataset) one name at a time, so a download failure names the task and the dataset.
Each error is one `SaoError` line.

`run_harness` returns a `HarnessResult` holding lm_eval's metrics per task and the exact settings used;
`write_harness_report` saves it as ``harness.json`` and a markdown table ``harness.md``.
"""

from __future__ import annotations

import contextlib
import difflib
import json
import math
import traceback
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from sao.atomic import write_text_atomic
from sao.errors import ConfigError, SaoError, first_line
from sao.models import hub_reachable, pick_dtype, resolve_model_path

if TYPE_CHECKING:
    from lm_eval.api.group import Group
    from lm_eval.api.task import Task
    from lm_eval.tasks import TaskManager

__all__ = [
    "INSTALL_HINT",
    "DatasetUnavailableError",
    "HarnessResult",
    "MissingExtraError",
    "run_harness",
    "write_harness_report",
]

INSTALL_HINT = "pip install 'sao[harness]'"

_JSON_NAME = "harness.json"
_MD_NAME = "harness.md"
_STDERR_TAG = "_stderr"
_CAUSE_CHARS = 200


class MissingExtraError(SaoError):
    """An optional dependency is not installed (the message gives the pip command that installs it)."""


class DatasetUnavailableError(SaoError):
    """A benchmark's dataset could not be downloaded or found in the local cache (the message names both)."""


@dataclass(frozen=True)
class HarnessResult:
    """lm_eval's metrics for one model, with every setting needed to rerun or compare them.

    ``metrics`` maps each task (and each group, e.g. ``mmlu``, with its aggregate) to lm_eval's own keys,
    ``"<metric>,<filter>"`` and ``"<metric>_stderr,<filter>"`` (e.g. ``"exact_match,strict-match"``), so the numbers
    can be matched against lm_eval's own output. A value is None where lm_eval reports ``N/A`` (no stderr computed).
    ``n_samples`` is how many documents each task was scored on (after ``limit``); ``n_shot`` the few-shot count
    each task actually used (its own default where ``num_fewshot`` is None).
    """

    model: str
    model_path: str
    tasks: tuple[str, ...]
    limit: int | None
    num_fewshot: int | None
    batch_size: int
    device: str
    dtype: str
    lm_eval_version: str
    metrics: dict[str, dict[str, float | None]]
    n_samples: dict[str, int] = field(default_factory=dict)
    n_shot: dict[str, int] = field(default_factory=dict)

    def settings(self) -> dict[str, Any]:
        """The run's inputs, as written to ``harness.json``: equal settings make two results comparable."""
        return {
            "model": self.model,
            "model_path": self.model_path,
            "tasks": list(self.tasks),
            "limit": self.limit,
            "num_fewshot": self.num_fewshot,
            "batch_size": self.batch_size,
            "device": self.device,
            "dtype": self.dtype,
            "lm_eval_version": self.lm_eval_version,
        }


# ---------------------------------------------------------------------------------------------------------------
# running


def run_harness(
    model: str,
    tasks: Sequence[str],
    *,
    limit: int | None = None,
    num_fewshot: int | None = None,
    batch_size: int = 8,
    device: str = "cpu",
    dtype: str = "float32",
    trust_remote_code: bool = False,
) -> HarnessResult:
    """Score ``model`` (a sao model spec: alias, directory or hub id) on lm_eval ``tasks`` with lm_eval's HF backend.

    ``tasks`` are lm_eval task, group or tag names (``gsm8k``, ``mmlu``) or paths to task YAML files. ``limit``
    caps the documents per task (for quick checks; full runs leave it None). ``num_fewshot`` None keeps each task's
    own default. ``dtype`` follows sao's convention: ``auto`` is bfloat16 where the device supports it, else float32.

    Raises MissingExtraError without lm_eval, ConfigError for bad settings or unknown task names, and
    DatasetUnavailableError when a task's dataset cannot be had; all before the model is loaded.
    """
    lm_eval = _import_lm_eval()
    _check_settings(tasks, limit, num_fewshot, batch_size)
    try:
        torch_device = torch.device(device)
    except RuntimeError:
        raise ConfigError(f"device: '{device}' is not a torch device, e.g. cpu, cuda or cuda:1") from None
    dtype_name = str(pick_dtype(dtype, torch_device)).removeprefix("torch.")
    model_path = resolve_model_path(model)
    model_args = {"pretrained": model_path, "dtype": dtype_name, "trust_remote_code": trust_remote_code}
    task_manager = _task_manager(model_args)
    _check_task_names(task_manager, tasks)
    with _offline_if_hub_unreachable() as hub_unreachable:
        built = [obj for name in tasks for obj in _build_task(task_manager, name, hub_unreachable=hub_unreachable)]
        output = lm_eval.simple_evaluate(
            model="hf",
            model_args=model_args,
            tasks=built,
            num_fewshot=num_fewshot,
            batch_size=batch_size,
            device=device,
            limit=limit,
            log_samples=False,
            task_manager=task_manager,
        )
    if output is None:  # only non-zero ranks of a distributed launch get None
        raise SaoError("lm_eval returned no results: run the harness in a single process, not under torchrun")
    return HarnessResult(
        model=model,
        model_path=model_path,
        tasks=tuple(tasks),
        limit=limit,
        num_fewshot=num_fewshot,
        batch_size=batch_size,
        device=device,
        dtype=dtype_name,
        lm_eval_version=lm_eval.__version__,
        metrics=_metrics(output["results"]),
        n_samples=_n_samples(output.get("n-samples", {})),
        n_shot={name: int(shots) for name, shots in output.get("n-shot", {}).items()},
    )


def _import_lm_eval() -> Any:
    """``lm_eval``, or a MissingExtraError with the install command: the usual cause is a plain ``pip install sao``."""
    try:
        import lm_eval
    except ImportError as exc:
        cause = first_line(exc, _CAUSE_CHARS)
        broken = "" if exc.name == "lm_eval" else f" (lm_eval is installed but failed to import: {cause})"
        raise MissingExtraError(
            f"running lm-evaluation-harness benchmarks needs the optional extra 'harness': {INSTALL_HINT}{broken}"
        ) from None
    return lm_eval


def _check_settings(tasks: Sequence[str], limit: int | None, num_fewshot: int | None, batch_size: int) -> None:
    """Reject settings lm_eval would misread (a bare string is iterated as letters; limit < 1 means a fraction)."""
    if isinstance(tasks, str) or not tasks:
        raise ConfigError("tasks: give a list of lm_eval task names, e.g. ['gsm8k', 'mmlu']")
    if limit is not None and limit < 1:
        raise ConfigError(f"limit: must be at least 1 document per task, got {limit}")
    if num_fewshot is not None and num_fewshot < 0:
        raise ConfigError(f"num_fewshot: must be 0 or more, got {num_fewshot}")
    if batch_size < 1:
        raise ConfigError(f"batch_size: must be at least 1, got {batch_size}")


def _task_manager(model_args: Mapping[str, Any]) -> TaskManager:
    """lm_eval's task index (it scans ~15k task YAMLs: several seconds), with the metadata simple_evaluate would give.

    Tasks such as RULER read the model name from this metadata, so it is the model args, as in simple_evaluate.
    """
    from lm_eval.tasks import TaskManager

    return TaskManager(metadata=dict(model_args))


def _check_task_names(task_manager: TaskManager, tasks: Sequence[str]) -> None:
    """One ConfigError naming every unknown task (with close matches), before anything is downloaded or loaded.

    A path to a task YAML file counts as known where lm_eval can load one by path (TaskManager.load, 0.4.12 on).
    """
    known = set(task_manager.all_tasks)
    takes_files = hasattr(task_manager, "load")
    unknown = [name for name in tasks if name not in known and not (takes_files and Path(name).expanduser().is_file())]
    if not unknown:
        return
    described = ", ".join(_with_suggestion(name, task_manager.all_tasks) for name in unknown)
    plural = "s" if len(unknown) > 1 else ""
    files = "give a task YAML file" if takes_files else "task YAML files need lm_eval >= 0.4.12"
    raise ConfigError(
        f"tasks: unknown lm_eval task{plural} {described}; `lm-eval ls tasks` lists the names, or {files}"
    )


def _with_suggestion(name: str, known: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, known, n=3)
    return f"'{name}'" + (f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else "")


def _build_task(task_manager: TaskManager, name: str, *, hub_unreachable: bool) -> list[Task | Group | str]:
    """Build one requested task, group or tag, which loads its datasets; a failed download becomes one clear line.

    Returns what to hand simple_evaluate for it. lm_eval >= 0.4.12 (TaskManager.load) takes the built top-level
    objects (a group with its subtasks inside it, or the tasks of a tag) as they are, so the datasets are loaded
    once. Older versions take only names and task objects, not groups, so there the name is returned and
    simple_evaluate loads the datasets again, from the local cache this time.
    """
    try:
        if not hasattr(task_manager, "load"):  # lm_eval before 0.4.12
            task_manager.load_task_or_group([name])
            return [name]
        loaded = task_manager.load([name])
    except _download_errors() as exc:
        failed = _task_being_downloaded(exc)
        if failed is None:
            raise
        raise DatasetUnavailableError(_dataset_message(name, failed, exc, hub_unreachable=hub_unreachable)) from exc
    children = {child for kids in loaded.get("group_map", {}).values() for child in kids}
    groups = [group for key, group in loaded.get("groups", {}).items() if key not in children]
    return [*groups, *(task for key, task in loaded["tasks"].items() if key not in children)]


def _download_errors() -> tuple[type[BaseException], ...]:
    """What a dataset download raises when the hub or the cache fails.

    OSError covers the builtin ConnectionError datasets raises, huggingface_hub's errors (OfflineModeIsEnabled,
    LocalEntryNotFoundError, HfHubHTTPError), datasets' DatasetNotFoundError and requests' errors. httpx errors
    are not OSErrors, so they are added where installed (huggingface_hub uses httpx or its fork httpx2).
    """
    errors: list[type[BaseException]] = [OSError]
    for module in ("httpx", "httpx2"):
        with contextlib.suppress(ImportError):
            errors.append(__import__(module).HTTPError)
    return tuple(errors)


def _task_being_downloaded(exc: BaseException) -> Task | None:
    """The innermost lm_eval Task whose ``download`` the exception passed through, or None if it came from elsewhere.

    A group such as ``mmlu`` builds dozens of subtasks inside one call, so the traceback is the only place that says
    which subtask's dataset failed. An error outside ``download`` (a broken task YAML, say) is not a dataset failure.
    """
    from lm_eval.api.task import Task

    found = None
    for frame, _ in traceback.walk_tb(exc.__traceback__):
        candidate = frame.f_locals.get("self")
        if frame.f_code.co_name == "download" and isinstance(candidate, Task):
            found = candidate
    return found


def _dataset_message(requested: str, task: Task, exc: BaseException, *, hub_unreachable: bool) -> str:
    """The one line for a dataset that could not be had: the task, the dataset (and config), and the short cause.

    Where sao itself switched to offline mode, the cause says the hub is unreachable: the library's own words
    ("offline mode is enabled") would send the user looking for an HF_HUB_OFFLINE they never set.
    """
    leaf = getattr(getattr(task, "config", None), "task", None) or requested
    named = f"'{requested}'" if leaf == requested else f"'{requested}' (subtask '{leaf}')"
    dataset = f"'{task.DATASET_PATH}'" + (f" (config '{task.DATASET_NAME}')" if task.DATASET_NAME else "")
    cause = f"{type(exc).__name__}: {first_line(exc, _CAUSE_CHARS)}"
    if hub_unreachable:
        cause = f"the Hugging Face Hub cannot be reached from this machine ({cause})"
    return (
        f"lm_eval task {named} needs the dataset {dataset}, which could not be downloaded or found in the local "
        f"HF cache: {cause}"
    )


@contextlib.contextmanager
def _offline_if_hub_unreachable() -> Iterator[bool]:
    """Switch datasets and huggingface_hub to offline mode while the harness runs if the hub cannot be reached.

    Without this, on a machine with no network each dataset load retries the hub with backoff for about 30 s before
    it falls back to the local cache or fails, and a group such as ``mmlu`` loads 57 datasets. Offline mode goes
    straight to the cache. Both libraries read these flags at call time; they are restored afterwards. Yields
    whether it switched, so that errors can say the hub was unreachable.
    """
    import datasets.config
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE or hub_reachable():
        yield False
        return
    saved = (constants.HF_HUB_OFFLINE, datasets.config.HF_HUB_OFFLINE, datasets.config.HF_DATASETS_OFFLINE)
    constants.HF_HUB_OFFLINE = datasets.config.HF_HUB_OFFLINE = datasets.config.HF_DATASETS_OFFLINE = True
    try:
        yield True
    finally:
        constants.HF_HUB_OFFLINE, datasets.config.HF_HUB_OFFLINE, datasets.config.HF_DATASETS_OFFLINE = saved


def _metrics(results: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, float | None]]:
    """lm_eval's per-task results without its non-metric entries (``alias``, ``name``, ``sample_len`` and such)."""
    return {
        task: {key: _number(value) for key, value in entries.items() if "," in key and _is_metric_value(value)}
        for task, entries in results.items()
    }


def _is_metric_value(value: Any) -> bool:
    return value == "N/A" or (isinstance(value, int | float) and not isinstance(value, bool))


def _number(value: Any) -> float | None:
    """A float, or None for ``N/A`` and NaN, which JSON cannot hold."""
    if value == "N/A":
        return None
    number = float(value)
    return None if math.isnan(number) else number


def _n_samples(counts: Mapping[str, Mapping[str, int]]) -> dict[str, int]:
    """How many documents each task was scored on (lm_eval's ``effective`` count: after ``limit``)."""
    return {task: int(count.get("effective", count.get("original", 0))) for task, count in counts.items()}


# ---------------------------------------------------------------------------------------------------------------
# report


def write_harness_report(result: HarnessResult, out_dir: str | Path) -> Path:
    """Write ``harness.json`` (settings, metrics, sample counts) and ``harness.md`` (a table) into ``out_dir``.

    Both are replaced atomically, so a killed run leaves the previous report or none. Returns the JSON path.
    """
    out = Path(out_dir)
    json_path = out / _JSON_NAME
    write_text_atomic(json_path, json.dumps(_report_json(result), indent=2, ensure_ascii=False) + "\n")
    write_text_atomic(out / _MD_NAME, _report_markdown(result))
    return json_path


def _report_json(result: HarnessResult) -> dict[str, Any]:
    return {
        "settings": result.settings(),
        "metrics": result.metrics,
        "n_samples": result.n_samples,
        "n_shot": result.n_shot,
    }


def _report_markdown(result: HarnessResult) -> str:
    """A table with one row per task and metric, its stderr beside it, under a line saying how it was run."""
    limit = "all documents" if result.limit is None else f"limit {result.limit} per task"
    shots = "task default few-shot" if result.num_fewshot is None else f"{result.num_fewshot}-shot"
    lines = [
        f"# lm-evaluation-harness: {result.model}",
        "",
        f"lm_eval {result.lm_eval_version}, {limit}, {shots}, {result.dtype} on {result.device}, "
        f"batch size {result.batch_size}. Model path: `{result.model_path}`.",
        "",
        "| task | metric | value | stderr |",
        "| --- | --- | ---: | ---: |",
    ]
    for task, values in result.metrics.items():
        for key, value in values.items():
            if _STDERR_TAG in key.partition(",")[0]:
                continue
            stderr = values.get(_stderr_key(key))
            lines.append(f"| {task} | {_metric_label(key)} | {_format(value)} | {_format(stderr)} |")
    return "\n".join(lines) + "\n"


def _stderr_key(key: str) -> str:
    """``acc,none`` -> ``acc_stderr,none``: how lm_eval names a metric's standard error."""
    metric, comma, filter_name = key.partition(",")
    return f"{metric}{_STDERR_TAG}{comma}{filter_name}"


def _metric_label(key: str) -> str:
    """``acc,none`` -> ``acc``; ``exact_match,strict-match`` -> ``exact_match (strict-match)``."""
    metric, _, filter_name = key.partition(",")
    return metric if filter_name in ("", "none") else f"{metric} ({filter_name})"


def _format(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"
