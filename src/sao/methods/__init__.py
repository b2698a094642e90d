"""The registry of self-alignment methods: the one place that lists them.

A built-in method is a module ``sao.methods.<name>`` that defines ``METHOD``, a `Method`; it is
imported the first time it is asked for, so that ``sao --help`` loads no method. A method from
outside sao (a plugin, or a test) joins with `register`.
"""

from __future__ import annotations

import importlib

from sao.errors import ConfigError
from sao.methods.method import Handoff, Method, Stage, StageContext

__all__ = ["Handoff", "Method", "Stage", "StageContext", "get", "names", "register", "unregister"]

BUILTIN = ("sao", "dno", "self_align", "sar", "videosavi")  # modules under sao.methods, each defining METHOD
DEFAULT = "sao"

_registered: dict[str, Method] = {}


def register(method: Method) -> Method:
    """Add ``method`` under ``method.name``; a name that is taken (built-in or not) is refused."""
    if method.name in _registered or method.name in BUILTIN:
        raise ValueError(f"a method named '{method.name}' is registered already")
    _registered[method.name] = method
    return method


def unregister(name: str) -> None:
    """Remove a method added with `register` (built-in methods stay)."""
    _registered.pop(name, None)


def names() -> list[str]:
    """Every method's name: the built-in ones first, then the registered ones, in order of registration."""
    return [*BUILTIN, *_registered]


def get(name: str) -> Method:
    """The method called ``name``; ConfigError naming the ``method`` field and the choices otherwise."""
    if name in _registered:
        return _registered[name]
    if name in BUILTIN:
        return importlib.import_module(f"sao.methods.{name}").METHOD
    raise ConfigError(f"method: '{name}' is not a registered method ({', '.join(names())})")
