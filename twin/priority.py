"""CPU priority of background threads: serving viewers first on a busy machine."""

from __future__ import annotations

import os
import threading


def lower_thread_priority(steps: int) -> bool:
    """Lower the calling thread's CPU priority by ``steps`` nice levels; False where the platform
    cannot. On Linux a thread is a schedulable task of its own, and lowering one's own priority
    needs no privilege. Background jobs of a server (the tile warmer, the building-block
    maintainer) call it so that their work waits for the CPU while the event loop answers
    viewers, instead of taking turns with it: cached tiles stay fast while the town changes.
    """
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, min(os.getpriority(os.PRIO_PROCESS, tid) + steps, 19))
        return True
    except (AttributeError, OSError):
        return False


#: Nice steps the background jobs take (see :func:`lower_thread_priority`).
BACKGROUND_NICE = 10

__all__ = ["BACKGROUND_NICE", "lower_thread_priority"]
