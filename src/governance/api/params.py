"""Path and query parameters shared by several routes."""

from datetime import datetime
from typing import Annotated

from fastapi import Depends, Path, Query
from pydantic import StringConstraints

from governance.api.errors import ApiError

_ID = r"^[A-Za-z0-9._:-]+$"
OrgId = Annotated[str, Path(min_length=1, max_length=128, pattern=_ID)]
SiteId = Annotated[str, Path(min_length=1, max_length=128, pattern=_ID)]
SiteIdQuery = Annotated[str, Query(min_length=1, max_length=128, pattern=_ID)]
AppIdPath = Annotated[str, Path(min_length=1, max_length=128, pattern=_ID)]
AppIdQuery = Annotated[str, Query(min_length=1, max_length=128, pattern=_ID)]
CaseIdPath = Annotated[
    str,
    Path(
        max_length=140,
        pattern=r"^[A-Za-z0-9._:-]{1,128}~[1-9][0-9]{0,8}$",
        description="`<app_id>~<n>`: the n-th request case for the app on the site",
    ),
]


def _as_of(
    as_of: Annotated[
        datetime | None,
        Query(description="ISO 8601 with a zone, e.g. 2026-01-31T12:00:00Z: answer as of then."),
    ] = None,
) -> datetime | None:
    if as_of is not None and as_of.tzinfo is None:
        message = "give a time zone, e.g. 2026-01-31T12:00:00Z"
        raise ApiError(
            422,
            "invalid_request",
            f"as_of: {message}",
            details=[{"field": "as_of", "message": message}],
        )
    return as_of


AsOf = Annotated[datetime | None, Depends(_as_of)]
ScopesQuery = Annotated[
    list[Annotated[str, StringConstraints(min_length=1, max_length=200)]],
    Query(max_length=100, description="A scope the app asks for; repeat for several"),
]


def check_period(since: datetime | None, until: datetime | None) -> None:
    """since/until filters: each with a zone, and until after since."""
    for field, moment in (("since", since), ("until", until)):
        if moment is not None and moment.tzinfo is None:
            message = "give a time zone, e.g. 2026-01-31T12:00:00Z"
            raise ApiError(
                422,
                "invalid_request",
                f"{field}: {message}",
                details=[{"field": field, "message": message}],
            )
    if since is not None and until is not None and until <= since:
        message = "must be later than since"
        raise ApiError(
            422,
            "invalid_request",
            f"until: {message}",
            details=[{"field": "until", "message": message}],
        )


Since = Annotated[
    datetime | None, Query(description="ISO 8601 with a zone: only what happened at or after it")
]
Until = Annotated[
    datetime | None, Query(description="ISO 8601 with a zone: only what happened before it")
]
