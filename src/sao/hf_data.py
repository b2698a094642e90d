"""Hugging Face datasets (a hub id, ``hf:NAME[:CONFIG]``, or a local directory), with errors that name the recipe
field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sao.errors import InputError, first_line


def load_hf_split(name: str, config: str | None, *, split: str, field: str) -> Any:
    """The ``split`` split (a ``datasets.Dataset``) of the dataset ``name``: a hub id, a local directory of data
    files, or a directory written by ``save_to_disk``.

    A local directory loads without the hub. Raises InputError naming ``field`` when a hub id's hub is unreachable
    (and the dataset is not cached), the dataset cannot be loaded, or a saved dataset has no such split.
    """
    import datasets

    from sao.models import hub_reachable

    local = Path(name)
    if not local.is_dir() and not hub_reachable():  # datasets would retry an unreachable hub for a minute first
        raise InputError(f"{field}: cannot load HF dataset '{name}': the Hugging Face Hub is unreachable")
    try:
        if (local / "dataset_dict.json").is_file() or (local / "state.json").is_file():
            saved = datasets.load_from_disk(str(local))
        else:
            return datasets.load_dataset(name, config or None, split=split)
    except Exception as exc:  # datasets raises many types for "offline" and "no such dataset"
        raise InputError(f"{field}: cannot load HF dataset '{name}' (offline?): {first_line(exc)}") from None
    if not isinstance(saved, datasets.DatasetDict):
        return saved  # one saved split: it is the split asked for
    if split not in saved:
        raise InputError(f"{field}: HF dataset '{name}' has no split '{split}' (it has {', '.join(saved)})")
    return saved[split]


def hf_column(source: str, column: str, *, field: str, split: str = "train") -> list[str]:
    """``column`` of the ``split`` split of the dataset ``source`` names; InputError naming ``field`` when the
    hub is unreachable and the dataset is not cached, or the column is missing."""
    name, _, config = source.removeprefix("hf:").partition(":")
    ds = load_hf_split(name, config or None, split=split, field=field)
    if column not in ds.column_names:
        raise InputError(f"{field}: HF dataset '{name}' has no '{column}' column")
    return list(ds[column])
