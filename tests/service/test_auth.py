"""Tokens and roles: each role can do exactly what it may, and a refusal changes nothing."""

from __future__ import annotations

import pytest

from eskernel import AuthenticationError, InvalidSpecError, PermissionDeniedError
from eskernel.service import Client, Tokens
from eskernel.service import auth
from eskernel.service.run import ServerThread

PRODUCER = "producer-token-0000000000"
WORKER = "worker-token-111111111111"
ADMIN = "admin-token-2222222222222"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    d = tmp_path_factory.mktemp("auth")
    tf = d / "tokens"
    tf.write_text(f"# role tokens\n{PRODUCER} producer\n{WORKER} worker w1,pool-*\n"
                  f"{ADMIN} admin\n")
    import tempfile
    from pathlib import Path
    sock = Path(tempfile.mkdtemp(prefix="esk", dir="/tmp")) / "a"
    st = ServerThread(d / "log", unix=str(sock), tokens=Tokens.load(tf))
    with Client(st.address, token=ADMIN) as a:
        a.declare_queue("q")
        a.register_agent("w2", ["q"], 4)
    yield st
    st.stop()


def calls(c: Client, agent: str, lease=None):
    """Every operation, as (name, thunk)."""
    return {
        "submit": lambda: c.submit("q", {"x": 1}),
        "submit_many": lambda: c.submit_many([{"queue": "q"}]),
        "cancel": lambda: c.cancel("no-such-task"),
        "tasks": lambda: c.tasks(limit=1),
        "stats": lambda: c.stats(),
        "declare_queue": lambda: c.declare_queue("q2"),
        "pause_queue": lambda: c.pause_queue("q2"),
        "resume_queue": lambda: c.resume_queue("q2"),
        "register_agent": lambda: c.register_agent(agent, ["q"], 4),
        "agent_offline": lambda: c.agent_offline(agent),
        "agent_online": lambda: c.agent_online(agent),
        "claim": lambda: c.claim(agent),
        "snapshot": lambda: c.snapshot(),
        "requeue": lambda: c.requeue("nope"),
    }


def allowed(role: str, op: str) -> bool:
    if role == "admin":
        return True
    return op in (auth.PRODUCER_OPS if role == "producer" else auth.WORKER_OPS)


@pytest.mark.parametrize("role,token,agent", [("producer", PRODUCER, "w1"),
                                              ("worker", WORKER, "w1"),
                                              ("worker", WORKER, "pool-7"),
                                              ("admin", ADMIN, "w1")])
def test_each_role_can_do_exactly_what_it_may(served, role, token, agent):
    with Client(served.address, token=token, heartbeat=False) as c:
        for op, thunk in calls(c, agent).items():
            before = served.call(lambda: served.server.kernel.next_offset)
            try:
                thunk()
            except PermissionDeniedError:
                assert not allowed(role, op), f"{role} was refused {op}"
                assert served.call(lambda: served.server.kernel.next_offset) == before
            except Exception as err:        # allowed, and refused by the kernel itself
                assert allowed(role, op), f"{role} got {err!r} for {op}, not a refusal"
            else:
                assert allowed(role, op), f"{role} may not {op}, but it was done"


def test_a_worker_acts_only_for_its_agents(served):
    with Client(served.address, token=WORKER, heartbeat=False) as w, \
            Client(served.address, token=ADMIN, heartbeat=False) as a:
        a.submit("q", id="for-w2")
        lease = a.claim("w2")
        with pytest.raises(PermissionDeniedError):
            w.claim("w2")
        for verb in (w.complete, w.fail, w.heartbeat, w.release):
            with pytest.raises(PermissionDeniedError):
                verb(lease)
        with pytest.raises(PermissionDeniedError):
            w.register_agent("w2b", ["q"])
        a.complete(lease)


def test_bad_tokens_are_refused(served):
    for token in (None, "", "x" * 40, PRODUCER + "x", PRODUCER[:-1]):
        with pytest.raises(AuthenticationError):
            Client(served.address, token=token, reconnect=0)


def test_token_file_validation(tmp_path):
    bad = {"short": "abc admin\n", "role": f"{ADMIN} root\n", "worker": f"{WORKER} worker\n",
           "empty": "# nothing\n", "fields": f"{ADMIN} admin a b c\n"}
    for name, text in bad.items():
        f = tmp_path / name
        f.write_text(text)
        with pytest.raises(InvalidSpecError):
            Tokens.load(f)
    ok = tmp_path / "ok"
    ok.write_text(f"{WORKER} worker w1,pool-*\n")
    ident = Tokens.load(ok).identify(WORKER)
    assert ident.may_act_for("w1") and ident.may_act_for("pool-9")
    assert not ident.may_act_for("w2") and not ident.may_act_for("pool")
