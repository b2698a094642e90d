"""sao: self-alignment of language models with no human labels, reward model or external API."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("sao")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"
