"""sao's subclasses of the TRL trainers: they train on `sao.train.tokenize` rows as they are.

Each stops at the first non-finite loss, and each leaves the token ids alone:

- SFT: ``trl.SFTTrainer`` skips its own tokenisation when the rows carry ``input_ids``
  (a documented behaviour), so it needs no override.
- SimPO: ``trl.experimental.cpo.CPOTrainer`` maps every row through ``tokenize_row``, with no
  way to skip it; the override lays out sao's ids the way CPO's collator reads them.
- DPO family: ``trl.DPOTrainer`` always runs ``_prepare_dataset`` (prompt extraction, the chat
  template, tokenisation) unless the dataset holds images; the override returns the dataset
  as it is, already in the ``prompt_ids`` / ``chosen_ids`` / ``rejected_ids`` form its collator reads.

The last two are TRL internals, so pyproject.toml pins TRL to the versions they were read
from, and tests/test_train_table.py fails if the installed TRL is outside that range or the
overridden methods have moved or changed their parameters (an override that no longer
overrides anything would let TRL re-tokenise silently; see `sao.train.tokenize` for why that matters).
"""

from __future__ import annotations

import os
from functools import cache
from typing import TYPE_CHECKING, Any

from sao.errors import SaoError

if TYPE_CHECKING:
    import torch

# TRL's CPOTrainer lives in trl.experimental, which warns on every import.
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")


class TrainingDivergedError(SaoError):
    """The loss became NaN or infinite."""


class _FiniteLoss:
    """Fail at the first NaN/inf loss. transformers logs it and carries on, wasting the run."""

    def training_step(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        import torch  # here, so that the trainer table can be read without importing torch

        loss = super().training_step(*args, **kwargs)
        if not torch.isfinite(loss).all():
            step = self.state.global_step + 1
            raise TrainingDivergedError(
                f"loss is {loss.item()} at step {step}; lower train.learning_rate or the trainer's beta, "
                "or check the pairs"
            )
        return loss


def _cpo_row(feature: dict[str, list[int]]) -> dict[str, list[int]]:
    """CPOTrainer's row layout from prompt/chosen/rejected ids: labels are -100 over the prompt."""
    prompt = feature["prompt_ids"]
    row = {"prompt_input_ids": prompt, "prompt_attention_mask": [1] * len(prompt)}
    for side in ("chosen", "rejected"):
        completion = feature[f"{side}_ids"]
        row[f"{side}_input_ids"] = prompt + completion
        row[f"{side}_attention_mask"] = [1] * (len(prompt) + len(completion))
        row[f"{side}_labels"] = [-100] * len(prompt) + completion
    return row


# The classes are made on first use, and once: TRL pulls in much of transformers' training
# stack, which `sao --help` does not need.


@cache
def simpo_trainer() -> type:
    from trl.experimental.cpo import CPOTrainer

    class SimPOTrainer(_FiniteLoss, CPOTrainer):
        def tokenize_row(self, feature: dict[str, Any], model: Any = None) -> dict[str, list[int]]:
            return _cpo_row(feature)

    return SimPOTrainer


@cache
def preference_trainer() -> type:
    from trl import DPOTrainer

    class PreferenceTrainer(_FiniteLoss, DPOTrainer):
        def _prepare_dataset(self, dataset: Any, processing_class: Any, args: Any, dataset_name: str) -> Any:
            return dataset  # tokenized and truncated already

    return PreferenceTrainer


@cache
def sft_trainer() -> type:
    from trl import SFTTrainer

    class FiniteSFTTrainer(_FiniteLoss, SFTTrainer):
        """SFTTrainer skips its own tokenisation when the rows carry ``input_ids``."""

    return FiniteSFTTrainer
