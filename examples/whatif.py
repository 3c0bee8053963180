"""What-if replay: record a render farm's history, then ask what a higher queue limit or
one more agent would have changed, without touching the recorded directory.
Run: python examples/whatif.py
"""

import tempfile

from eskernel import Kernel, ManualClock
from eskernel.errors import WhatIfChangeError
from eskernel.whatif import whatif

with tempfile.TemporaryDirectory() as d:
    # Recorded: 12 frames of 10 s each; the render queue lets 2 run at once.
    clock = ManualClock(start=0.0)
    with Kernel.open(d, clock=clock) as k:
        k.declare_queue("render", max_concurrent=2)
        k.register_agent("gpu-1", ["render"], capacity=2)
        k.register_agent("gpu-2", ["render"], capacity=2)
        for i in range(12):
            k.submit("render", {"frame": i}, id=f"frame-{i}")
        while k.stats().counts.get("COMPLETED", 0) < 12:
            leases = [lease for a in ("gpu-1", "gpu-2") if (lease := k.claim(a))]
            clock.advance(10)
            for lease in leases:
                k.complete(lease)

    same = whatif(d)
    print(f"recorded makespan {same.baseline['makespan_s']:.1f} s; unchanged model "
          f"{same.alternative['makespan_s']:.1f} s")
    for changes in (["queue.render.max_concurrent=4"],
                    ["queue.render.max_concurrent=0", "agent.gpu-3=capabilities:render,capacity:2"]):
        r = whatif(d, changes)
        b, a = r.baseline["groups"]["all"], r.alternative["groups"]["all"]
        print(f"{' + '.join(changes)}: makespan {r.alternative['makespan_s']:.1f} s, "
              f"e2e p95 {b['e2e_p95']:.1f} s -> {a['e2e_p95']:.1f} s")
    try:
        whatif(d, ["queue.render.rate_limit=20"])
    except WhatIfChangeError as err:
        print(f"refused: {str(err)[:60]}")
