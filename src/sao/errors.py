"""Exception types. Each carries one line that names the bad field, file or model.

The CLI turns any `SaoError` into that one line on stderr and a non-zero exit code.
"""


class SaoError(Exception):
    """Base class for errors a user can fix: bad input, bad config, missing model."""


class InputError(SaoError):
    """An input file is missing or malformed (the message names the file and line)."""


class ConfigError(SaoError):
    """A config value is invalid (the message names the field)."""


class ModelLoadError(SaoError):
    """A model could not be resolved or loaded."""


class ResumeConflictError(SaoError):
    """A run directory was made with a different config or model than the one given now."""


class StoreCorruptError(SaoError):
    """A stage file holds a damaged row that is not a torn last line."""


class LogprobsUnavailable(SaoError):
    """The engine cannot return log-probs of a given text (e.g. a server that echoes no prompt log-probs)."""


def first_line(exc: BaseException, limit: int | None = None) -> str:
    """The first line of ``exc``'s message (its type name when it has none), cut to ``limit`` characters.

    Library exceptions often carry pages of detail; a sao error stays one line.
    """
    lines = str(exc).strip().splitlines()
    text = lines[0] if lines else type(exc).__name__
    return text if limit is None or len(text) <= limit else text[: limit - 3] + "..."
