"""Backend selection, the certificate, Retry tokens and the bulk pacer (no sockets)."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from hnet import limits
from hnet.core.quic import backend as qb
from hnet.core.quic.connection import BulkPacer
from hnet.core.quic.retry import RetryTokens
from hnet.core.quic.streams import DIR_I2R, DIR_R2I, DirectionKeys, derive_stream_key


def test_backend_selection(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv(qb.ENV_VAR, raising=False)
    assert qb.resolve_name() == qb.DEFAULT_BACKEND
    monkeypatch.setenv(qb.ENV_VAR, "aioquic")
    assert qb.resolve_name() == "aioquic"
    assert qb.get_backend().name == "aioquic"
    assert qb.resolve_name("qh3") == "qh3"  # the argument wins over the environment
    monkeypatch.setenv(qb.ENV_VAR, "quiche")
    with pytest.raises(qb.BackendError):
        qb.get_backend()
    with pytest.raises(qb.BackendError):
        qb.get_backend("nope")


@pytest.mark.parametrize("name", qb.BACKENDS)
def test_connections_are_configured_alike(name: str):
    be = qb.get_backend(name)
    assert be is qb.get_backend(name)  # cached
    c = be.client()
    assert c.backend == name
    assert c.next_bidi_stream_id() == 0
    cfg = c._c.configuration if name == "qh3" else c._c._configuration
    assert cfg.alpn_protocols == [qb.ALPN]
    assert cfg.idle_timeout == limits.QUIC_IDLE_TIMEOUT
    assert cfg.max_datagram_size == limits.QUIC_MAX_DATAGRAM_SIZE
    assert cfg.session_ticket is None  # no resumption, hence no 0-RTT
    assert be.parse_header(b"") is None
    assert be.parse_header(b"\x40" + bytes(3)) is None  # short header, too short for a CID


def test_certificate_is_self_signed_and_per_process():
    cert_pem, key_pem = qb.certificate()
    assert qb.certificate() == (cert_pem, key_pem)
    cert = x509.load_pem_x509_certificate(cert_pem)
    assert cert.issuer == cert.subject
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)


ADDR = ("127.0.0.1", 4433)


def test_retry_token_round_trip():
    t = RetryTokens()
    token = t.create(ADDR, b"odcid123", b"rscid456", now=100.0)
    assert t.validate(token, ADDR, b"rscid456", now=101.0) == (b"odcid123", b"rscid456")


def test_retry_token_rejections():
    t = RetryTokens(lifetime=10)
    token = t.create(ADDR, b"odcid123", b"rscid456", now=100.0)
    assert t.validate(token, ("127.0.0.1", 4434), b"rscid456", 101.0) is None  # other port
    assert t.validate(token, ("127.0.0.2", 4433), b"rscid456", 101.0) is None  # other host
    assert t.validate(token, ADDR, b"otherdcid", 101.0) is None  # not our Retry's CID
    assert t.validate(token, ADDR, b"rscid456", 111.0) is None  # expired
    assert t.validate(token, ADDR, b"rscid456", 99.0) is None  # from the future
    bad = bytearray(token)
    bad[-1] ^= 1
    assert t.validate(bytes(bad), ADDR, b"rscid456", 101.0) is None  # tampered
    assert t.validate(b"", ADDR, b"rscid456", 101.0) is None
    assert RetryTokens().validate(token, ADDR, b"rscid456", 101.0) is None  # other listener


def test_direction_keys_match_the_documented_derivation():
    h, k = bytes(range(32)), bytes(range(1, 33))
    for direction in (DIR_I2R, DIR_R2I):
        prk = hmac.new(h, k, hashlib.blake2s).digest()
        keys = DirectionKeys(k, h, direction)
        for sid in (0, 1, 4, 5, 2**40, 2**62 - 1):
            assert keys.cipher(sid).export_key() == derive_stream_key(prk, direction, sid)


def test_bulk_pacer_grows_then_settles():
    p = BulkPacer()
    assert p.window == limits.QUIC_BULK_MIN_WINDOW and p.startup
    rtt = 0.05  # a 50 ms path able to carry 10 MB/s: BDP 500 kB
    now, delivered = 0.0, 0
    p.sample(now, delivered, rtt)
    windows = []
    for _ in range(30):
        rate = min(p.window / rtt, 10e6)  # what the window lets through, up to the path
        now += rtt
        delivered += int(rate * rtt)
        p.sample(now, delivered, rtt)
        windows.append(p.window)
    assert windows[1] >= 1.9 * windows[0]  # startup: doubling per round trip
    assert not p.startup
    assert windows[-1] == pytest.approx(BulkPacer.GAIN * 10e6 * rtt, rel=1e-3)  # 1.25 x BDP


def test_bulk_pacer_is_clamped_and_ignores_idle_time():
    p = BulkPacer()
    p.sample(0.0, 0, None)  # no RTT yet: nothing to go by
    assert p.window == limits.QUIC_BULK_MIN_WINDOW
    p.sample(0.0, 0, 0.001)
    p.sample(1.0, 10**12, 0.001)  # absurd rate
    assert p.window == limits.QUIC_BULK_MAX_WINDOW
    p.idle()
    p.sample(100.0, 10**12, 0.001)  # a restart point, not a 99-second sample
    p.sample(100.01, 10**12 + 1000, 0.001)
    assert p.window == limits.QUIC_BULK_MAX_WINDOW  # the max filter keeps the known rate
