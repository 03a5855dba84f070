"""Servers on 127.0.0.1 for the tests of GetUrl and DnsLookup (unit and
kernel): they record what they were asked."""

from __future__ import annotations

import contextlib
import http.server
import socket
import struct
import threading


@contextlib.contextmanager
def http_server():
    """(port, paths requested). /moved... answers 302, /missing... 404,
    anything else 200."""
    paths: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            paths.append(self.path)
            if self.path.startswith("/moved"):
                self.send_response(302)
                self.send_header("Location", "/elsewhere")
            else:
                self.send_response(404 if self.path.startswith("/missing") else 200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], paths
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@contextlib.contextmanager
def dns_responder():
    """(port, questions asked as (name, qtype, qclass)); every query is
    answered with its own id (no records)."""
    questions: list[tuple[str, int, int]] = []
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.2)
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                data, peer = sock.recvfrom(512)
            except socket.timeout:
                continue
            questions.append(question(data))
            sock.sendto(data[:2] + b"\x81\x80" + data[4:], peer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield sock.getsockname()[1], questions
    finally:
        stop.set()
        thread.join()
        sock.close()


def question(data: bytes) -> tuple[str, int, int]:
    labels, at = [], 12
    while at < len(data) and data[at]:
        labels.append(data[at + 1:at + 1 + data[at]].decode(errors="replace"))
        at += 1 + data[at]
    qtype, qclass = struct.unpack_from("!HH", data, at + 1)
    return ".".join(labels), qtype, qclass
