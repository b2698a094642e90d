"""One text column of a Hugging Face dataset named ``hf:NAME[:CONFIG]``, with errors that name the recipe field."""

from __future__ import annotations

from sao.errors import InputError, first_line


def hf_column(source: str, column: str, *, field: str, split: str = "train") -> list[str]:
    """``column`` of the ``split`` split of the dataset ``source`` names; InputError naming ``field`` when the
    hub is unreachable and the dataset is not cached, or the column is missing."""
    import datasets

    from sao.models import hub_reachable

    name, _, config = source.removeprefix("hf:").partition(":")
    if not hub_reachable():  # datasets would retry an unreachable hub for a minute first
        raise InputError(f"{field}: cannot load HF dataset '{name}': the Hugging Face Hub is unreachable")
    try:
        ds = datasets.load_dataset(name, config or None, split=split)
    except Exception as exc:  # datasets raises many types for "offline" and "no such dataset"
        raise InputError(f"{field}: cannot load HF dataset '{name}' (offline?): {first_line(exc)}") from None
    if column not in ds.column_names:
        raise InputError(f"{field}: HF dataset '{name}' has no '{column}' column")
    return list(ds[column])
