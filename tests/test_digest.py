"""The digest is canonical: equal state gives equal digests however it was built."""

from eskernel import Kernel, ManualClock


def test_fan_out_batch_live_digest_equals_replay(tmp_path):
    # Regression: ids shared by several tasks' depends_on are one object live but distinct
    # objects after decoding; the digest must not depend on object identity.
    c = ManualClock()
    k = Kernel.open(tmp_path, clock=c, snapshot_every=0)
    k.declare_queue("q", max_concurrent=2)
    k.register_agent("a", ["q"], capacity=2)
    k.submit_many([dict(id="a1", queue="q"), dict(id="b1", queue="q", depends_on=["a1"]),
                   dict(id="c1", queue="q", depends_on=["a1"])])
    lease = k.claim("a")
    c.advance(1)
    k.complete(lease)
    k.claim("a")
    k.claim("a")
    live = k.digest()
    k.close()
    assert Kernel.replay(tmp_path).digest() == live
    reopened = Kernel.open(tmp_path, clock=c)
    assert reopened.digest() == live
    reopened.close()


def test_digest_changes_with_state():
    k = Kernel.in_memory(clock=ManualClock())
    k.declare_queue("q")
    before = k.digest()
    k.submit("q", {"x": 1})
    assert k.digest() != before
