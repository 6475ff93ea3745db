"""Where independent work runs: this process, spawned local processes, or a Dask cluster.

Sweeps (:mod:`cosim.sweep`) and comparisons (:mod:`cosim.compare`) both spread independent
evaluations -- grid points, samples read through ngspice -- over workers; this module is
the one home of the executors they share. It knows nothing of models or crossbars: a job is
``work(payload, item)`` with a ``payload`` sent once to every worker and a list of
``(tag, item)`` pairs, and ``on_done(tag, result)`` is called in this process as items
finish (in completion order).

* Local: :func:`run_in_processes` -- ``concurrent.futures.ProcessPoolExecutor`` with the
  ``spawn`` start method (a loaded libngspice or a running thread is never forked) and one
  BLAS thread per worker; ``workers=1`` runs in this process. The payload reaches the
  workers as a file, not through their start-up pipe, so a worker that dies while starting
  (a script without a ``__main__`` guard) is reported as :class:`WorkerStartError` instead
  of blocking this process on a full pipe.
* Dask: :func:`run_on_dask` -- ``scheduler`` is an address ``tcp://HOST:PORT`` (checked by
  :func:`check_address`, connected within :data:`CONNECT_TIMEOUT`, closed afterwards) or a
  ``dask.distributed.Client`` (left open). The payload is scattered once to every worker, so
  workers need no shared disk, only cosim installed (``pip install 'cosim[dask]'``).

:func:`map_in_processes` and :func:`map_on_dask` are the ``[func(item) for item in items]``
forms of the two, results in item order.
"""

from __future__ import annotations

import atexit
import pickle
import re
import shutil
import tempfile
import uuid
from pathlib import Path

from . import _validate as check
from .errors import CosimError

__all__ = ["run_in_processes", "map_in_processes", "run_on_dask", "map_on_dask",
           "check_address", "check_scheduler", "require_dask", "scratch_dir",
           "WorkerStartError", "SchedulerError", "DaskNotInstalledError", "CONNECT_TIMEOUT"]

#: seconds to wait for a Dask scheduler given by address
CONNECT_TIMEOUT = 5.0


class WorkerStartError(CosimError, RuntimeError):
    """Local worker processes died (most often: a script without a ``__main__`` guard)."""


class DaskNotInstalledError(CosimError, ImportError):
    """A Dask scheduler was requested but dask.distributed is not installed."""


class SchedulerError(CosimError, ConnectionError):
    """The Dask scheduler address is malformed or cannot be reached."""


_SCRATCH: list = []


def scratch_dir() -> Path:
    """This process's temporary folder (made on first use, removed at exit)."""
    if not _SCRATCH:
        folder = Path(tempfile.mkdtemp(prefix="cosim-sweep-"))
        atexit.register(shutil.rmtree, folder, True)
        _SCRATCH.append(folder)
    return _SCRATCH[0]


# ------------------------------------------------------------------------------ local

_GUARD_HINT = ("the worker processes exited before finishing. They are started with the "
               "'spawn' method and import your main script again: if you call run_sweep (or "
               "compare with workers) from a script, put the call under "
               "`if __name__ == \"__main__\":`, or pass workers=1 to run in this process")

_WORKER_PAYLOAD = None
_WORKER_LIMITS = None


def _pool_init(payload_file):
    global _WORKER_PAYLOAD, _WORKER_LIMITS
    with open(payload_file, "rb") as fh:
        _WORKER_PAYLOAD = pickle.load(fh)     # our own file, written just before
    try:   # one BLAS thread per worker process (as Dask workers do), no oversubscription
        from threadpoolctl import threadpool_limits
        _WORKER_LIMITS = threadpool_limits(limits=1)
    except ImportError:  # pragma: no cover
        pass


def _pool_task(work, item):
    return work(_WORKER_PAYLOAD, item)


def run_in_processes(work, payload, todo, workers: int, on_done) -> None:
    """``on_done(tag, work(payload, item))`` for each ``(tag, item)`` of ``todo``, on
    ``workers`` spawned processes (``workers == 1`` or a single item: in this process).

    ``work`` must be picklable (a module-level function); ``payload`` is pickled once into a
    file that every worker reads at start-up. A pool whose workers die raises
    :class:`WorkerStartError` naming the usual cause.
    """
    todo = list(todo)
    if workers == 1 or len(todo) <= 1:
        for tag, item in todo:
            on_done(tag, work(payload, item))
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from concurrent.futures.process import BrokenProcessPool

    # The payload goes to the workers as a file, not through their start-up pipe: a worker
    # that dies while starting (a script without a __main__ guard) then cannot leave this
    # process blocked forever on a full pipe; the pool reports it broken instead.
    payload_file = scratch_dir() / f"payload-{uuid.uuid4().hex[:12]}.pkl"
    with open(payload_file, "wb") as fh:
        pickle.dump(payload, fh, protocol=pickle.HIGHEST_PROTOCOL)
    # spawn, not fork: safe when the calling process runs threads (a Dask client, a progress
    # bar monitor) or has libngspice loaded; forking measured no faster here (the start-up
    # is ~1 s either way)
    pool = ProcessPoolExecutor(max_workers=min(workers, len(todo)),
                               mp_context=multiprocessing.get_context("spawn"),
                               initializer=_pool_init, initargs=(str(payload_file),))
    try:
        futures = {pool.submit(_pool_task, work, item): tag for tag, item in todo}
        for future in as_completed(futures):
            on_done(futures[future], future.result())
    except BrokenProcessPool:
        pool.shutdown(wait=False, cancel_futures=True)
        raise WorkerStartError(_GUARD_HINT) from None
    except RuntimeError as exc:
        pool.shutdown(wait=False, cancel_futures=True)
        if "bootstrapping phase" in str(exc):        # we are the re-imported script
            raise WorkerStartError(_GUARD_HINT) from None
        raise
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    finally:
        payload_file.unlink(missing_ok=True)
    pool.shutdown(wait=True)


