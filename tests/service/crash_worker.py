"""A worker process for the kill -9 test: claims in batches, completes them, and appends
each acknowledged completion (``task lease``) to a file, flushed before the next claim.

Usage: python -m tests.service.crash_worker ADDRESS AGENT OUTFILE STOPFILE
"""

from __future__ import annotations

import os
import sys

from kernel.errors import EskernelError, StaleLeaseError
from kernel.service import Client


def main(address: str, agent: str, outfile: str, stopfile: str) -> None:
    c = Client(address, agents=[agent], reconnect=120, client_id=f"crash-{agent}")
    with open(outfile, "a", buffering=1) as out:
        while not os.path.exists(stopfile):
            try:
                leases = c.claim_many(agent, 16, wait=0.2)
                if not leases:
                    continue
                c.complete_many(leases, [lease.task_id for lease in leases])
            except StaleLeaseError:
                continue        # a lease that expired while the server was down
            except EskernelError as err:
                print(f"{agent}: {err}", file=sys.stderr)
                continue
            out.write("".join(f"{lease.task_id} {lease.lease_id}\n" for lease in leases))
    c.close()


if __name__ == "__main__":
    main(*sys.argv[1:5])
