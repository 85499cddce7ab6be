"""Where the pairs run: local worker processes, or the workers of a Dask cluster.

Why no scheduler of our own: each pair is already an isolated ``register`` process (``run_pair``),
so on one machine a thread pool only has to keep N of them going, and on a cluster Dask's
``distributed`` scheduler (and ``dask-jobqueue`` for SLURM/PBS) does the rest: placement, retries
of lost workers, TLS. Both executors call the same ``run_pair``, so they give the same bytes.

Threads: the batch never passes ``--threads``; each child keeps the deterministic thread plan
(one thread for most steps, two while Powell runs), so N jobs use about N to 2N cores. That is why
the default is half the cores, and why Dask workers get one task slot each.

Example:
    >>> LocalExecutor(2).run(jobs, BatchPolicy("out"), lambda index, outcome: print(outcome.status))
    >>> with DaskExecutor.connect("tls://scheduler:8786") as executor:
    ...     executor.run(jobs, BatchPolicy("/shared/out"), on_done)
"""

from __future__ import annotations

import logging
import os
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Callable, List

from ..errors import InputError
from .manifest import PairJob
from .outcome import PairOutcome
from .pair_run import BatchPolicy, run_pair

OnDone = Callable[[int, PairOutcome], None]


def default_jobs() -> int:
    """Half the cores this process may use (SLURM/cgroup limits honoured), at least one."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // 2)


def _internal_failure(job: PairJob, error: BaseException) -> PairOutcome:
    text = " ".join(str(error).split())[:300]
    if type(error).__name__ == "KilledWorker":
        text = f"the Dask worker running it died (out of memory?): {text}"
    return PairOutcome(job.pair_id, job.folder, "failed-other", f"{type(error).__name__}: {text}")


class LocalExecutor:
    """Keeps ``jobs`` pairs running at once on this machine, each in its own ``register`` process."""

    def __init__(self, jobs: int) -> None:
        self.jobs = jobs

    def describe(self) -> str:
        return f"{self.jobs} local worker process{'es' if self.jobs > 1 else ''}"

    def run(self, jobs: List[PairJob], policy: BatchPolicy, on_done: OnDone) -> None:
        """Run every job (in manifest order); on Ctrl-C/SIGTERM stop the running children and re-raise."""
        stop = threading.Event()
        with ThreadPoolExecutor(max_workers=self.jobs, thread_name_prefix="pair") as pool:
            futures = {pool.submit(run_pair, job, policy, stop.is_set): index for index, job in enumerate(jobs)}
            try:
                for future in as_completed(futures):
                    index = futures[future]
                    try:
                        on_done(index, future.result())
                    except Exception as error:  # a bug in the batch itself: the pair fails, the rest goes on
                        on_done(index, _internal_failure(jobs[index], error))
            except BaseException:
                stop.set()
                for future in futures:
                    future.cancel()
                raise

    def close(self) -> None:
        pass

    def __enter__(self) -> LocalExecutor:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _distributed():
    try:
        import distributed
    except ImportError:
        raise InputError("--dask-local and --dask-scheduler need Dask's 'distributed' package, which is not "
                         "installed", "install it with: pip install 'multimodal-knee-registration[dask]' "
                         "(or: pip install 'dask[distributed]')") from None
    if not logging.getLogger().isEnabledFor(logging.DEBUG):  # cluster chatter only with --debug
        logging.getLogger("distributed").setLevel(logging.WARNING)
    return distributed


class DaskExecutor:
    """Submits one ``run_pair`` task per pair to a Dask cluster; security comes from Dask's own config."""

    def __init__(self, client, cluster=None) -> None:
        self.client, self.cluster = client, cluster

    @classmethod
    def local(cls, workers: int) -> DaskExecutor:
        """A ``LocalCluster`` of ``workers`` processes with one task slot each."""
        distributed = _distributed()
        cluster = distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                           dashboard_address=None)
        return cls(distributed.Client(cluster), cluster)

    @classmethod
    def connect(cls, address: str) -> DaskExecutor:
        """A client of the scheduler at ``address``; TLS from ``distributed.comm.tls.*`` in the Dask config."""
        distributed = _distributed()
        try:
            return cls(distributed.Client(address))
        except (OSError, TimeoutError, ValueError) as error:
            raise InputError(f"cannot connect to the Dask scheduler at '{address}' ({error})",
                             "check the address (e.g. tcp://host:8786 or tls://host:8786) and that the "
                             "scheduler is running; TLS certificates come from the Dask configuration "
                             "(distributed.comm.tls.*)") from None

    def describe(self) -> str:
        workers = len(self.client.scheduler_info().get("workers", {}))
        return f"Dask at {self.client.scheduler.address} ({workers} worker{'s' if workers != 1 else ''} now)"

    def run(self, jobs: List[PairJob], policy: BatchPolicy, on_done: OnDone) -> None:
        """Submit every job (earlier rows get higher priority); on Ctrl-C cancel what has not finished."""
        distributed = _distributed()
        token = uuid.uuid4().hex[:12]
        futures = {self.client.submit(run_pair, job, policy, key=f"knee-pair-{token}-{index}",
                                      priority=-index, retries=0): index for index, job in enumerate(jobs)}
        try:
            for future in distributed.as_completed(list(futures)):
                index = futures[future]
                try:
                    on_done(index, future.result())
                except Exception as error:  # the task (not the pair) failed: a lost worker, a bad install
                    on_done(index, _internal_failure(jobs[index], error))
        except BaseException:
            self.client.cancel(list(futures))
            raise

    def close(self) -> None:
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()

    def __enter__(self) -> DaskExecutor:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
