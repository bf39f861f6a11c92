"""The one exception the wire codec raises."""

from __future__ import annotations


class CodecError(ValueError):
    """Bytes that are not a valid encoding of the expected type, or a value that cannot be encoded.

    Every decoder raises only this, whatever the input; address and process-id parsing raise it
    too. It subclasses ``ValueError`` so callers that already treat bad input as a ``ValueError``
    keep working.
    """
