"""The kernel as a network service: ``eskernel serve`` owns a directory and serves it;
:class:`Client` speaks the wire protocol (``docs/protocol.md``) with the Kernel's API.

>>> from eskernel.service import protocol
>>> protocol.decode(protocol.encode([1, "ping", {}]))
[1, 'ping', {}]
"""

from .client import AsyncClient as AsyncClient, Client as Client, RemoteLease as RemoteLease
from .server import Server as Server, ServerConfig as ServerConfig
from .auth import Tokens as Tokens

__all__ = ["Client", "AsyncClient", "RemoteLease", "Server", "ServerConfig", "Tokens"]
