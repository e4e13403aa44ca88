"""Torch's intra-op threads for work that is already spread over threads of its own.

Reading a saved run decodes and counts its layers in one thread per core, and the chance
band's permutations run in several threads: each of them is a loop of memory-bound ops on
one core. Torch's default of one OpenMP team per op (as many threads as cores) makes them
compete with each other: on two cores a run's statistics took 7.5 s that way and 3.8 s with
one thread per op (BENCHMARKS.md, section 6). A dashboard session drawing beside others runs
its page on one thread for the same reason (``sevis.app.services.session_threads``).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

import torch

__all__ = ["one_torch_thread", "torch_threads", "workers"]


class _Count:
    """How many blocks are inside, and the thread count before the first entered."""

    lock = threading.Lock()
    inside = 0
    before = 1


@contextlib.contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """Run the block's torch ops, in this thread, on ``count`` threads.

    NOTE torch's thread count is per thread (OpenMP's), but ``torch.set_num_threads`` also
    sets the count threads started later begin with. The first block entered records the
    count before it and the last one to leave restores it, so threads started later get it
    back; a block still running keeps its own count, and a block inside another gives the
    outer one its count back."""
    mine = torch.get_num_threads()
    with _Count.lock:
        if _Count.inside == 0:
            _Count.before = mine
        _Count.inside += 1
    torch.set_num_threads(count)
    try:
        yield
    finally:
        with _Count.lock:
            _Count.inside -= 1
            torch.set_num_threads(mine if _Count.inside else _Count.before)


def one_torch_thread() -> contextlib.AbstractContextManager[None]:
    """Run the block's torch ops, in this thread, on one thread (:func:`torch_threads`)."""
    return torch_threads(1)


def workers(most: int = 4) -> int:
    """How many threads of one torch thread each to spread work over: torch's count (the
    cores it uses), at most ``most``."""
    with _Count.lock:
        count = _Count.before if _Count.inside else torch.get_num_threads()
    return max(1, min(most, count))
