"""Records whose newer fields are written only when set, so that files written before a field existed keep
their bytes and config hashes (a run made then still resumes)."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, SerializerFunctionWrapHandler, model_serializer


class OmitWhenNone(BaseModel):
    """A model that leaves out each field named in ``omit_when_none`` while it is None."""

    omit_when_none: ClassVar[tuple[str, ...]] = ()

    @model_serializer(mode="wrap")
    def _omit_unset(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data = handler(self)
        for name in self.omit_when_none:
            if data.get(name, 0) is None:
                data.pop(name)
        return data
