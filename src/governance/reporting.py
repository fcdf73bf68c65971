"""What each command came to, told to whoever watches the application (metrics, logs).

The application decides the outcome, so it reports it: one place for every way in (HTTP, the
CLI's demo, a future consumer), and none of them can count a command twice or forget one.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol, TypeVar

from eventsourcing.persistence import IntegrityError

from governance.domain.actor import Actor
from governance.domain.errors import DomainError, StalePolicyVersion


class Outcome(StrEnum):
    ACCEPTED = "accepted"  # done, or already satisfied (then no event was written)
    REFUSED = "refused"  # a rule said no: the policy, a missing grant, a taken id
    CONFLICTED = "conflicted"  # another writer got there first: stale If-Match, retries used up
    FAILED = "failed"  # the store was unreachable or something broke


@dataclass(frozen=True)
class CommandReport:
    command: str
    outcome: Outcome
    site_id: str
    account_id: str
    request_id: str | None
    position: int | None
    changed: bool
    error: str | None = None


class Reportable(Protocol):
    """What a command's result says about itself."""

    @property
    def position(self) -> int: ...
    @property
    def changed(self) -> bool: ...
    @property
    def refusal(self) -> str | None: ...


Observer = Callable[[CommandReport], None]
F = TypeVar("F", bound=Callable[..., Any])


class Observed(Protocol):
    command_observers: list[Observer]


def reported(
    command: str, result_of: Callable[[Any], Reportable] = lambda result: result
) -> Callable[[F], F]:
    """Report every call of a command method that takes `site_id` and `by: Actor`."""

    def decorate(method: F) -> F:
        signature = inspect.signature(method)

        @functools.wraps(method)
        def run(self: Observed, *args: Any, **kwargs: Any) -> Any:
            called = signature.bind(self, *args, **kwargs).arguments
            site_id: str = called["site_id"]
            by: Actor = called["by"]

            def tell(outcome: Outcome, **facts: Any) -> None:
                report = CommandReport(
                    command, outcome, site_id, by.account_id, by.request_id, **facts
                )
                for observer in self.command_observers:
                    observer(report)

            try:
                result = method(self, *args, **kwargs)
            except (StalePolicyVersion, IntegrityError) as error:
                tell(Outcome.CONFLICTED, position=None, changed=False, error=_code(error))
                raise
            except DomainError as error:
                tell(Outcome.REFUSED, position=None, changed=False, error=error.code)
                raise
            except Exception as error:
                tell(Outcome.FAILED, position=None, changed=False, error=type(error).__name__)
                raise
            facts = result_of(result)
            outcome = Outcome.ACCEPTED if facts.refusal is None else Outcome.REFUSED
            tell(outcome, position=facts.position, changed=facts.changed, error=facts.refusal)
            return result

        return run  # type: ignore[return-value]

    return decorate


def _code(error: Exception) -> str:
    return error.code if isinstance(error, DomainError) else "concurrent_write"
