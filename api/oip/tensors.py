"""Open Inference Protocol tensors on the wire: JSON data, and the binary tensor data extension.

With the extension (what `tritonclient` sends by default) the body is the JSON header, whose length is in the
`Inference-Header-Content-Length` header, followed by each binary input's bytes in order; a BYTES tensor's
elements are each prefixed with their length as a 4-byte little-endian integer. Responses use the same layout
for the outputs the client asked to get as binary.
"""

from __future__ import annotations

import math
import struct
import sys
from array import array
from typing import Any

import falcon
import msgspec

from api.common.audio import read_limited
from api.oip.bodies import InferRequest, RequestInput
from wire.errors import ErrorCode, SupervisorError, shown

HEADER_LENGTH = "Inference-Header-Content-Length"
_decode_request = msgspec.json.Decoder(InferRequest).decode


def invalid(message: str, details: str) -> SupervisorError:
    return SupervisorError(ErrorCode.INVALID_REQUEST, message, details)


class Tensor(msgspec.Struct, frozen=True):
    """One input: its declared name, type and shape, and its elements as sent (binary bytes or JSON data)."""

    name: str
    datatype: str
    shape: list[int]
    raw: bytes | None
    data: list[Any] | None

    @property
    def count(self) -> int:
        return math.prod(self.shape)

    def int16_bytes(self) -> bytes:
        """An INT16 tensor's elements as little-endian bytes."""
        if self.raw is not None:
            if len(self.raw) != 2 * self.count:
                raise invalid("Tensor size does not match its shape",
                              f"'{shown(self.name)}' has shape {self.shape} ({self.count} INT16 elements) but "
                              f"{len(self.raw)} bytes of data")
            return self.raw
        values = self.flat()
        try:
            samples = array("h", values)
        except (TypeError, OverflowError) as exc:
            raise invalid("Bad INT16 tensor data", f"'{shown(self.name)}': {exc}") from None
        if sys.byteorder == "big":
            samples.byteswap()
        return samples.tobytes()

    def byte_strings(self) -> list[bytes]:
        """A BYTES tensor's elements."""
        if self.raw is None:
            values = self.flat()
            if not all(isinstance(v, str) for v in values):
                raise invalid("Bad BYTES tensor data", f"'{shown(self.name)}': JSON BYTES elements must be strings")
            return [v.encode() for v in values]
        elements, offset = [], 0
        while offset < len(self.raw):
            if offset + 4 > len(self.raw):
                raise invalid("Truncated BYTES tensor", f"'{shown(self.name)}': a length prefix is cut off")
            (size,) = struct.unpack_from("<I", self.raw, offset)
            elements.append(self.raw[offset + 4:offset + 4 + size])
            offset += 4 + size
        if offset != len(self.raw) or len(elements) != self.count:
            raise invalid("BYTES tensor does not match its shape",
                          f"'{shown(self.name)}' has shape {self.shape} but {len(elements)} length-prefixed elements")
        return elements

    def flat(self) -> list[Any]:
        values = list(flatten(self.data or []))
        if len(values) != self.count:
            raise invalid("Tensor size does not match its shape",
                          f"'{shown(self.name)}' has shape {self.shape} but {len(values)} elements of data")
        return values


def flatten(data: list[Any]):
    """The protocol allows data nested like the shape, or flat in row-major order. Iterative: a client's
    nesting depth must not become this thread's recursion depth."""
    stack = [iter(data)]
    while stack:
        for item in stack[-1]:
            if isinstance(item, list):
                stack.append(iter(item))
                break
            yield item
        else:
            stack.pop()


def read_infer_request(req: falcon.Request, limit: int) -> tuple[InferRequest, list[Tensor]]:
    body = read_limited(req, limit, "Inference request")
    header_length = req.get_header(HEADER_LENGTH)
    split = len(body) if header_length is None else parse_header_length(header_length, len(body))
    try:
        request = _decode_request(body[:split])
    except msgspec.ValidationError as exc:
        raise invalid("Invalid inference request", str(exc)) from None
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as exc:   # RecursionError: nested too deep
        raise invalid("Malformed inference request", f"the JSON header is not valid JSON: {exc}") from None
    return request, tensors(request.inputs, memoryview(body)[split:])


def parse_header_length(value: str, body_length: int) -> int:
    if not value.isdigit() or int(value) > body_length:
        raise invalid(f"Bad {HEADER_LENGTH}", f"'{shown(value)}' is not a length within the {body_length}-byte body")
    return int(value)


def tensors(inputs: list[RequestInput], binary: memoryview) -> list[Tensor]:
    """Each input with its data; binary inputs take their `binary_data_size` bytes in order."""
    found, offset = [], 0
    for given in inputs:
        if any(d < 0 for d in given.shape):
            raise invalid("Bad tensor shape", f"'{shown(given.name)}' has shape {given.shape}: no negative sizes")
        size = given.parameters.get("binary_data_size")
        if size is None:
            if given.data is None:
                raise invalid("Tensor without data", f"'{shown(given.name)}' has neither `data` nor binary data")
            found.append(Tensor(given.name, given.datatype, given.shape, None, given.data))
            continue
        if not isinstance(size, int) or isinstance(size, bool) or size < 0 or offset + size > len(binary):
            raise invalid("Bad binary_data_size", f"'{shown(given.name)}' says {size!r} bytes; "
                          f"{len(binary) - offset} bytes are left in the body")
        found.append(Tensor(given.name, given.datatype, given.shape, bytes(binary[offset:offset + size]), None))
        offset += size
    if offset != len(binary):
        raise invalid("Unclaimed binary data", f"{len(binary) - offset} bytes after the JSON header belong to no "
                      "input's binary_data_size")
    return found


def bytes_element(values: list[bytes]) -> bytes:
    return b"".join(struct.pack("<I", len(v)) + v for v in values)


def int32_bytes(values: list[int]) -> bytes:
    packed = array("i", values)
    if sys.byteorder == "big":
        packed.byteswap()
    return packed.tobytes()
