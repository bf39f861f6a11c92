"""Sans-I/O parts of the kernel: the state machine, the restart backoff, the message rules,
the inbox, capability signing (a byte-exact vector), the output ring."""

from __future__ import annotations

import threading

import msgpack
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hnet import (
    Address,
    Capability,
    KernelMessage,
    LazyLoadBlob,
    ResponseMessage,
    SendError,
    SendErrorKind,
)
from kernel import caps
from kernel.api import ProcessStopped, ReceivedError
from kernel.backoff import RestartBackoff
from kernel.messages import MessageState
from kernel.output import OutputRing
from kernel.queue import Inbox, WrappedError
from kernel.states import TRANSITIONS, Event, InvalidTransition, State, transition
from tests.test_kernel_support import addr, req, resp

A = addr("our.os@a:pkg:pub.os")
B = addr("our.os@b:pkg:pub.os")
C = addr("our.os@c:pkg:pub.os")


# --- state machine --------------------------------------------------------------------------


def test_state_machine_table() -> None:
    assert transition(State.STARTING, Event.STARTED) is State.RUNNING
    assert transition(State.RUNNING, Event.EXITED) is State.EXITED
    assert transition(State.EXITED, Event.RESTART_SCHEDULED) is State.RESTARTING
    assert transition(State.RESTARTING, Event.RESTART) is State.STARTING
    for s in State:
        if s is not State.KILLED:
            assert transition(s, Event.KILL) is State.KILLED
    with pytest.raises(InvalidTransition):
        transition(State.KILLED, Event.STARTED)
    with pytest.raises(InvalidTransition):
        transition(State.RUNNING, Event.RESTART)
    assert not any(s is State.KILLED for s, _ in TRANSITIONS)  # KILLED is final


# --- backoff ----------------------------------------------------------------------------------


def test_restart_backoff_follows_the_reference() -> None:
    b = RestartBackoff(unit=1.0)
    assert b.delay(0.0) == 0.0  # first exit: at once; next soonest 1
    assert b.delay(0.0) == 1.0  # too soon: wait till 1; next soonest 1 + 2**0 = 2
    assert b.delay(1.0) == 1.0  # wait till 2; next 2 + 2**1 = 4
    assert b.delay(2.0) == 2.0  # wait till 4; next 4 + 2**2 = 8
    assert b.delay(4.0) == 4.0
    assert b.consecutive == 4
    assert b.delay(100.0) == 0.0  # ran long enough: at once, count reset
    assert b.consecutive == 0


# --- message rules --------------------------------------------------------------------------


def incoming(
    source: Address,
    target: Address,
    rid: int,
    message: object,
    rsvp: Address | None = None,
    blob: LazyLoadBlob | None = None,
) -> KernelMessage:
    return KernelMessage(
        id=rid, source=source, target=target, rsvp=rsvp, message=message, lazy_load_blob=blob
    )  # type: ignore[arg-type]


def test_new_request_ids_are_random_u64_and_unique() -> None:
    ids = iter([5, 5, 7])
    ms = MessageState(A, rng=lambda: next(ids))
    first = ms.new_request(B, req(b"x", expects=5), b"ctx", None)
    second = ms.new_request(B, req(b"y", expects=5), None, None)
    assert first.km.id == 5 and second.km.id == 7  # 5 is taken by an outstanding context
    ms = MessageState(A)
    got = {ms.new_request(B, req(), None, None).km.id for _ in range(50)}
    assert len(got) == 50 and all(0 <= i < 2**64 for i in got)


def test_rsvp_rules() -> None:
    ms = MessageState(A)
    # expects a response: rsvp is us
    assert ms.new_request(B, req(expects=5), None, None).km.rsvp == A
    # neither: none
    assert ms.new_request(B, req(), None, None).km.rsvp is None
    # inherit without a prompting message: none, and a fresh id
    assert ms.new_request(B, req(inherit=True), None, None).km.rsvp is None
    # inherit with a prompting message: its rsvp and its id
    prompt = incoming(C, A, 42, req(expects=5), rsvp=C)
    ms.deliver(prompt)
    fwd = ms.new_request(B, req(inherit=True), None, None).km
    assert (fwd.rsvp, fwd.id) == (C, 42)
    # expects_response wins over inherit
    assert ms.new_request(B, req(inherit=True, expects=5), None, None).km.rsvp == A


