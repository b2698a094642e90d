"""GRPO with sao's rewards and sao's rollouts: TRL's ``GRPOTrainer``, three things changed.

- **Rewards** (`reward_functions`): ``verifiable`` (1 when the completion's final ``Answer:`` matches the
  row's reference) and ``sar`` (the self-aligned reward, `sao.rewards.sar`), weighted [1, α]. TRL gives
  reward functions text, not the model, but SAR must be computed with the *current* policy: the SAR
  reward is bound to the trainer after it is built and reads its unwrapped model, so each step's rewards
  come from the weights that sampled the rollouts. TRL logs each as ``rewards/<name>/mean``.
- **Rollouts** (``train.grpo.rollouts: sao``): sampled by sao's transformers engine on the trainer's live
  model, whose decode loop drops finished rows from the batch (TRL's ``model.generate`` keeps decoding
  padding for them until the longest is done), in the training's compute dtype without autocast's per-token
  weight casts (`decoding_model`). TRL's vLLM modes keep their own path.
- **Reference**: the frozen copy of the starting weights that `sao.train.run` makes, as for DPO; TRL
  would reload it from ``config._name_or_path``, skipping sao's safe loading.

The override of ``_generate_single_turn`` is a TRL internal; tests/test_train_table.py checks its
signature against the installed TRL (pyproject.toml pins TRL's minor version).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from functools import cache
from typing import Any
from unittest import mock

from sao.errors import ConfigError
from sao.rewards.sar import context_pair, sar_from_model
from sao.train.sections import GRPOSection


def _prompt_messages(prompt: Any) -> list[dict[str, str]]:
    return [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt


def _completion_text(completion: Any) -> str:
    """TRL passes a conversational completion as ``[{"role": "assistant", "content": ...}]``."""
    return completion if isinstance(completion, str) else completion[-1]["content"]


class VerifiableReward:
    """1.0 when a completion's final ``Answer:`` matches its row's reference, else 0.0 (no answer included).

    Reads the rows' ``answer`` column and, where present, their ``checker`` (else ``default_checker``).
    """

    __name__ = "verifiable"  # the name TRL logs it under

    def __init__(self, default_checker: str):
        self.default_checker = default_checker

    def __call__(
        self,
        prompts: list[Any],
        completions: list[Any],
        answer: Sequence[str],
        checker: Sequence[str] | None = None,
        **kwargs: Any,
    ) -> list[float]:
        from sao.rewards.verifiable import verifiable_rewards

        checkers = list(checker) if checker is not None else [self.default_checker] * len(completions)
        texts = [_completion_text(c) for c in completions]
        rewards = [0.0] * len(texts)
        # Rows may mix checkers (a task set of maths and exact-match items): score each kind together.
        for kind in set(checkers):
            rows = [i for i, c in enumerate(checkers) if c == kind]
            result = verifiable_rewards([texts[i] for i in rows], [str(answer[i]) for i in rows], kind)
            for i, reward in zip(rows, result.rewards):
                rewards[i] = reward
        return rewards


class SelfAlignedReward:
    """R_SA of each completion under the trainer's current weights (`sao.rewards.sar.sar_from_model`).

    Unusable until `bind` gives it the trainer: TRL builds its reward list before the trainer exists.
    """

    __name__ = "sar"

    def __init__(self, batch_size: int):
        self.batch_size = batch_size
        self.trainer: Any = None

    def bind(self, trainer: Any) -> None:
        self.trainer = trainer

    def __call__(self, prompts: list[Any], completions: list[Any], completion_ids: list[list[int]], **kwargs: Any):
        if self.trainer is None:
            raise RuntimeError("the SAR reward was called before it was bound to its trainer")
        trainer = self.trainer
        tokenizer = trainer.processing_class
        model = trainer.accelerator.unwrap_model(trainer.model_wrapped)
        contexts = [context_pair(tokenizer, _prompt_messages(p)) for p in prompts]
        was_training = model.training
        model.eval()  # no dropout: the reward of a completion should not depend on a dropout draw
        try:
            return sar_from_model(
                model, contexts, completion_ids, pad_id=tokenizer.pad_token_id, batch_size=self.batch_size
            )
        finally:
            model.train(was_training)


def reward_functions(section: GRPOSection) -> tuple[list[Any], list[float]]:
    """The reward callables ``section.rewards`` names, in order, and their weights (1 and ``sar_weight``)."""
    made = {
        "verifiable": (VerifiableReward(section.checker), 1.0),
        "sar": (SelfAlignedReward(section.reward_batch_size), section.sar_weight),
    }
    chosen = [made[name] for name in section.rewards]
    return [f for f, _ in chosen], [w for _, w in chosen]


def grpo_arguments(section: GRPOSection) -> dict[str, Any]:
    """The GRPOConfig fields ``section`` sets (`sao.train.config.TrainConfig` checks that a step holds whole
    groups)."""
    _, weights = reward_functions(section)
    return {
        "num_generations": section.num_generations,
        "beta": section.beta,
        "loss_type": section.loss_type,
        "scale_rewards": section.scale_rewards,
        "max_completion_length": section.max_completion_length,
        "temperature": section.temperature,
        "top_p": section.top_p,
        "reward_weights": weights,
    }


GRPO_SETS = {
    "num_generations": "use train.grpo.num_generations",
    "beta": "use train.grpo.beta",
    "loss_type": "use train.grpo.loss_type",
    "scale_rewards": "use train.grpo.scale_rewards",
    "max_completion_length": "use train.grpo.max_completion_length",
    "temperature": "use train.grpo.temperature",
    "top_p": "use train.grpo.top_p",
    "reward_weights": "use train.grpo.rewards and train.grpo.sar_weight",
}


def rollout_seeds(seed: int, step: int, process: int, count: int) -> list[int]:
    """One seed per rollout of a generation batch: the repeated prompts of a group must not share one, and a
    resumed run samples what the killed run would have at that step."""
    from sao.engine.types import derive_seed

    return [derive_seed(seed, step, process, i) for i in range(count)]


@contextmanager
def decoding_model(model: Any, compute: Any) -> Iterator[Any]:
    """The module to decode rollouts with, computing in ``compute`` (the training's dtype).

    Under mixed precision accelerate wraps the model's ``forward`` in autocast, which casts every float32
    weight to bf16 again on each call: once per generated token, so decoding spends its time casting (a
    6 x 48-token rollout on SmolLM2 ran 5x slower than from bf16 weights). Where the weights are in another
    dtype than ``compute``, decode from a copy cast once per generation batch; where they are in it already,
    decode from the model itself with the autocast wrapper set aside.
    """
    import torch

    if next(model.parameters()).dtype != compute and compute != torch.float32:
        twin = copy.deepcopy(model)
        twin.__dict__.pop("forward", None)  # accelerate's autocast wrapper, bound to the copy by deepcopy
        yield twin.to(compute)
        return
    wrapped = model.__dict__.get("forward")
    original = getattr(model, "_original_forward", None)
    if wrapped is not None and original is not None:
        model.forward = original
    try:
        yield model
    finally:
        if wrapped is not None and original is not None:
            model.forward = wrapped


def sao_rollouts(
    model: Any, tokenizer: Any, prompt_ids: list[list[int]], params: dict[str, Any], seeds: list[int]
) -> list[list[int]]:
    """Sample one completion per prompt with sao's transformers engine on ``model`` as it is now.

    ``params``: temperature, top_p, max_new_tokens. Each completion's ids end with the EOS token that
    stopped it (as TRL's own path returns them), or run to the budget.
    """
    from sao.engine.transformers_engine import TransformersEngine
    from sao.engine.types import SamplingParams, TokenPrompt
    from sao.models import LoadedModel

    engine = TransformersEngine(
        LoadedModel(model, tokenizer, spec="policy", path="", fingerprint=""),
        max_batch_size=max(len(prompt_ids), 1),
        progress=False,
    )
    sampling = [SamplingParams(**params, seed=s) for s in seeds]
    done = engine.generate([TokenPrompt(ids) for ids in prompt_ids], sampling)
    out = []
    for completion in done:
        sample = completion.samples[0]
        eos = [sample.eos_token_id] if sample.eos_token_id is not None else []
        out.append(list(sample.token_ids) + eos)
    return out


@cache
def grpo_trainer() -> type:
    import torch
    import trl.trainer.grpo_trainer as grpo_module
    from trl import GRPOTrainer
    from trl.models.utils import unwrap_model_for_generation

    from sao.train.pretokenized import _FiniteLoss

    class SaoGRPOTrainer(_FiniteLoss, GRPOTrainer):
        """GRPOTrainer with sao's reference copy, rewards bound to it, and (optionally) sao's rollouts."""

        def __init__(self, *args: Any, section: GRPOSection, ref_model: Any = None, **kwargs: Any):
            self.sao_section = section
            reference = mock.patch.object(grpo_module, "create_model_from_path", lambda *a, **k: ref_model)
            with reference if ref_model is not None else nullcontext():
                super().__init__(*args, **kwargs)
            for func in self.reward_funcs:
                if isinstance(func, SelfAlignedReward):
                    func.bind(self)
            if section.rollouts == "sao" and not self.use_vllm:
                unsupported = {
                    "top_k": self.args.top_k not in (None, 0),
                    "min_p": self.args.min_p is not None,
                    "repetition_penalty": self.args.repetition_penalty != 1.0,
                }
                bad = [name for name, set_ in unsupported.items() if set_]
                if bad:
                    raise ConfigError(
                        f"train.trl.{bad[0]}: sao's rollouts sample with temperature and top_p only; "
                        "set train.grpo.rollouts: trl to use it"
                    )

        def _compute_dtype(self) -> Any:
            return torch.bfloat16 if self.args.bf16 else torch.float16 if self.args.fp16 else torch.float32

        def _generate_single_turn(self, prompt_ids, images, multimodal_fields, num_generations, has_tool_images=False):
            if self.sao_section.rollouts != "sao" or self.use_vllm or images is not None or multimodal_fields:
                return super()._generate_single_turn(
                    prompt_ids, images, multimodal_fields, num_generations, has_tool_images
                )
            params = {
                "temperature": self.temperature,
                "top_p": self.top_p,
                "max_new_tokens": self.max_completion_length,
            }
            seeds = rollout_seeds(
                self.args.seed, self.state.global_step, self.accelerator.process_index, len(prompt_ids)
            )
            with (
                unwrap_model_for_generation(
                    self.model_wrapped,
                    self.accelerator,
                    gather_deepspeed3_params=self.args.ds3_gather_for_generation,
                    gradient_checkpointing_kwargs=self.args.gradient_checkpointing_kwargs,
                ) as unwrapped,
                torch.no_grad(),
            ):
                was_training = unwrapped.training
                unwrapped.eval()
                try:
                    with decoding_model(unwrapped, self._compute_dtype()) as decoder:
                        completion_ids = sao_rollouts(decoder, self._tokenizer, list(prompt_ids), params, seeds)
                finally:
                    unwrapped.train(was_training)
            return completion_ids, None

    return SaoGRPOTrainer
