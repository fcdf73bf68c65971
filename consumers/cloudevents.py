"""The one thing consumers know about the service: the CloudEvents contract of docs/events.md.

Events arrive as JSON objects and stay plain dicts; nothing here imports the domain.
"""

from __future__ import annotations

import json
from typing import Any

CloudEvent = dict[str, Any]

USER_INSTALLS_BLOCKED = "io.governance.site.user_installs.blocked.v1"
APP_REMOVED = "io.governance.site.app.removed.v1"

_STRINGS = ("id", "source", "type", "time", "subject")


class InvalidEvent(ValueError):
    """A message that is not a CloudEvent of this contract; it cannot be processed, ever."""


def parse(raw: bytes | str) -> CloudEvent:
    try:
        event = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InvalidEvent(f"not JSON: {error}") from None
    if not isinstance(event, dict):
        raise InvalidEvent("not a JSON object")
    if event.get("specversion") != "1.0":
        raise InvalidEvent(f"specversion {event.get('specversion')!r} is not 1.0")
    for name in _STRINGS:
        if not isinstance(event.get(name), str) or not event[name]:
            raise InvalidEvent(f"attribute {name!r} is missing or not a string")
    if not isinstance(event.get("position"), int):
        raise InvalidEvent("extension attribute 'position' is missing or not an integer")
    if not isinstance(event.get("data"), dict):
        raise InvalidEvent("'data' is missing or not an object")
    return event
