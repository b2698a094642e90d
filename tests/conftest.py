"""Shared fixtures: the real embedded model, and a tiny random model with the same tokenizer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

from sao.engine.transformers_engine import TransformersEngine
from sao.models import load_model, resolve_model_path


@pytest.fixture(scope="session")
def smol_dir() -> str:
    """The embedded SmolLM2-135M-Instruct in HF format (converted once, then cached)."""
    return resolve_model_path("smollm2-135m")


@pytest.fixture(scope="session")
def smol_engine(smol_dir: str) -> TransformersEngine:
    return TransformersEngine(load_model("smollm2-135m", dtype="float32"), progress=False)


def tiny_llama(tokenizer, *, tie_word_embeddings: bool) -> LlamaForCausalLM:
    """A randomly initialised 2-layer Llama sized for SmolLM2's tokenizer (seeded)."""
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        tie_word_embeddings=tie_word_embeddings,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    return LlamaForCausalLM(config)


def save_with_tokenizer(model, tokenizer, out: Path) -> Path:
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory, smol_dir: str) -> Path:
    """A randomly initialised 2-layer Llama with SmolLM2's tokenizer and chat template, saved to disk."""
    tokenizer = AutoTokenizer.from_pretrained(smol_dir)
    model = tiny_llama(tokenizer, tie_word_embeddings=True)
    return save_with_tokenizer(model, tokenizer, tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def tiny_engine(tiny_model_dir: Path) -> TransformersEngine:
    return TransformersEngine(load_model(str(tiny_model_dir), dtype="float32"), max_batch_size=4, progress=False)


def ask(question: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": question}]


# The fixed prompt set on which every engine's greedy output is compared with the transformers engine's.
# Arithmetic preference pairs for the training tests: chosen right and short, rejected vague and longer.
PAIRS = [
    {
        "id": f"p{i}",
        "prompt": ask(f"Question {i}: what is {i} plus {i}?"),
        "chosen": [{"role": "assistant", "content": f"{i} plus {i} is {2 * i}."}],
        "rejected": [{"role": "assistant", "content": f"I am not sure. It could be {i}, or maybe something else."}],
    }
    for i in range(8)
]


@pytest.fixture
def pairs_file(tmp_path: Path) -> Path:
    """PAIRS as a JSONL file."""
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(p) + "\n" for p in PAIRS))
    return path


GREEDY_QUESTIONS = [
    "Name three primary colours.",
    "Write a haiku about the sea.",
    "Explain photosynthesis in one sentence.",
    "Give me a tip for learning Python.",
    "What is the capital of France?",
    "What is 12 times 12?",
    "List two fruits that are red.",
    "Why is the sky blue?",
    "Suggest a name for a cat.",
    "How do bees make honey?",
]


def common_prefix(a: list[int], b: list[int]) -> int:
    """How many leading tokens two sequences share."""
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))


@pytest.fixture(scope="session")
def chatty_tiny_dir(tmp_path_factory: pytest.TempPathFactory, smol_dir: str) -> Path:
    """A tiny random model that ends its turns after ~18 tokens at temperature 0.7.

    A random model almost never samples EOS (1 in 49k per step), so every synthesis stage
    would drop its output as cut off. Here every embedding gets a shared direction v, and
    EOS's output row points along v: after the final norm that direction dominates, so the
    EOS logit is ~6 against ~0 for the rest. Greedy decoding therefore ends at once.
    """
    tokenizer = AutoTokenizer.from_pretrained(smol_dir)
    model = tiny_llama(tokenizer, tie_word_embeddings=False)
    hidden = model.config.hidden_size
    with torch.no_grad():
        v = torch.randn(hidden)
        v /= v.norm()
        model.model.embed_tokens.weight += v
        model.lm_head.weight[tokenizer.eos_token_id] = v * 6.0 / hidden**0.5
    return save_with_tokenizer(model, tokenizer, tmp_path_factory.mktemp("chatty-tiny"))
