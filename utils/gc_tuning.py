"""Garbage collection set for a relay: a large heap built at start-up, and short-lived frames."""

import gc

# A young collection every 50,000 allocations instead of 700. Relaying a frame allocates a few
# dozen objects that refcounting frees at once; at 700 the collector ran hundreds of times a
# second and promoted whatever was alive then, which later cost full collections. Measured with
# bench/relay.py at N=200: event-loop lag p99 50 ms with the defaults, 5 ms with this and the
# freeze below, 1 ms with the collector off.
YOUNG_THRESHOLD = 50_000
_done = False


def freeze_startup_heap() -> None:
    """What start-up built (modules, the SDK's pydantic schemas, SQLAlchemy's mappers) lives as
    long as the process: keep it out of every collection, so a full one scans only what the
    sessions hold. Once per process (tests build many apps in one)."""
    global _done
    if _done:
        return
    _done = True
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, 20, 100)
