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
