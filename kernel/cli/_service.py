"""``eskernel serve`` and ``eskernel worker``: the network service's commands."""

from __future__ import annotations

import asyncio
import importlib
import signal
import sys
from typing import Any

import click

from ..errors import InvalidSpecError

__all__ = ["serve", "worker"]


@click.command()
@click.argument("directory", type=click.Path(file_okay=False))
@click.option("--listen", default="127.0.0.1:7450", show_default=True, metavar="HOST:PORT",
              help="TCP address to serve on ('' with --unix: no TCP).")
@click.option("--unix", default=None, metavar="PATH", help="Also serve on this Unix socket.")
@click.option("--durability", type=click.Choice(["fsync", "write", "buffer"]),
              default="write", show_default=True,
              help="What an acknowledgement means: fsync = on disk (group commit), write = "
                   "survives a killed server, buffer = in the server's memory.")
@click.option("--token-file", type=click.Path(dir_okay=False, exists=True), default=None,
              help="Lines 'TOKEN ROLE [AGENT,...]' (roles: producer, worker, admin); without "
                   "it every client is admin.")
@click.option("--tls-cert", type=click.Path(dir_okay=False, exists=True), default=None,
              help="PEM certificate chain: serve TLS (with --tls-key).")
@click.option("--tls-key", type=click.Path(dir_okay=False, exists=True), default=None,
              help="PEM private key of --tls-cert.")
@click.option("--http", default=None, metavar="HOST:PORT",
              help="Serve /metrics, /healthz, /readyz, the REST API and the web dashboard "
                   "(/ui/) here.")
@click.option("--max-connections", type=click.IntRange(1, 1_000_000), default=1024,
              show_default=True)
@click.option("--max-frame", type=click.IntRange(1024, 1 << 30), default=8 << 20,
              show_default=True, help="Largest frame accepted, bytes.")
@click.option("--idle-timeout", type=click.FloatRange(0.1, None), default=300.0,
              show_default=True, help="Close connections silent this long, seconds.")
def serve(directory: str, listen: str, unix: str | None, durability: str,
          token_file: str | None, tls_cert: str | None, tls_key: str | None, http: str | None,
          max_connections: int, max_frame: int, idle_timeout: float) -> None:
    """Own DIRECTORY and serve it to workers and producers (docs/protocol.md).

    Stops cleanly on SIGTERM or SIGINT: stops accepting, answers parked requests, flushes,
    snapshots and releases the directory.
    """
    from ..service.run import serve as run_serve
    from ..service.server import ServerConfig

    def ready(server: Any) -> None:
        for addr in server.addresses:
            where = addr if isinstance(addr, str) else f"{addr[0]}:{addr[1]}"
            click.echo(f"eskernel serving {directory} on {where} ({durability})", err=True)

    host = listen.rpartition(":")[0].strip("[]") if listen else ""
    if token_file is None and host not in ("", "127.0.0.1", "localhost", "::1"):
        click.echo(f"warning: serving on {listen} without --token-file: every client that "
                   "can connect is admin", err=True)
    config = ServerConfig(max_connections=max_connections, max_frame=max_frame,
                          idle_timeout=idle_timeout)
    run_serve(directory, listen=listen or None, unix=unix, durability=durability,
              token_file=token_file, tls_cert=tls_cert, tls_key=tls_key, http=http,
              config=config, on_ready=ready)


def _target(spec: str) -> Any:
    mod, sep, attr = spec.partition(":")
    if not sep or not mod or not attr:
        raise InvalidSpecError(f"expected MODULE:FUNCTION (a function that registers "
                               f"handlers on the runtime it is given), got {spec!r}")
    if "" not in sys.path:
        sys.path.insert(0, "")
    obj: Any = importlib.import_module(mod)
    for part in attr.split("."):
        obj = getattr(obj, part)
    if not callable(obj):
        raise InvalidSpecError(f"{spec} is not callable")
    return obj


@click.command()
@click.argument("setup", metavar="MODULE:FUNCTION")
@click.option("--connect", "address", required=True, metavar="HOST:PORT|unix:PATH")
@click.option("--agent", "agents", multiple=True, required=True,
              help="Agent id to work as (repeatable).")
@click.option("--queue", "queues", multiple=True,
              help="Register the agent(s) for these queues, declaring the queues that do "
                   "not exist yet (else the agents must be registered already).")
@click.option("--capacity", type=click.IntRange(1, 1_000_000), default=None,
              help="Concurrent tasks per agent when registering it.")
@click.option("--token", envvar="ESKERNEL_TOKEN", default=None,
              help="Credential (or ESKERNEL_TOKEN).")
@click.option("--grace", type=click.FloatRange(0, None), default=30.0, show_default=True,
              help="Seconds in-flight tasks get to finish after SIGTERM.")
@click.option("--reconnect", type=click.FloatRange(0, None), default=30.0, show_default=True,
              help="Seconds to keep reconnecting to a lost server before giving up.")
def worker(setup: str, address: str, agents: tuple[str, ...], queues: tuple[str, ...],
           capacity: int | None, token: str | None, grace: float, reconnect: float) -> None:
    """Run handlers for a served kernel: MODULE:FUNCTION is called with a Runtime and
    registers its handlers (``rt.register(...)``).  SIGTERM drains: no new claims, in-flight
    tasks finish within --grace, the rest are released."""
    from ..runtime import Runtime
    from ..service.client import Client

    fn = _target(setup)
    # One agent: while it holds nothing, its claims park on the server instead of polling.
    client = Client(address, token=token, agents=list(agents), reconnect=reconnect,
                    idle_wait=0.25 if len(agents) == 1 else 0.0)
    if queues:      # declare the queues that do not exist yet (an admin token may)
        known = {q.name for q in client.stats().queues}
        for q in queues:
            if q not in known:
                client.declare_queue(q)
    specs: list[Any] = ([(a, list(queues), capacity or 1) for a in agents] if queues
                        else list(agents))
    rt = Runtime(client, agents=specs, poll_interval=0.005)
    fn(rt)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, rt.stop, grace)
        await rt.run()

    try:
        asyncio.run(main())
    finally:
        rt.close()
        client.close()
    click.echo(f"worker stopped: {rt.stats()}", err=True)
