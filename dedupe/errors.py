"""The one error the dedupe core raises for unusable input, naming the offending JSON path."""

from __future__ import annotations

__all__ = ["DedupeInputError", "RuleConfigError"]


class DedupeInputError(ValueError):
    """Input that decodes but cannot be used (bad rules, duplicate slots); `field` is its path."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(f"{field}: {message}")
        self.message = message
        self.field = field


# The first name of this error, when only rules could be wrong. An alias, not a subclass, so
# every `except RuleConfigError` (the HTTP layer maps it to 422) also sees request errors.
RuleConfigError = DedupeInputError
