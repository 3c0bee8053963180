"""Handler registration and invocation for :mod:`eskernel.runtime` (private).

A :class:`Handler` is a user function bound to a key (a task name or a queue name) and to the
way it runs: ``async`` (a coroutine on the event loop), ``thread`` (a sync function in the
runtime's thread pool), ``process`` (a sync, picklable function in a process pool) or
``inline`` (a sync function called on the event loop itself: the cheapest way to run a trivial
sync function, but it blocks the loop and cannot be timed out).
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import pickle
import re
import traceback
from dataclasses import dataclass
from typing import Any, Callable

from ..errors import InvalidSpecError, NonRetryableError

__all__ = ["EXECUTORS", "Handler", "TaskContext", "make_handler", "describe_exception",
           "process_call", "resume_coroutine"]

#: Accepted values of ``executor=`` when registering a handler.
EXECUTORS = ("auto", "async", "thread", "process", "inline")

_KEY_RE = re.compile(r"[A-Za-z0-9._:@/+-]{1,200}\Z")
#: Frames of traceback kept in a recorded error (the innermost ones).
TRACEBACK_FRAMES = 6
#: Longest error string recorded for one failed attempt.
MAX_ERROR_CHARS = 4000
# Frames of the machinery between the runtime and a handler, left out of recorded tracebacks.
_PLUMBING = ("concurrent/futures/thread.py", "runtime/_handlers.py", "runtime/_attempts.py",
             "contextvars.py")


@dataclass(frozen=True, slots=True)
class TaskContext:
    """What a handler registered with ``context=True`` receives instead of the bare payload.

    Attributes:
        task_id: the task's id.
        name: the task's name (``None`` if it has none).
        queue: the task's queue.
        payload: the task's payload (JSON data).
        attempt: this attempt's number, from 1.
        max_attempts: attempts allowed before the task is dead-lettered.
        agent_id: the agent holding the lease.
        lease_id: the lease (fencing token) this attempt runs under.
        deadline: clock time (seconds) at which the attempt times out (``inf`` if never).
    """

    task_id: str
    name: str | None
    queue: str
    payload: Any
    attempt: int
    max_attempts: int
    agent_id: str
    lease_id: int
    deadline: float


@dataclass(frozen=True, slots=True)
class Handler:
    """A registered handler: ``fn`` run as ``mode`` for tasks named or queued ``key``."""

    key: str
    fn: Callable[..., Any]
    mode: str
    context: bool
    non_retryable: tuple[type[BaseException], ...] = ()

    def retryable(self, exc: BaseException) -> bool:
        """Whether a failure with ``exc`` may be retried: not for :class:`NonRetryableError`
        nor for the exception types registered as ``non_retryable``."""
        return not isinstance(exc, (NonRetryableError, *self.non_retryable))


def _is_async(fn: Callable[..., Any]) -> bool:
    if inspect.iscoroutinefunction(fn):
        return True
    call = getattr(fn, "__call__", None)  # an object whose __call__ is ``async def``
    return call is not None and inspect.iscoroutinefunction(call)


def make_handler(key: object, fn: object, executor: object, context: object,
                 non_retryable: object = ()) -> Handler:
    """Validate a registration and build its :class:`Handler`.

    Raises:
        InvalidSpecError: the key is not a valid task or queue name, ``fn`` is not callable,
            ``executor`` is unknown or does not fit the function, or a process handler cannot
            be pickled.
    """
    if not isinstance(key, str) or not _KEY_RE.match(key):
        raise InvalidSpecError(
            f"handler key {key!r} is not a valid task or queue name: use 1-200 characters "
            f"from A-Z a-z 0-9 . _ : @ / + -")
    if not callable(fn):
        raise InvalidSpecError(
            f"handler for {key!r} must be a function (sync or async), got {type(fn).__name__}")
    if executor not in EXECUTORS:
        raise InvalidSpecError(
            f"executor {executor!r} for handler {key!r} is unknown: use one of "
            f"{', '.join(map(repr, EXECUTORS))}")
    if not isinstance(context, bool):
        raise InvalidSpecError(f"context= for handler {key!r} must be True or False, "
                               f"got {context!r}")
    if isinstance(non_retryable, type):
        non_retryable = (non_retryable,)
    if (not isinstance(non_retryable, (tuple, list)) or not all(
            isinstance(t, type) and issubclass(t, BaseException) for t in non_retryable)):
        raise InvalidSpecError(f"non_retryable= for handler {key!r} must be exception types "
                               f"(a tuple such as (ValueError, KeyError)), got {non_retryable!r:.80}")
    is_async = _is_async(fn)
    if executor == "auto":
        mode = "async" if is_async else "thread"
    elif executor == "async":
        if not is_async:
            raise InvalidSpecError(
                f"handler {key!r} ({_name(fn)}) is not a coroutine function, so it cannot run "
                f"with executor='async'; declare it with 'async def' or use executor='thread'")
        mode = "async"
    else:
        if is_async:
            raise InvalidSpecError(
                f"handler {key!r} ({_name(fn)}) is a coroutine function, so it cannot run "
                f"with executor={executor!r}; use executor='async' (or 'auto')")
        mode = str(executor)
    if mode == "process":
        try:
            pickle.dumps(fn)
        except Exception as err:
            raise InvalidSpecError(
                f"handler {key!r} ({_name(fn)}) cannot run in a process pool: it cannot be "
                f"pickled ({type(err).__name__}: {err}); define it at the top level of an "
                f"importable module (not a lambda, closure or local function)") from err
        problem = unguarded_main()
        if problem is not None:
            raise InvalidSpecError(f"handler {key!r} ({_name(fn)}) cannot run in a process "
                                   f"pool: {problem}")
    return Handler(key, fn, mode, context, tuple(non_retryable))


def unguarded_main() -> str | None:
    """Why the process pool cannot start from this program, or None.

    Worker processes are spawned: each imports the program's main script again.  Without an
    ``if __name__ == "__main__":`` guard the script runs again in every worker (opening the
    kernel, starting a runtime), and every attempt ends in ``BrokenProcessPool``.
    """
    import sys
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if main is None or path is None or getattr(main, "__name__", "") != "__main__":
        return None         # an interactive session, -c, or a worker re-importing it
    try:
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read())
    except (OSError, SyntaxError, ValueError):
        return None
    for node in tree.body:
        test = node.test if isinstance(node, ast.If) else None
        if (isinstance(test, ast.Compare) and len(test.comparators) == 1
                and {_const(test.left), _const(test.comparators[0])} == {"__name__",
                                                                         "__main__"}):
            return None
    return (f"the program's main script {path} has no `if __name__ == \"__main__\":` guard; "
            "worker processes are spawned and import the script again, which would run it "
            "again in each of them. Move the code that opens the kernel and runs the "
            "runtime under that guard (handlers stay at the top level)")


def _const(node: Any) -> Any:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Constant):
        return node.value
    return None


def _name(fn: Callable[..., Any]) -> str:
    return getattr(fn, "__qualname__", None) or type(fn).__name__


def describe_exception(exc: BaseException) -> str:
    """Format a handler's exception for the log: ``Type: message`` and a short traceback.

    The traceback keeps the innermost :data:`TRACEBACK_FRAMES` frames; a process pool's
    remote traceback is used when there is one.  The whole is capped at
    :data:`MAX_ERROR_CHARS` characters.
    """
    cls = type(exc)
    mod = cls.__module__
    head = cls.__qualname__ if mod in ("builtins", "__main__") else f"{mod}.{cls.__qualname__}"
    text = f"{head}: {exc}" if str(exc) else head
    remote = exc.__cause__
    if remote is not None and type(remote).__name__ == "_RemoteTraceback":
        lines = str(remote).strip().splitlines()
        frames = [ln for ln in lines if ln.strip() and not ln.startswith('"""')]
        text += "\n" + "\n".join(frames[-2 * TRACEBACK_FRAMES - 1:-1])
    elif exc.__traceback__ is not None:
        tb = traceback.extract_tb(exc.__traceback__)
        kept = [f for f in tb if not f.filename.endswith(_PLUMBING)] or list(tb)
        summary = traceback.StackSummary.from_list(kept[-TRACEBACK_FRAMES:])
        text += "\nTraceback (innermost last):\n" + "".join(traceback.format_list(summary))
    if len(text) > MAX_ERROR_CHARS:
        text = text[:MAX_ERROR_CHARS - 15] + "\n[... truncated]"
    return text.rstrip()


