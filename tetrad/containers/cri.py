"""Container metadata from the Kubernetes CRI API (containerd, CRI-O).

Owns one call: runtime.v1.RuntimeService/ContainerStatus over the runtime's
Unix socket (gRPC). Imported only by tetrad/containers/ (resolver.py makes
the client, metadata.py asks it); the calls run only on the resolver's
worker thread, never on the event path; each has a deadline of
CRI_TIMEOUT_S. grpc itself is imported at the first CRI container, not
with this module.

The two protobuf messages are encoded and decoded here with a small codec of
the wire format, not with generated code (the Kubernetes api.proto would
pull in protoc output for ~150 messages to use two). Field numbers, from
cri-api pkg/apis/runtime/v1/api.proto:

  ContainerStatusRequest   1 container_id (string)  2 verbose (bool)
  ContainerStatusResponse  1 status (ContainerStatus)  2 info (map, verbose only)
  ContainerStatus          1 id  2 metadata (ContainerMetadata)  8 image (ImageSpec)
                           9 image_ref  12 labels (map)  13 annotations (map)
                           17 image_id; all other fields are skipped
  ContainerMetadata        1 name  2 attempt
  ImageSpec                1 image
  map<string,string>       repeated entry message: 1 key, 2 value

Wire format: each field is a varint key (number << 3 | wire type) then a
varint (type 0), 8 bytes (1), a varint length and that many bytes (2), or
4 bytes (5). Anything else, a truncated field, or a known field with the
wrong wire type is a ProtoError.

grpc is python3-grpcio, optional: without it make_client() logs one line and
returns a client that knows nothing, so containers of these runtimes are
named from state files only.
"""

from __future__ import annotations

import logging
import os
import stat
from typing import Iterator

log = logging.getLogger(__name__)

CRI_TIMEOUT_S = 1.0
METHOD = "/runtime.v1.RuntimeService/ContainerStatus"
MAX_MESSAGE_BYTES = 8 << 20

VARINT, I64, LEN, I32 = 0, 1, 2, 5


class ProtoError(ValueError):
    """Bytes that are not a well-formed message of the expected type."""


# ---- wire format ----------------------------------------------------------------

def encode_varint(value: int) -> bytes:
    if value < 0:
        value &= (1 << 64) - 1               # int32/int64: two's complement, 10 bytes
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def decode_varint(buf: bytes, pos: int) -> tuple[int, int]:
    """(value, position after it)."""
    value = 0
    for shift in range(0, 70, 7):
        if pos >= len(buf):
            raise ProtoError("truncated varint")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
    raise ProtoError("varint longer than 10 bytes")


def encode_field(number: int, value: int | bytes | str) -> bytes:
    """One field: an int as a varint, bytes/str as length-delimited."""
    if isinstance(value, int):
        return encode_varint(number << 3 | VARINT) + encode_varint(value)
    if isinstance(value, str):
        value = value.encode()
    return encode_varint(number << 3 | LEN) + encode_varint(len(value)) + value


def iter_fields(buf: bytes) -> Iterator[tuple[int, int, int | bytes]]:
    """(field number, wire type, value) for each field: ints for varint and
    fixed-width fields, bytes for length-delimited ones."""
    pos = 0
    while pos < len(buf):
        key, pos = decode_varint(buf, pos)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise ProtoError("field number 0")
        if wire == VARINT:
            value, pos = decode_varint(buf, pos)
        elif wire in (I64, I32):
            width = 8 if wire == I64 else 4
            if pos + width > len(buf):
                raise ProtoError(f"truncated fixed{width * 8} field {number}")
            value = int.from_bytes(buf[pos:pos + width], "little")
            pos += width
        elif wire == LEN:
            size, pos = decode_varint(buf, pos)
            if pos + size > len(buf):
                raise ProtoError(f"field {number} runs past the end")
            value = bytes(buf[pos:pos + size])
            pos += size
        else:
            raise ProtoError(f"wire type {wire} (field {number})")
        yield number, wire, value


def _expect(number: int, wire: int, want: int) -> None:
    if wire != want:
        raise ProtoError(f"field {number}: wire type {wire}, expected {want}")


def _text(number: int, wire: int, value) -> str:
    _expect(number, wire, LEN)
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ProtoError(f"field {number}: not UTF-8") from err


def _one_string(buf: bytes, wanted: int) -> str:
    """The last occurrence of string field `wanted` in a message (proto3:
    last one wins), "" if absent."""
    found = ""
    for number, wire, value in iter_fields(buf):
        if number == wanted:
            found = _text(number, wire, value)
    return found


