"""Exceptions tandem raises or records on a task's result."""

from django.tasks.exceptions import TaskException


class TaskNotRunnable(TaskException):
    """A stored task row names something that is not a registered Task; it is never executed."""


class WorkerLost(TaskException):
    """The worker running the task disappeared (crash, kill -9, power loss) before it finished."""


class Released(TaskException):
    """The worker shut down before the task finished; the task was put back to READY."""


class TaskTimeout(BaseException):
    """The task ran longer than its timeout and was stopped (how depends on the pool).

    A ``BaseException`` (like ``KeyboardInterrupt``), so task code's ``except Exception`` does
    not swallow the watchdog.
    """


class WorkerCrashed(TaskException):
    """The pool worker running the task died (a child process exited, an interpreter failed)."""


class Cancelled(TaskException):
    """The task was cancelled (``tandem.cancel()``): before it ran, or cooperatively while it ran.

    Task code raises it through ``context.raise_if_cancelled()``; a cancelled task is never
    retried.
    """


class LeaseLost(BaseException):
    """The attempt's worker could not keep its lease, so it stopped the attempt: another worker
    may run the task now. Raised inside the task by the subinterpreter pool (a ``BaseException``,
    like ``TaskTimeout``); the attempt's ending is never stored and ``task_finished`` is not sent.
    """


class DependencyFailed(TaskException):
    """A parent of the task (``tandem.enqueue_after``, a chain's earlier step) ended FAILED, and
    the task was enqueued with ``on_parent_failure="fail"``: it ended FAILED without running."""


class ConcurrencyLimited(TaskException):
    """The task was enqueued with ``on_limit="discard"`` and its ``concurrency_key`` already had
    ``concurrency_limit`` running tasks when it was due: it ended FAILED without running."""
