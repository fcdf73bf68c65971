"""A small HTTP client on the standard library, for the public API and for webhook endpoints.

Redirects are not followed: a service token or a signed delivery goes only where it was sent.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # urllib then raises HTTPError with the 3xx status


_opener = urllib.request.build_opener(_NoRedirects)


class Unreachable(Exception):
    """No HTTP answer at all: refused, reset, timed out, or the name did not resolve."""


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def send(
    method: str,
    url: str,
    *,
    headers: Mapping[str, str],
    body: bytes | None = None,
    params: Mapping[str, str | int] | None = None,
    timeout: float,
) -> Answer:
    """One request; any HTTP status is an answer, only a transport failure raises."""
    if params:
        url = f"{url}?{urlencode(params)}"
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"only http and https URLs may be called, not {url!r}")
    request = urllib.request.Request(url, data=body, headers=dict(headers), method=method)  # noqa: S310 - scheme checked above
    try:
        with _opener.open(request, timeout=timeout) as response:
            return Answer(response.status, response.read())
    except urllib.error.HTTPError as error:
        with error:
            return Answer(error.code, error.read())
    except (urllib.error.URLError, OSError) as error:
        raise Unreachable(str(getattr(error, "reason", error))) from None
