"""What one process measures, wired once by its runtime."""

from __future__ import annotations

from governance.application import GovernanceApplication
from governance.groupcommit import GroupCommitter
from governance.observability.commands import CommandWatcher
from governance.observability.metrics import Metrics, behind
from projections.projector import Projector


def process_metrics(application: GovernanceApplication, projector: Projector) -> Metrics:
    """Metrics for the commands this process runs and for how far its read models lag."""
    metrics = Metrics()
    application.command_observers.append(CommandWatcher(metrics))
    committer = getattr(application.recorder, "committer", None)
    if isinstance(committer, GroupCommitter):
        committer.observers.append(metrics.commit_batch_size.observe)
    head = application.head_position
    metrics.scraped.track(
        "governance_event_log_head_position",
        "The last position written to the event log.",
        "application",
        lambda: {application.name: float(head())},
    )
    metrics.scraped.track(
        "governance_projection_position",
        "The last log position each read model has applied.",
        "projection",
        lambda: {name: float(p) for name, p in projector.positions().items()},
    )
    metrics.scraped.track(
        "governance_projection_lag_events",
        "Log positions each read model is behind the head (an upper bound: ids may have gaps).",
        "projection",
        lambda: behind(head(), projector.positions()),
    )
    return metrics
