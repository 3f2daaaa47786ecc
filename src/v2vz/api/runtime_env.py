"""How a v2vz process uses the CPU: OpenMP's wait policy and the number of torch threads, decided in one place.

Why it matters (docs/benchmarks.md, section 11; docs/media.md, "Re-making a take exactly"):
- Speed: OpenMP's threads spin while they wait for work (libgomp, torch's OpenMP on Linux, spins about 300,000
  rounds before it sleeps; OMP_WAIT_POLICY=ACTIVE for ever). On a machine whose cores are shared with other work, a
  spinning thread takes the very core the thread it waits for needs. Sleeping at once (PASSIVE) fixes that but makes
  every wake-up slow: 2x slower on an idle machine. A short spin (GOMP_SPINCOUNT=10000) measured as fast as active
  on an idle machine and as passive on a busy one (benchmarks/bench_busy.py; docs/benchmarks.md, section 11), so
  that is what v2vz sets. It is read once, when the OpenMP runtime loads, that is before `import torch`:
  `prepare_environment()` therefore runs at the very start of every entry point (the `v2vz` command, and it is
  passed on to Ray workers), and it never overrides a policy the user set.
- Reproducibility: torch's CPU kernels and MKL cut their sums into one chunk per thread, so the thread count is part
  of the result. Left alone, the count is whatever the process inherited (an OMP_NUM_THREADS from a parent, a
  library's set_num_threads; never a container's CPU quota), and MKL may use fewer threads than asked when it decides
  so at run time (MKL_DYNAMIC, on unless torch's count is set).
  `cpu_threads()` is the one decision (the physical cores this process may use, or the user's OMP_NUM_THREADS),
  the engine applies it before every job (v2vz_engine.cpu), and `prepare_environment()` turns the dynamic
  adjustments off, so the same job gives the same pixels on one machine whatever else runs on it.

Torch-free, like the rest of the contract: the command and the daemon decide here before they load the engine.
"""

from __future__ import annotations

import math
import os
from collections.abc import MutableMapping
from pathlib import Path

THREADS_ENV = "OMP_NUM_THREADS"  # the user's explicit torch thread count, as OpenMP and torch read it
WAIT_POLICY_ENV = "OMP_WAIT_POLICY"
# A wait policy the user chose in any of the runtimes' own words: then we set none.
WAIT_POLICY_KNOBS = (WAIT_POLICY_ENV, "GOMP_SPINCOUNT", "KMP_BLOCKTIME", "KMP_LIBRARY")
SPIN_COUNT_ENV = "GOMP_SPINCOUNT"
SHORT_SPIN = "10000"  # rounds a waiting thread spins before it sleeps (libgomp's default is 300000)
# No run-time change of the thread count (OpenMP's and MKL's dynamic adjustment): the count is the job's.
FIXED_THREAD_COUNT = {"OMP_DYNAMIC": "FALSE", "MKL_DYNAMIC": "FALSE"}


def prepare_environment(environ: MutableMapping[str, str] | None = None) -> dict[str, str]:
    """Set the short spin before a waiting thread sleeps and the fixed thread count in `environ` (default
    os.environ) unless the user set them; returns what was set. Must run before the OpenMP runtime loads (before
    `import torch`)."""
    environ = os.environ if environ is None else environ
    wanted = dict(FIXED_THREAD_COUNT)
    if not any(environ.get(knob) for knob in WAIT_POLICY_KNOBS):
        wanted[SPIN_COUNT_ENV] = SHORT_SPIN
    added = {name: value for name, value in wanted.items() if not environ.get(name)}
    environ.update(added)
    return added


def cpu_threads(environ: MutableMapping[str, str] | None = None) -> int:
    """The torch thread count of this process: the user's OMP_NUM_THREADS (a positive integer), else
    `usable_cores()`. Never the machine's core count: a process pinned to 2 of 64 cores runs 2 threads."""
    environ = os.environ if environ is None else environ
    asked = environ.get(THREADS_ENV, "").split(",")[0].strip()  # OpenMP allows a list per nesting level
    if asked.isdigit() and int(asked) > 0:
        return int(asked)
    return usable_cores()


def usable_cores() -> int:
    """The physical cores this process may run on: its CPU affinity (taskset, a cpuset), one per core when the
    cores have hyperthreads (what torch's default counts too), capped by a cgroup CPU quota (a container's
    --cpus)."""
    cpus = allowed_cpus()
    cores = physical_cores(cpus)
    quota = cgroup_cpu_limit()
    return max(1, min(cores, quota) if quota else cores)


def allowed_cpus() -> set[int]:
    """The logical CPUs this process may use (its affinity), or all of them where affinity is unknown."""
    try:
        return set(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # macOS, Windows
        return set(range(os.cpu_count() or 1))


def physical_cores(cpus: set[int], sysfs: Path = Path("/sys/devices/system/cpu")) -> int:
    """How many physical cores `cpus` fall on (hyperthreads of one core count once); len(cpus) where the topology
    cannot be read."""
    cores = set()
    for cpu in cpus:
        topology = sysfs / f"cpu{cpu}" / "topology"
        try:
            package = (topology / "physical_package_id").read_text().strip()
            core = (topology / "core_id").read_text().strip()
        except OSError:
            return len(cpus)
        cores.add((package, core))
    return len(cores) or len(cpus)


def cgroup_cpu_limit(root: Path = Path("/sys/fs/cgroup")) -> int | None:
    """The CPUs a cgroup v2 (cpu.max) or v1 (cfs quota) limit allows this process, rounded up; None without one."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
    except (OSError, ValueError):
        try:
            quota = (root / "cpu" / "cpu.cfs_quota_us").read_text().strip()
            period = (root / "cpu" / "cpu.cfs_period_us").read_text().strip()
        except OSError:
            return None
    if quota in ("max", "-1") or not quota.lstrip("-").isdigit() or not period.isdigit() or int(period) <= 0:
        return None
    return max(1, math.ceil(int(quota) / int(period)))
