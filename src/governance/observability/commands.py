"""Counts and logs what every command came to, as the application reports it."""

from __future__ import annotations

import logging

from governance.observability.logs import COMMANDS
from governance.observability.metrics import Metrics
from governance.reporting import CommandReport, Outcome


class CommandWatcher:
    """An observer of the application: one counter increment and one log line per command."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def __call__(self, report: CommandReport) -> None:
        self._metrics.command_done(report)
        level = logging.WARNING if report.outcome is Outcome.FAILED else logging.INFO
        COMMANDS.log(
            level,
            "command",
            extra={
                "command": report.command,
                "outcome": str(report.outcome),
                "site_id": report.site_id,
                "account_id": report.account_id,
                "request_id": report.request_id,
                "position": report.position,
                "changed": report.changed,
                "error": report.error,
            },
        )
