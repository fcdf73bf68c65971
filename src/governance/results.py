"""What commands return: plain values, never aggregates."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CommandResult:
    """What a command did: whether it wrote events, and the log position to read one's writes at."""

    changed: bool
    position: int

    @property
    def refusal(self) -> None:
        return None  # commands other than installs raise a domain error to refuse
