"""Pages for browsers, served by the API's process and calling the same application code.

The admin console, the consent screen, a site's timeline and sign-in: server-rendered HTML with
one stylesheet and no JavaScript.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Response
from fastapi.responses import FileResponse

from governance.api.errors import not_found
from governance.web import app_requests, consent, console, session, timeline
from governance.web.pages import PagePrincipal, PageRoute

_STYLESHEET = Path(__file__).parent / "static" / "governance.css"

router = APIRouter(include_in_schema=False)
for pages in (session, console, app_requests, timeline, consent):
    router.include_router(pages.router)
_fallback = APIRouter(route_class=PageRoute)


@router.get("/static/governance.css")
def stylesheet() -> FileResponse:
    return FileResponse(
        _STYLESHEET, media_type="text/css", headers={"Cache-Control": "public, max-age=3600"}
    )


@router.get("/favicon.ico")
def no_icon() -> Response:
    return Response(status_code=204, headers={"Cache-Control": "public, max-age=86400"})


@_fallback.get("/admin/{rest:path}")
def unknown_page(principal: PagePrincipal, rest: str) -> Response:
    """Any other console address: the same 404 page as a missing site, not a JSON error."""
    raise not_found("page")


router.include_router(_fallback)
