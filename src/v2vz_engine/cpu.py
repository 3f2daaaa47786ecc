"""The engine's one place that sets torch's CPU threads: the count `v2vz.api.runtime_env.cpu_threads()` decides.

Why per job, on the thread that runs it: torch's CPU kernels (and MKL's) cut their sums into one chunk per thread,
so the thread count is part of the pixels. Left alone, the count is whatever the process happened to start with
(OpenMP's default, an inherited OMP_NUM_THREADS, another library's set_num_threads), and MKL may lower it at run
time (MKL_DYNAMIC, on until torch.set_num_threads is called). Setting it explicitly before each span makes it the
job's: the same job on the same machine gives the same pixels whatever else runs there (docs/media.md).
"""

from __future__ import annotations

import contextlib
import logging

import torch

from v2vz.api.runtime_env import cpu_threads

log = logging.getLogger("v2vz.engine")
_chosen: int | None = None  # this process's count, once decided (a cluster worker's comes from its --worker-threads)


def apply_cpu_threads(threads: int | None = None) -> int:
    """Give torch `threads` intra-op threads (default: the count this process chose before, else the decided one)
    and return the count now in use.

    torch.set_num_threads is called even when the count already matches: it also turns MKL's run-time thread
    adjustment off (mkl_set_dynamic(false)), which nothing else in the process does.
    """
    global _chosen
    count = _chosen = threads or _chosen or cpu_threads()
    torch.set_num_threads(count)
    if torch.get_num_interop_threads() != count:
        # possible only before the first inter-op work; we never fork ops, so the default is merely too many
        with contextlib.suppress(RuntimeError):
            torch.set_num_interop_threads(count)
    if torch.get_num_threads() != count:  # a runtime that refused it: say so, the promise is off
        log.warning("torch runs %d CPU threads, not the %d asked for", torch.get_num_threads(), count)
    return torch.get_num_threads()
