"""Type stubs of the ferrops extension module: a worker of a ferrops parameter-server job.

Arrays are never copied: keys must be 1-D C-contiguous ``numpy.uint64`` arrays, sorted and
unique; values and destinations C-contiguous ``numpy.float32`` arrays of any shape holding
``keys.size * dim`` floats (``keys.size * dim * 2`` for a push to a ``scaled_prox_l1`` table).
Anything else raises an :class:`ArgumentError` (or :class:`KeysError`) before anything is sent.
Every call that waits on the network releases the GIL.
"""

import os
from types import TracebackType
from typing import Dict, List, Literal, Optional, Type, Union

import numpy as np
import numpy.typing as npt

__version__: str
RULES: List[str]
"""The rule names ``declare_table`` accepts."""

class Error(Exception):
    """Base class of every error ferrops raises."""

class ArgumentError(Error):
    """Wrong dtype, memory order, shape or size of an array, an unknown rule, consistency or
    codec, a bad keyword argument, or a ticket waited on twice. Nothing was sent."""

class KeysError(ArgumentError):
    """Keys not sorted and unique (or outside a dense table's range). Nothing was sent."""

class ConfigError(Error):
    """The worker configuration (FERROPS_* variables, the FERROPS_CONFIG file) or a table
    declaration is invalid."""

class ClusterError(Error):
    """The job failed the request: a server or the scheduler was lost, refused or answered an
    error, or the job was shut down."""

class ClosedError(Error):
    """The worker has finished; it can make no more requests."""

Consistency = Union[Literal["sequential", "eventual"], int]
Keys = npt.NDArray[np.uint64]
Values = npt.NDArray[np.float32]

class Table:
    """A declared table, as returned by :meth:`Worker.declare_table`."""

    @property
    def name(self) -> str: ...
    @property
    def dim(self) -> int:
        """Values per key: the second axis of what ``pull`` returns."""
    @property
    def push_width(self) -> int:
        """Floats per key a push carries (``dim``, or ``2 * dim`` for ``scaled_prox_l1``)."""
    @property
    def rule(self) -> str: ...
    @property
    def consistency(self) -> Consistency: ...
    @property
    def id(self) -> int:
        """The cluster-wide id the scheduler assigned."""

class Ticket:
    """An asynchronous push or pull in flight; give it to :meth:`Worker.wait` once."""

    @property
    def kind(self) -> Literal["push", "pull"]: ...
    @property
    def waited(self) -> bool: ...

