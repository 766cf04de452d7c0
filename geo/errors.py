"""Errors raised by the geo core."""

from __future__ import annotations


class GeometryError(ValueError):
    """A fence definition that cannot be used, with the JSON path of the offending field."""

    def __init__(self, message: str, field: str | None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def __reduce__(self) -> tuple[type[GeometryError], tuple[str, str | None]]:
        return (type(self), (self.message, self.field))
