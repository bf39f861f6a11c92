"""hnet.core.wire.build: the hot path's constructors make the same values as the classes."""

from __future__ import annotations

import dataclasses

import pytest

from hnet.core.wire import Address, KernelMessage, LazyLoadBlob, Request, build
from hnet.core.wire.codec import decode_kernel_message, encode_kernel_message

A = Address.parse("a.os@p:pkg:pub.os")
B = Address.net("b.os")


@pytest.mark.parametrize("blob", [None, LazyLoadBlob("text/plain", b"blob")])
@pytest.mark.parametrize("rsvp", [None, A])
def test_same_value_as_the_classes(rsvp: Address | None, blob: LazyLoadBlob | None) -> None:
    by_class = KernelMessage(7, A, B, rsvp, Request(True, 5, b"body", '{"m":1}', ()), blob)
    built = build.kernel_message(
        7, A, B, rsvp, build.request(True, 5, b"body", '{"m":1}', ()), blob
    )
    assert built == by_class and hash(built) == hash(by_class) and repr(built) == repr(by_class)
    assert type(built) is KernelMessage and type(built.message) is Request
    assert encode_kernel_message(built) == encode_kernel_message(by_class)
    assert decode_kernel_message(encode_kernel_message(built)) == by_class


def test_built_values_stay_frozen() -> None:
    request = build.request(False, None, b"", None, ())
    km = build.kernel_message(1, A, B, None, request, None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        km.id = 2  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        request.body = b"x"  # type: ignore[misc]
