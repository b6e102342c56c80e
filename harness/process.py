"""Preparing the process that measures a case (thread counts today; device set-up lives here too)."""

from __future__ import annotations


def apply_thread_limit(threads: int | None) -> None:
    """Pin torch's intra-op threads and the BLAS threads behind NumPy to ``threads`` (None: defaults)."""
    if threads is None:
        return
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(threads)
    threadpool_limits(limits=threads)
