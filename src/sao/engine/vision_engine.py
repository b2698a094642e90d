"""Generation and scoring with a transformers vision-language model, in-process: conversations whose
messages hold images or video frames (`sao.engine.media`), rendered with the model's processor.

It runs ``model.generate`` one sample at a time rather than sao's own decode loop: the rope positions of
Qwen2-VL (M-RoPE) and the image features of every VLM family are built inside each model's own
``generate`` / ``forward``, which a shared loop over token ids would have to re-implement per family. One
sample per call keeps sao's seed contract (sample ``j`` of a request draws from ``derive_seed(seed, j)``,
whatever else is asked) at the cost of batching: on a GPU, the vLLM engine is the fast path.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import torch
from tqdm.auto import tqdm

from sao.engine.capabilities import VISION, Capability, check_call, check_sampling, require
from sao.engine.chat_template import check_conversation
from sao.engine.decoding import eos_ids
from sao.engine.media import image_paths, template_messages
from sao.engine.prompts import continuation_ids
from sao.engine.stops import StopStrings
from sao.engine.types import (
    Completion,
    Continuation,
    Conversation,
    NextTokenLogprobs,
    Prompt,
    Sample,
    SamplingParams,
    TokenLogprobs,
    per_request,
    sample_seed,
)
from sao.errors import ConfigError
from sao.models import LoadedModel, load_vision_model
from sao.video.frames import load_images


class VisionEngine:
    """A transformers VLM (``AutoModelForImageTextToText`` + ``AutoProcessor``) behind the `Engine` interface.

    Args:
        loaded: the model, its processor and tokenizer (`sao.models.load_vision_model`).
        progress: show a progress bar over samples and scored requests.
    """

    kind = "transformers"
    capabilities = VISION

    def __init__(self, loaded: LoadedModel, *, progress: bool = True):
        if loaded.processor is None:
            raise ConfigError(f"model '{loaded.spec}': a vision engine needs the model's processor")
        self.loaded = loaded
        self.model = loaded.model
        self.processor = loaded.processor
        self.tokenizer = loaded.tokenizer
        self.progress = progress
        self.eos_ids = eos_ids(self.model.generation_config, self.tokenizer)
        from transformers import GenerationConfig

        # generate fills every setting a call leaves unset from the model's generation_config, and checkpoints ship
        # sampling defaults there (Qwen2-VL-Instruct: top_k 1, top_p 0.001, a repetition penalty) that would change
        # what sao's SamplingParams ask for. This engine's copy of the model keeps only its special tokens.
        self.model.generation_config = GenerationConfig(
            eos_token_id=sorted(self.eos_ids), pad_token_id=self.tokenizer.pad_token_id
        )

    @classmethod
    def from_spec(
        cls,
        spec: str,
        *,
        device: str = "auto",
        dtype: str = "auto",
        trust_remote_code: bool = False,
        progress: bool = True,
    ) -> VisionEngine:
        return cls(
            load_vision_model(spec, device=device, dtype=dtype, trust_remote_code=trust_remote_code), progress=progress
        )

    @property
    def device(self) -> torch.device:
        return self.model.device

    def inputs(self, conversation: Conversation) -> dict[str, Any]:
        """The processor's tensors for one conversation, ending with the assistant header (or continuing a final
        assistant message, as the text engines do)."""
        check_conversation(conversation)
        prefill = conversation[-1]["role"] == "assistant"
        text = self.processor.apply_chat_template(
            template_messages(conversation),
            tokenize=False,
            add_generation_prompt=not prefill,
            continue_final_message=prefill,
        )
        paths = image_paths(conversation)
        images = [load_images(paths)] if paths else None
        encoded = self.processor(text=[text], images=images, return_tensors="pt", add_special_tokens=False)
        return {k: v.to(self.device) if hasattr(v, "to") else v for k, v in encoded.items()}

    # ------------------------------------------------------------------ generate
    @torch.inference_mode()
    def generate(
        self, prompts: Sequence[Prompt], sampling: SamplingParams | Sequence[SamplingParams]
    ) -> list[Completion]:
        check_call(self, "generate", prompts)
        params = per_request(sampling, len(prompts))
        check_sampling(self, params, "generate")
        if any(p.logprobs for p in params):
            raise ConfigError("logprobs: the vision engine does not report sampled tokens' log-probs")
        total = sum(p.n for p in params)
        bar = tqdm(total=total, unit="sample", desc="generate", disable=not self.progress, leave=False)
        completions = []
        try:
            # A question asked at five temperatures is one conversation: its frames are read and processed once.
            encoded: dict[str, dict[str, Any]] = {}
            for prompt, p in zip(prompts, params):
                key = json.dumps(prompt, sort_keys=True, default=str)
                if key not in encoded:
                    encoded[key] = self.inputs(prompt)  # type: ignore[arg-type]
                inputs = encoded[key]
                stops = StopStrings(self.tokenizer, p.stop)
                samples = []
                for j in range(p.n):
                    samples.append(self._sample(inputs, p, sample_seed(p, j), stops))
                    bar.update(1)
                completions.append(Completion(samples))
        finally:
            bar.close()
        return completions

    def _sample(self, inputs: dict[str, Any], params: SamplingParams, seed: int | None, stops: StopStrings) -> Sample:
        options: dict[str, Any] = {"max_new_tokens": params.max_new_tokens, "do_sample": not params.greedy}
        if not params.greedy:
            options.update(temperature=params.temperature, top_p=params.top_p, top_k=params.top_k)  # top_k 0: all
            torch.manual_seed(seed)  # generate draws from the global generator; one sample per call keeps it ours
        output = self.model.generate(**inputs, **options)
        generated = output[0, inputs["input_ids"].shape[1] :].tolist()
        finish, eos = "length", None
        for position, token in enumerate(generated):
            if token in self.eos_ids:
                generated, finish, eos = generated[:position], "stop", token
                break
        text = self.tokenizer.decode(generated, skip_special_tokens=True)
        cut = stops.truncate(text)
        if cut != text:
            finish = "stop"
        return Sample(cut, generated, finish, seed, eos)  # type: ignore[arg-type]

    # ------------------------------------------------------------------ score
    @torch.inference_mode()
    def score(self, prompts: Sequence[Prompt], continuations: Sequence[Continuation]) -> list[TokenLogprobs]:
        """Log-probs of each continuation's tokens as the assistant's reply to its conversation, with the
        conversation's images in view. Text continuations are tokenized on their own, as the text engines do."""
        if len(prompts) != len(continuations):
            raise ValueError(f"score: {len(prompts)} prompts but {len(continuations)} continuations")
        check_call(self, "score", prompts, continuations)
        targets = continuation_ids(self.tokenizer, continuations)
        results = []
        for prompt, target in tqdm(
            list(zip(prompts, targets)), unit="req", desc="score", disable=not self.progress, leave=False
        ):
            results.append(TokenLogprobs(list(target), self._score_one(self.inputs(prompt), target)))  # type: ignore[arg-type]
        return results

    def _score_one(self, inputs: dict[str, Any], target: list[int]) -> list[float]:
        if not target:
            return []
        extra = torch.tensor([target], device=self.device)
        length = inputs["input_ids"].shape[1]
        joined = dict(inputs)
        for key, value in inputs.items():
            # Every per-token tensor grows with the continuation: ids as given, the mask with ones, token-type
            # ids (Qwen2.5-VL's mm_token_type_ids, Gemma's) with zeros, as text.
            if isinstance(value, torch.Tensor) and value.dim() == 2 and value.shape == (1, length):
                fill = (
                    extra
                    if key == "input_ids"
                    else torch.ones_like(extra)
                    if key == "attention_mask"
                    else torch.zeros_like(extra)
                )
                joined[key] = torch.cat([value, fill.to(value.dtype)], dim=1)
        logits = self.model(**joined).logits[0, length - 1 : -1].float()
        return (logits.log_softmax(-1).gather(-1, extra[0, :, None]).squeeze(-1)).tolist()

    def top_logprobs(self, prompts: Sequence[Prompt], k: int) -> list[NextTokenLogprobs]:
        """Not served: a vision model's engine has no `top_logprobs` (CapabilityError)."""
        require(self.kind, self.capabilities, [Capability.TOP_LOGPROBS], "a top_logprobs call")
        return []
