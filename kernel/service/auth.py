"""Tokens and roles of the network service.

A token file holds one token a line: ``TOKEN ROLE [AGENT,AGENT,...]``; ``#`` starts a
comment.  Roles:

* ``producer``: submit, cancel and every query;
* ``worker``: queries, plus claim / heartbeat / complete / fail / release and registering
  or (un)marking online only the agent ids listed on its line (an id ending in ``*`` is a
  prefix);
* ``admin``: everything.

Invariants: a token is compared with :func:`hmac.compare_digest` against every entry (the
time taken does not depend on which entry matches); a session's role and agent list are
fixed at its handshake.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from pathlib import Path

from ..errors import InvalidSpecError, PermissionDeniedError

__all__ = ["Identity", "Tokens", "ROLES", "PRODUCER_OPS", "WORKER_OPS", "QUERY_OPS",
           "ADMIN", "check"]

ROLES = ("producer", "worker", "admin")
QUERY_OPS = frozenset({"ping", "task", "tasks", "stats", "history", "explain", "lease_task",
                       "next_offset", "wait", "subscribe", "session_heartbeat"})
PRODUCER_OPS = QUERY_OPS | {"submit", "submit_many", "cancel"}
#: Worker operations; each names an agent (or a lease of one) that must be the worker's own.
WORKER_OPS = QUERY_OPS | {"claim", "claim_many", "heartbeat", "complete", "complete_many",
                          "complete_and_claim",
                          "fail", "release", "register_agent", "agent_online",
                          "agent_offline"}


@dataclass(frozen=True)
class Identity:
    """Who a session is: a role and, for workers, the agent ids (or ``prefix*``) it may act
    for."""

    role: str
    agents: tuple[str, ...] = ()

    def may_act_for(self, agent_id: object) -> bool:
        if self.role == "admin":
            return True
        if self.role != "worker" or type(agent_id) is not str:
            return False
        for a in self.agents:
            if a == agent_id or (a.endswith("*") and agent_id.startswith(a[:-1])):
                return True
        return False


ADMIN = Identity("admin")


class Tokens:
    """The tokens a server accepts (``Tokens.load(path)``), or none (``Tokens.open()``:
    every session is admin; for a server on loopback or a private socket only)."""

    def __init__(self, entries: list[tuple[bytes, Identity]] | None) -> None:
        self._entries = entries

    @classmethod
    def open(cls) -> "Tokens":
        return cls(None)

    @classmethod
    def load(cls, path: str | Path) -> "Tokens":
        """Parse a token file.

        Raises:
            InvalidSpecError: a line that is not ``TOKEN ROLE [AGENTS]``, an unknown role,
                a token shorter than 16 characters, or a file with no token.
        """
        entries: list[tuple[bytes, Identity]] = []
        text = Path(path).read_text(encoding="utf-8")
        for n, line in enumerate(text.splitlines(), 1):
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            parts = line.split()
            if len(parts) not in (2, 3) or parts[1] not in ROLES:
                raise InvalidSpecError(
                    f"{path}:{n}: expected 'TOKEN ROLE [AGENT,...]' with ROLE one of "
                    f"{list(ROLES)}, got {line[:40]!r}...")
            if len(parts[0]) < 16:
                raise InvalidSpecError(f"{path}:{n}: tokens must be at least 16 characters; "
                                       "generate one with `python -c 'import secrets; "
                                       "print(secrets.token_urlsafe(24))'`")
            agents = tuple(a for a in parts[2].split(",") if a) if len(parts) == 3 else ()
            if parts[1] == "worker" and not agents:
                raise InvalidSpecError(f"{path}:{n}: a worker token must list the agent ids "
                                       "it may act for (AGENT,AGENT or a prefix*)")
            entries.append((parts[0].encode(), Identity(parts[1], agents)))
        if not entries:
            raise InvalidSpecError(f"{path} holds no token; add lines 'TOKEN ROLE [AGENTS]'")
        return cls(entries)

    @property
    def required(self) -> bool:
        return self._entries is not None

    def identify(self, token: object) -> Identity | None:
        """The identity of ``token``, or None when it is not accepted."""
        if self._entries is None:
            return ADMIN
        if type(token) is not str:
            return None
        given = token.encode()
        found = None
        for secret, ident in self._entries:
            if hmac.compare_digest(secret, given) and found is None:
                found = ident
        return found


def check(ident: Identity, op: str) -> None:
    """Raise :class:`PermissionDeniedError` unless ``ident``'s role may call ``op`` at all
    (the agent ids a worker's call names are checked where they are known)."""
    if ident.role == "admin":
        return
    allowed = PRODUCER_OPS if ident.role == "producer" else WORKER_OPS
    if op not in allowed:
        raise PermissionDeniedError(
            f"a {ident.role} session may not call {op!r}; use a token with a role that may "
            f"(admin may call everything)")
