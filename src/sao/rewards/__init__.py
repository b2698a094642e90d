"""Rewards as small components, each a function of prompts, completions and a model's log-probs.

- `sao.rewards.sar`: the self-aligned reward (perplexity of the answer with and without the query);
- `sao.rewards.verifiable`: 0/1 correctness of a final ``Answer: ...`` against a reference;
- `sao.rewards.tasks`: verifiable task sets (JSONL, HF datasets, seeded procedural problems).
"""