def test_inherit_takes_the_last_blob_unless_one_is_given() -> None:
    ms = MessageState(A)
    blob = LazyLoadBlob("text/plain", b"payload")
    r = ms.deliver(incoming(C, A, 1, req(expects=5), rsvp=C, blob=blob))
    assert isinstance(r, tuple)
    assert ms.last_message_blobbed
    assert ms.new_request(B, req(inherit=True), None, None).km.lazy_load_blob == blob
    other = LazyLoadBlob(None, b"mine")
    assert ms.new_request(B, req(inherit=True), None, other).km.lazy_load_blob == other
    assert ms.new_request(B, req(), None, None).km.lazy_load_blob is None
    # a message without a blob: has_blob false, last_blob still the old one
    ms.deliver(incoming(C, A, 2, req()))
    assert not ms.last_message_blobbed and ms.last_blob == blob


def test_response_goes_to_rsvp_or_source_with_the_prompting_id() -> None:
    ms = MessageState(A)
    assert ms.new_response(resp(b"r"), None) is None  # nobody to answer
    ms.deliver(incoming(B, A, 9, req(expects=5), rsvp=C))
    km = ms.new_response(resp(b"r"), None)
    assert km is not None and (km.id, km.target, km.rsvp) == (9, C, None)
    ms.deliver(incoming(B, A, 10, req(expects=5)))
    km = ms.new_response(resp(b"r"), None)
    assert km is not None and (km.id, km.target) == (10, B)
    # a request that awaits no reply does not become the prompting message
    ms.deliver(incoming(C, A, 11, req()))
    assert ms.prompting is not None and ms.prompting.id == 10


def test_contexts_gate_responses_and_errors() -> None:
    ms = MessageState(A)
    sent = ms.new_request(B, req(expects=5), b"ctx", None)
    rid = sent.km.id
    response = incoming(B, A, rid, ResponseMessage(resp(b"ok"), b"their-context"))
    stranger = incoming(B, A, rid + 1, ResponseMessage(resp(b"no"), None))
    assert not ms.admit(stranger)  # no context for that id
    assert ms.admit(response)
    got = ms.deliver(response)
    assert isinstance(got, tuple) and isinstance(got[1], ResponseMessage)
    assert got[1].context == b"ctx"  # ours, not the sender's
    assert not ms.admit(response)  # context used up: a second response is not delivered
    # a request sent without expects_response leaves no context: its response never arrives
    fire = ms.new_request(B, req(), b"ctx", None)
    assert not ms.admit(incoming(B, A, fire.km.id, ResponseMessage(resp(), None)))


def test_timer_error_counts_only_for_its_own_context() -> None:
    ms = MessageState(A)
    sent = ms.new_request(B, req(b"q", expects=1), b"c", None)
    err = WrappedError(sent.km.id, ms.timeout_error(sent.km), sent.token)
    stale = WrappedError(sent.km.id, ms.timeout_error(sent.km), sent.token + 100)
    assert not ms.admit(stale)
    assert ms.admit(err)
    got = ms.deliver(err)
    assert isinstance(got, ReceivedError)
    assert got.context == b"c" and got.error.kind is SendErrorKind.TIMEOUT
    assert got.error.target == B and got.error.message == sent.km.message


def test_response_restores_the_prompting_message_it_was_sent_under() -> None:
    ms = MessageState(A)
    first = incoming(C, A, 1, req(expects=5), rsvp=C)
    ms.deliver(first)
    sent = ms.new_request(B, req(expects=5), None, None)  # sent while answering `first`
    ms.deliver(incoming(B, A, 2, req(expects=5)))  # another request meanwhile
    ms.deliver(incoming(B, A, sent.km.id, ResponseMessage(resp(), None)))
    assert ms.prompting is not None and ms.prompting.id == 1


def test_guest_never_sees_signatures() -> None:
    ms = MessageState(A)
    cap = Capability(B, '"x"')
    got = ms.deliver(incoming(B, A, 1, req(caps=((cap, b"sig"),))))
    assert isinstance(got, tuple)
    assert got[1].capabilities == ((cap, b""),)  # type: ignore[union-attr]


# --- inbox ----------------------------------------------------------------------------------


def test_inbox_bounds_messages_and_bytes_and_wakes_on_close() -> None:
    box = Inbox(max_messages=2, max_bytes=10_000)
    km = incoming(B, A, 1, req(b"x"))
    assert box.put(km) and box.put(km)
    assert not box.put(km) and box.refused == 1  # full in messages
    err = WrappedError(1, SendError(SendErrorKind.TIMEOUT, B, req(), None))
    assert box.put_error(err)  # errors are always taken
    assert box.get() == km
    big = Inbox(max_messages=10, max_bytes=1000)
    assert not big.put(incoming(B, A, 1, req(b"x" * 1000)))  # full in bytes
    waiter_got: list[BaseException] = []

    def wait() -> None:
        try:
            big.get()
        except ProcessStopped as e:
            waiter_got.append(e)

    t = threading.Thread(target=wait)
    t.start()
    big.close()
    t.join(5)
    assert not t.is_alive() and waiter_got