def process_call(fn: Callable[[Any], Any], arg: Any) -> Any:
    """Run ``fn(arg)`` in a worker process and check its result can travel back."""
    result = fn(arg)
    try:
        pickle.dumps(result)
    except Exception as err:
        raise TypeError(
            f"the result of {_name(fn)} ({type(result).__name__}) cannot be sent back from "
            f"the worker process: it is not picklable ({err}); return JSON data "
            f"(dict, list, str, int, float, bool or None)") from None
    return result


async def resume_coroutine(coro: Any, yielded: Any) -> Any:
    """Drive a coroutine that was started eagerly and suspended on ``yielded``.

    The runtime starts an async handler by sending into its coroutine directly, so a handler
    that never suspends completes without an ``asyncio.Task`` (like Python 3.12's eager task
    factory).  When it does suspend, this wrapper becomes its task: it waits on what the
    coroutine waits on, then resumes it; a cancellation of the wrapper is thrown into it.
    """
    while True:
        try:
            if yielded is None:  # a bare ``yield`` (``asyncio.sleep(0)``)
                await asyncio.sleep(0)
            elif asyncio.isfuture(yielded):
                # Hand the future over as a Task step would: clear the flag the coroutine's
                # own ``await`` set, or awaiting it again is refused.
                yielded._asyncio_future_blocking = False
                await yielded
            else:
                yielded = coro.throw(RuntimeError(
                    f"handler coroutine yielded {yielded!r}, which asyncio cannot wait on"))
                continue
        except asyncio.CancelledError as cancel:
            try:
                yielded = coro.throw(cancel)
            except StopIteration as stop:
                return stop.value
            continue
        except BaseException:  # noqa: S110 - the coroutine reads the outcome itself below
            pass
        try:
            yielded = coro.send(None)
        except StopIteration as stop:
            return stop.value