def _map_entry(buf: bytes) -> tuple[str, str]:
    key = value = ""
    for number, wire, raw in iter_fields(buf):
        if number == 1:
            key = _text(number, wire, raw)
        elif number == 2:
            value = _text(number, wire, raw)
    return key, value


# ---- the two messages -----------------------------------------------------------

def encode_container_status_request(container_id: str, verbose: bool = False) -> bytes:
    out = encode_field(1, container_id)
    if verbose:                              # proto3: false is not written
        out += encode_field(2, 1)
    return out


def decode_container_status_response(buf: bytes) -> dict:
    """The ContainerStatus in a response as a dict with any of: id, name,
    image, image_ref, image_id (str), labels, annotations (dict). {} when the
    response has no status."""
    status: dict = {}
    for number, wire, value in iter_fields(buf):
        if number == 1:
            _expect(number, wire, LEN)
            _decode_status(value, status)     # repeated message fields merge
    return status


_STATUS_STRINGS = {1: "id", 9: "image_ref", 17: "image_id"}
_STATUS_MAPS = {12: "labels", 13: "annotations"}


def _decode_status(buf: bytes, out: dict) -> None:
    for number, wire, value in iter_fields(buf):
        if number in _STATUS_STRINGS:
            out[_STATUS_STRINGS[number]] = _text(number, wire, value)
        elif number == 2:
            _expect(number, wire, LEN)
            out["name"] = _one_string(value, 1)
        elif number == 8:
            _expect(number, wire, LEN)
            out["image"] = _one_string(value, 1)
        elif number in _STATUS_MAPS:
            _expect(number, wire, LEN)
            key, val = _map_entry(value)
            out.setdefault(_STATUS_MAPS[number], {})[key] = val


# ---- client ---------------------------------------------------------------------

def _is_socket(path: str) -> bool:
    try:
        return stat.S_ISSOCK(os.stat(path).st_mode)
    except OSError:
        return False


class CriClient:
    """ContainerStatus over gRPC, one channel per runtime socket, kept open
    (grpc reconnects by itself when the runtime restarts). Not thread-safe
    for first use of a socket: call from one thread (the resolver's worker)."""

    def __init__(self, grpc_module, timeout: float = CRI_TIMEOUT_S):
        self._grpc = grpc_module
        self._timeout = timeout
        self._channels: dict[str, tuple] = {}
        self.errors = 0

    def container_status(self, socket_path: str, container_id: str) -> dict:
        """The container's status (see decode_container_status_response), or
        {} when the socket is missing, the runtime does not know the id, the
        deadline passes or the answer is malformed."""
        if not _is_socket(socket_path):
            return {}
        call = self._call(socket_path)
        try:
            reply = call(encode_container_status_request(container_id), timeout=self._timeout)
        except self._grpc.RpcError as err:
            self.errors += 1
            log.debug("CRI ContainerStatus %s at %s: %s", container_id, socket_path,
                      err.code() if hasattr(err, "code") else err)
            return {}
        try:
            return decode_container_status_response(reply)
        except ProtoError as err:
            self.errors += 1
            log.debug("CRI ContainerStatus %s at %s: malformed reply: %s",
                      container_id, socket_path, err)
            return {}

    def _call(self, socket_path: str):
        entry = self._channels.get(socket_path)
        if entry is None:
            channel = self._grpc.insecure_channel(
                "unix:" + socket_path,
                options=[("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                         ("grpc.enable_http_proxy", 0),
                         # A runtime that was down is asked again within 2 s, not
                         # after grpc's default backoff of up to 120 s.
                         ("grpc.initial_reconnect_backoff_ms", 200),
                         ("grpc.max_reconnect_backoff_ms", 2000)])
            # No (de)serializers: requests and replies are our own bytes.
            entry = (channel, channel.unary_unary(METHOD))
            self._channels[socket_path] = entry
        return entry[1]

    def close(self) -> None:
        for channel, _ in self._channels.values():
            channel.close()
        self._channels.clear()


class NoCriClient:
    """Stands in for CriClient when python3-grpcio is missing."""

    errors = 0

    def container_status(self, socket_path: str, container_id: str) -> dict:
        return {}


def make_client(timeout: float = CRI_TIMEOUT_S) -> CriClient | NoCriClient:
    try:
        import grpc                          # python3-grpcio, needed only here
    except ImportError:
        log.warning("CRI metadata disabled: missing python3-grpcio; containerd and CRI-O "
                    "containers are named from their state files only")
        return NoCriClient()
    return CriClient(grpc, timeout)
