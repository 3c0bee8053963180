"""A worker process for the kill -9 test: claims in batches, completes them, and appends
each acknowledged completion (``task lease``) to a file, flushed before the next claim.

Usage: python -m tests.service.crash_worker ADDRESS AGENT OUTFILE STOPFILE
"""

from __future__ import annotations

import os
import sys
import time

from eskernel.errors import EskernelError, StaleLeaseError
from eskernel.service import Client


def complete(c: Client, lease) -> bool:
    """Complete one lease, retrying until it is done or stale."""
    while True:
        try:
            c.complete(lease, lease.task_id)
            return True
        except StaleLeaseError:
            return False        # it expired while the server was down: run elsewhere
        except EskernelError as err:
            print(f"complete {lease.task_id}: {err}", file=sys.stderr)


def main(address: str, agent: str, outfile: str, stopfile: str) -> None:
    c = Client(address, agents=[agent], reconnect=120, client_id=f"crash-{agent}")
    with open(outfile, "a", buffering=1) as out:
        while not os.path.exists(stopfile):
            try:
                leases = c.claim_many(agent, 16, wait=0.2)
            except EskernelError as err:
                print(f"{agent}: claim: {err}", file=sys.stderr)
                time.sleep(0.05)    # e.g. at capacity with leases whose reply was lost
                continue
            if not leases:
                continue
            try:
                c.complete_many(leases, [lease.task_id for lease in leases])
                done = leases
            except EskernelError as err:    # one by one: a stale one fails alone
                print(f"{agent}: complete_many: {err}", file=sys.stderr)
                done = [lease for lease in leases if complete(c, lease)]
            out.write("".join(f"{lease.task_id} {lease.lease_id}\n" for lease in done))
    c.close()


if __name__ == "__main__":
    main(*sys.argv[1:5])