# --- capabilities -----------------------------------------------------------------------------

SEED = bytes(range(32))


def test_capability_signature_vector() -> None:
    """The signed bytes, built by hand from the format: rmp_serde writes the capability as a
    2-element array (0x92) of two strings, each with its smallest header (fixstr up to 31
    bytes, str8 0xd9 from 32)."""
    key = Ed25519PrivateKey.from_private_bytes(SEED)
    cap = caps.network("alice.os")
    issuer = b"alice.os@kernel:distro:sys"  # 26 bytes: fixstr 0xa0 | 26
    params = b'"network"'  # 9 bytes: fixstr 0xa9
    expected = bytes([0x92, 0xA0 | len(issuer)]) + issuer + bytes([0xA0 | len(params)]) + params
    assert caps.signing_bytes(cap) == expected
    sig = caps.sign(key, cap)
    key.public_key().verify(sig, expected)  # raises if not
    assert caps.verify(key.public_key(), cap, sig)
    assert sig.hex() == SIGNATURE_HEX

    long_cap = caps.messaging(addr("a-rather-long-node-name.os@chat:chat:template.os"))
    long_issuer = str(long_cap.issuer).encode()
    assert len(long_issuer) >= 32
    expected = bytes([0x92, 0xD9, len(long_issuer)]) + long_issuer + bytes([0xAB]) + b'"messaging"'
    assert caps.signing_bytes(long_cap) == expected
    assert caps.signing_bytes(long_cap) == msgpack.packb(
        [str(long_cap.issuer), long_cap.params], use_bin_type=True
    )
    assert caps.verify(key.public_key(), long_cap, caps.sign(key, long_cap))
    assert not caps.verify(key.public_key(), long_cap, sig)
    assert not caps.verify(key.public_key(), cap, b"short")


#: Ed25519 over the vector's bytes with the key of seed 00 01 .. 1f (deterministic)
SIGNATURE_HEX = (
    "314a7a287ccb6423d0ae9c0d6a1e2a83b564dcd00c5111ab0e7e666aa24e0857"
    "03edb75b2e10283455a88156ca64514fc4b0fa8f425a877586b4920a22884f0e"
)


def test_incoming_caps_claiming_our_node_are_verified() -> None:
    key = Ed25519PrivateKey.from_private_bytes(SEED)
    ours = caps.messaging(addr("alice.os@chat:chat:x.os"))
    forged = caps.messaging(addr("alice.os@admin:admin:x.os"))
    foreign = caps.messaging(addr("bob.os@chat:chat:x.os"))
    got = caps.verify_incoming(
        [(ours, caps.sign(key, ours)), (forged, b"\x00" * 64), (foreign, b"whatever")],
        "alice.os",
        key.public_key(),
    )
    assert got == ((ours, caps.sign(key, ours)), (foreign, b"whatever"))


def test_outgoing_caps_are_filtered_to_held_or_self_issued() -> None:
    store = caps.CapabilityStore("alice.os", Ed25519PrivateKey.from_private_bytes(SEED))
    me = addr("alice.os@a:pkg:x.os")
    held = caps.messaging(addr("alice.os@b:pkg:x.os"))
    store.add(me.process, [held])
    mine = Capability(me, '"read"')
    not_mine = Capability(addr("bob.os@a:pkg:x.os"), '"read"')  # same process, other node
    stranger = caps.messaging(addr("alice.os@c:pkg:x.os"))
    got = store.filter_outgoing(me.process, [held, mine, not_mine, stranger])
    assert [c for c, _ in got] == [held, mine]
    assert all(caps.verify(store.public_key, c, s) for c, s in got)
    store.revoke_issued_by(addr("alice.os@b:pkg:x.os").process)
    assert not store.has(me.process, held)


def test_output_ring_keeps_the_newest_bytes() -> None:
    ring = OutputRing(max_bytes=10)
    ring.write("abcdef")
    ring.write("ghij")
    ring.write("kl")
    assert ring.contents() == "ghijkl"
    ring.write("x" * 25)
    assert ring.contents() == "x" * 10
