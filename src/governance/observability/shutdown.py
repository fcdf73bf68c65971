"""How processes stop on SIGTERM: finish what is in flight, stop at a batch boundary, exit 0.

`governance serve`: uvicorn stops accepting, lets in-flight requests finish (at most
`shutdown_timeout` seconds), then the app's lifespan stops the projector after its current batch.
`governance project`: the signal asks the loop to stop after its current batch.
Either way the read models' positions are committed with their rows, so a restart resumes there.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from types import FrameType

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def exit_cleanly_on_sigterm() -> None:
    """Make a SIGTERM that uvicorn re-raises after its graceful shutdown end the process with 0.

    uvicorn handles the signal itself while it runs, then raises it again with the handler it
    found: the default one would end the process as killed (status 143) after a clean stop.
    """

    def leave(_signum: int, _frame: FrameType | None) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, leave)


def on_stop_signals(stop_soon: Callable[[], None]) -> None:
    """Call `stop_soon` (which must only set flags: it runs in a signal handler) on SIGTERM/INT."""
    for stop_signal in STOP_SIGNALS:
        signal.signal(stop_signal, lambda *_: stop_soon())