def map_in_processes(func, items, workers: int = 1, progress=None) -> list:
    """``[func(item) for item in items]`` spread over ``workers`` processes, in order.

    Meant for independent reads through Spice backends, e.g. the samples of a comparison:
    ``map_in_processes(net.run, [x[k:k + 1] for k in range(N)], workers=2)``.  Each
    worker is a fresh interpreter (the ``spawn`` start method: a loaded libngspice is never
    forked) with its own ngspice -- shared library, loaded circuits, subprocesses -- and one
    BLAS thread; ``func`` (picklable; Spice arrays drop their loaded circuit when pickled)
    is sent once per worker, each item once.  Results on disk go through the same
    content-addressed cache, which is safe to share.  ``progress(done, total)`` is called
    in this process as items finish.  ``workers=1`` runs in this process.

    Workers that die raise :class:`WorkerStartError` (a RuntimeError); when the caller is a
    script, the spawned workers import it again, so its top level must be under
    ``if __name__ == "__main__":``.
    """
    workers = check.integer("workers", workers, minimum=1)
    items = list(items)
    return _mapped(items, progress,
                   lambda store: run_in_processes(_call, func, enumerate(items), workers, store))


def _call(func, item):
    return func(item)


def _mapped(items, progress, run) -> list:
    """The results of ``run(store)``, which calls ``store(k, result)`` per item, in order."""
    results, done = [None] * len(items), []

    def store(k, value):
        results[k] = value
        done.append(k)
        if progress is not None:
            progress(len(done), len(items))
    run(store)
    return results


# ------------------------------------------------------------------------------ Dask

def require_dask():
    """The ``dask.distributed`` module, or a DaskNotInstalledError saying how to install it."""
    try:
        from dask import distributed
    except ImportError as exc:
        raise DaskNotInstalledError("running a sweep on a Dask scheduler needs dask.distributed: "
                                    "pip install 'cosim[dask]'") from exc
    return distributed


_ADDRESS = re.compile(r"^(tcp|tls|ws|wss)://(\[[0-9A-Fa-f:]+\]|[A-Za-z0-9.-]+):(\d{1,5})$")


def check_address(address: str) -> str:
    """``address`` if it looks like tcp://HOST:PORT (or tls/ws/wss), else a SchedulerError."""
    match = _ADDRESS.match(address.strip())
    if not match or not 0 < int(match.group(3)) < 65536:
        raise SchedulerError(f"scheduler must be an address like tcp://HOST:PORT (port "
                             f"1-65535), got {address!r}")
    return address.strip()


def check_scheduler(scheduler) -> None:
    """Fail early, before any work: ``scheduler`` is an address (and Dask is installed) or
    a ``dask.distributed.Client``."""
    if isinstance(scheduler, str):
        require_dask()
        check_address(scheduler)
        return
    distributed = require_dask()
    if not isinstance(scheduler, distributed.Client):
        raise TypeError(f"scheduler must be an address 'tcp://host:port' or a "
                        f"dask.distributed.Client, got {type(scheduler).__name__}")


def _connect(distributed, address):
    """A client of the scheduler at ``address``, or a SchedulerError within CONNECT_TIMEOUT."""
    try:
        return distributed.Client(address, timeout=f"{CONNECT_TIMEOUT}s", set_as_default=False)
    except (OSError, TimeoutError) as exc:
        raise SchedulerError(f"cannot reach the Dask scheduler at {address} within "
                             f"{CONNECT_TIMEOUT:g} s ({type(exc).__name__}: "
                             f"{str(exc).splitlines()[0] if str(exc) else 'no answer'}); is "
                             f"`dask scheduler` running there?") from None


def _client(scheduler):
    """(dask.distributed, a client of ``scheduler``, whether this call made it)."""
    check_scheduler(scheduler)
    distributed = require_dask()
    if isinstance(scheduler, str):
        return distributed, _connect(distributed, check_address(scheduler)), True
    return distributed, scheduler, False


def run_on_dask(scheduler, payload, work, todo, prefix, on_done) -> None:
    """``on_done(tag, work(payload, item))`` for each ``(tag, item)`` of ``todo``, as the
    Dask cluster finishes them; ``payload`` is sent once to every worker and ``prefix``
    names the tasks on the dashboard."""
    distributed, client, own = _client(scheduler)
    try:
        remote = client.scatter(payload, broadcast=True, hash=False)
        run = uuid.uuid4().hex[:8]
        futures = {client.submit(work, remote, item, pure=False,
                                 key=f"{prefix}-{run}-{str(tag)[:16]}"): tag for tag, item in todo}
        try:
            # as_completed and result() are tied to this client's event loop explicitly:
            # they would otherwise look for a *default* client, which a client made with
            # set_as_default=False is not ("No clients found")
            for future in distributed.as_completed(list(futures), loop=client.loop):
                on_done(futures[future], client.gather(future))
        except BaseException:
            client.cancel(list(futures))
            raise
        finally:
            client.cancel(remote)
    finally:
        if own:
            client.close()


def map_on_dask(func, items, scheduler, progress=None) -> list:
    """``[func(item) for item in items]`` on the Dask cluster ``scheduler`` (an address, as
    for sweeps, or a ``dask.distributed.Client``), in order; ``progress(done, total)`` as
    items finish. Each Dask worker process runs its own ngspice."""
    items = list(items)
    return _mapped(items, progress, lambda store: run_on_dask(
        scheduler, func, _call, list(enumerate(items)), "cosim-map", store))
