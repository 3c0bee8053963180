"""eskernel: an embeddable, event-sourced task orchestration kernel.

>>> from eskernel import Kernel, ManualClock, Priority
>>> k = Kernel.in_memory(clock=ManualClock())
>>> k.declare_queue("q")
>>> k.register_agent("w", ["q"])
>>> _ = k.submit("q", id="low", priority=Priority.LOW)
>>> _ = k.submit("q", id="high", priority=Priority.HIGH)
>>> k.claim("w").task_id
'high'
"""

from ._version import __version__ as __version__
from ._clock import Clock as Clock, ManualClock as ManualClock, SystemClock as SystemClock
from ._core import Lease as Lease
from ._kernel import Kernel as Kernel
from .errors import *  # noqa: F403  (the error hierarchy is part of the public surface)
from .errors import __all__ as _errors_all
from .runtime import (EventStream as EventStream, Runtime as Runtime,
                      TaskContext as TaskContext, TaskEvent as TaskEvent)
from .models import (AgentStats as AgentStats, BackoffPolicy as BackoffPolicy,
                     Priority as Priority, QueueStats as QueueStats, Stats as Stats,
                     TaskSpec as TaskSpec, TaskView as TaskView)

__all__ = ["Kernel", "Lease", "Priority", "BackoffPolicy", "TaskSpec", "TaskView", "Stats",
           "QueueStats", "AgentStats", "Clock", "SystemClock", "ManualClock", "Runtime",
           "TaskContext", "TaskEvent", "EventStream", *_errors_all]

for _name in ("Kernel", "Priority", "BackoffPolicy", "TaskSpec", "TaskView", "Stats",
              "QueueStats", "AgentStats", "Clock", "SystemClock", "ManualClock", "Runtime",
              "TaskContext", "TaskEvent", "EventStream", *_errors_all):
    if globals()[_name].__module__.startswith("eskernel.") and not globals()[
            _name].__module__.startswith("eskernel.eventlog"):   # eventlog's errors keep theirs
        globals()[_name].__module__ = "eskernel"
del _name
