"""sao: self-alignment of language models with no human labels, reward model or external API."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("sao")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

API = ("run", "synthesize", "train_model", "load_run_config")  # sao.api's functions, as sao.<name>


def __getattr__(name: str):
    # Imported on first use, so that `import sao` (and `sao --help`) stays light. A function cannot be
    # called `sao.synth` or `sao.train`: those names are the packages.
    if name in API:
        from sao import api

        return getattr(api, name)
    if name == "methods":
        import importlib

        return importlib.import_module("sao.methods")
    raise AttributeError(f"module 'sao' has no attribute {name!r}")
