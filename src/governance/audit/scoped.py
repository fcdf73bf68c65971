"""What `GET /v1/audit/verify` tells one organization's auditors about the global hash chain.

The chain covers every organization's events in one sequence, so its counts and positions
describe the whole log: the number of events checked, the head position, the position of a
problem in another organization's events all measure other tenants' activity. Over HTTP an
auditor gets the verdict, and the position and kind of the first problem only when that position
is an event of their own organization; otherwise only that the log is damaged outside it. The
operator's `governance audit verify` keeps answering in full.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from governance.audit.verify import Tampering, Verification

_OURS = {
    Tampering.EDITED: "your organization's event at position {p} was changed after it was stored",
    Tampering.DELETED: "your organization's event at position {p} is no longer stored",
    Tampering.INSERTED: "the event at position {p} was added to the log without being sealed",
    Tampering.REORDERED: "position {p} does not hold the event of your organization sealed there:"
    " events were moved",
    Tampering.TRUNCATED: "the log no longer holds position {p} of the published head",
    Tampering.REWRITTEN: "the chain up to position {p} differs from the published head",
}
_OUTSIDE = (
    "the log is damaged at a position outside your organization; an operator can locate it"
    " with `governance audit verify`"
)


@dataclass(frozen=True)
class ScopedProblem:
    in_your_organization: bool
    position: int | None  # only for an event of the caller's organization
    kind: Tampering | None  # likewise: the kinds tell a truncated log from a longer one
    message: str


@dataclass(frozen=True)
class ScopedVerification:
    intact: bool
    problem: ScopedProblem | None


def for_organization(result: Verification, ours: Callable[[int], bool]) -> ScopedVerification:
    """The verdict as one organization may see it; `ours(position)` says if it holds their event."""
    problem = result.problem
    if problem is None:
        return ScopedVerification(intact=True, problem=None)
    if not ours(problem.position):
        return ScopedVerification(False, ScopedProblem(False, None, None, _OUTSIDE))
    message = _OURS[problem.kind].format(p=problem.position)
    return ScopedVerification(False, ScopedProblem(True, problem.position, problem.kind, message))