class Worker:
    """A worker of a ferrops job. Use it as a context manager to finish it at the end::

        with ferrops.Worker.from_env() as w:
            t = w.declare_table("emb", dim=2, rule="sum", consistency="sequential")
            w.push(t, keys, values)
            w.clock()
            got = w.pull(t, keys)

    Methods may be called from several threads; the worker serialises its requests.
    """

    @staticmethod
    def from_env() -> Worker:
        """Joins the job the environment describes (FERROPS_SCHEDULER, FERROPS_NUM_SERVERS,
        FERROPS_NUM_WORKERS, FERROPS_SECRET, ..., and FERROPS_CONFIG), as set by ``ferrops
        local`` or a batch launcher. Blocks, without the GIL, until the whole job is up.
        Raises :class:`ConfigError` for a missing or invalid setting."""
    @staticmethod
    def connect_to(scheduler: str, num_servers: int, num_workers: int, *,
                   secret: Optional[str] = None, insecure: bool = False) -> Worker:
        """Joins the job whose scheduler listens at ``scheduler`` ("host:port") with its
        cluster secret (``secret``, else ``FERROPS_SECRET``; ``insecure=True`` for a job run
        without one); every other setting takes its default. Raises :class:`ConfigError`
        without a secret."""
    @property
    def rank(self) -> int:
        """0-based rank among the workers."""
    @property
    def num_workers(self) -> int: ...
    @property
    def num_servers(self) -> int: ...
    @property
    def finished(self) -> bool: ...
    @property
    def metrics_addr(self) -> Optional[str]:
        """Where this worker serves its Prometheus metrics ("ip:port"; set by
        ``FERROPS_METRICS_ADDR``, the port picked when it asked for 0), or None."""
    @property
    def current_clock(self) -> int:
        """How many times this worker called :meth:`clock`."""
    def declare_table(self, name: str, dim: int, rule: str = "sum",
                      consistency: Optional[Consistency] = None, *,
                      dense_keys: Optional[int] = None, codec: str = "raw",
                      key_caching: bool = True, **rule_kwargs: float) -> Table:
        """Declares a table (or finds the one another worker declared with the same
        arguments) and waits until every server holds it.

        ``rule``: one of :data:`RULES`; its hyper-parameters as keywords, with defaults
        ``sgd(lr=0.01)``, ``momentum(lr=0.01, mu=0.9)``, ``adagrad(lr=0.01, eps=1e-8)``,
        ``adam(lr=0.001, beta1=0.9, beta2=0.999, eps=1e-8)`` (the server counts Adam's
        steps), ``ftrl(alpha=0.1, beta=1, l1=0, l2=0)``, ``prox_l1(lr=0.01, l1=0)``,
        ``elastic_net(lr=0.01, l1=0, l2=0)``, ``scaled_prox_l1(l1=0, delta=1)``.
        ``consistency``: ``"sequential"`` (BSP), ``"eventual"`` (the default), or an int τ:
        a pull after a worker's c-th clock sees every worker's pushes of its first c − τ
        clocks. ``dense_keys=n``: keys are ``0..n``, stored without a key map.
        ``codec``: how values travel, ``"raw"``, ``"fp16"``, ``"bf16"`` or ``"lz4"``.
        """
    def push(self, table: Table, keys: Keys, values: Values) -> None:
        """Pushes ``values`` for ``keys`` and waits until every server involved applied
        them. The values are sent straight from the array."""
    def push_async(self, table: Table, keys: Keys, values: Values) -> Ticket:
        """Sends a push and returns at once. The arrays may be changed or reused as soon as
        this returns: what the sockets did not take at once was copied into the send queue
        (counted in ``metrics()["value_bytes_copied"]``)."""
    def pull(self, table: Table, keys: Keys) -> npt.NDArray[np.float32]:
        """Returns the values of ``keys`` as a new array of shape ``(keys.size, dim)``,
        read from the sockets straight into it."""
    def pull_into(self, table: Table, keys: Keys, out: Values) -> None:
        """Pulls into ``out`` (writeable, C-contiguous float32, ``keys.size * dim``
        elements, any shape), in place. Do not touch ``out`` from another thread
        meanwhile."""
    def pull_changed_into(self, table: Table, keys: Keys, out: Values,
                          theta: float) -> None:
        """Pulls into ``out`` only the rows that changed on the servers by more than
        ``theta * max(|value|, eps)`` since the last such pull; pass the same array every
        time."""
    def pull_async(self, table: Table, keys: Keys) -> Ticket:
        """Sends a pull and returns at once; :meth:`wait` returns the values as an array of
        shape ``(keys.size, dim)``, received into a buffer the request owns and handed over
        without a copy. ``keys`` may be reused as soon as this returns."""
    def wait(self, ticket: Ticket) -> Optional[npt.NDArray[np.float32]]:
        """Waits for a ticket of this worker: None for a push, the values for a pull."""
    def is_done(self, ticket: Ticket) -> bool:
        """Makes progress without blocking; whether ``ticket`` has finished."""
    def clock(self) -> int:
        """Finishes the current clock (which may release other workers' pulls) and returns
        the new clock."""
    def barrier(self) -> None:
        """Waits until every live worker reaches a barrier."""
    def checkpoint(self, dir: Union[str, os.PathLike]) -> None:
        """Writes every table's values and rule state into the directory ``dir`` at a
        consistent clock. Collective, like :meth:`barrier`: every live worker calls it after
        the same pushes. ``ferrops local --restore DIR`` starts a job from it."""
    def finish(self) -> None:
        """Waits for outstanding requests and leaves the job. Idempotent; every other call
        raises :class:`ClosedError` afterwards."""
    def metrics(self) -> Dict[str, int]:
        """Byte counters: frames and header/key/value/extra bytes sent and received,
        ``value_bytes_copied`` (value bytes the transport had to copy) and
        ``rejected_frames``."""
    def __enter__(self) -> Worker: ...
    def __exit__(self, exc_type: Optional[Type[BaseException]],
                 exc: Optional[BaseException],
                 traceback: Optional[TracebackType]) -> bool:
        """Finishes the worker; an exception raised in the block propagates."""
