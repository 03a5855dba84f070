"""Loopback traffic for network tests (kernel and guest): a client whose
socket the test moves to CLOSE_WAIT from its own context."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

# Connects, says so, then waits on stdin: not in a socket call when the
# server's FIN comes, so the kernel handles that FIN in the sender's context.
CLIENT = ("import socket, sys\n"
          "s = socket.create_connection(('127.0.0.1', int(sys.argv[1])), timeout=5)\n"
          "print('connected', flush=True)\n"
          "sys.stdin.readline()\n"
          "s.close()\n")


def closed_by_server(listener: socket.socket, timeout: float = 30) -> int:
    """A client process connects to `listener`; this process accepts and
    closes its end, so the client's sock goes to CLOSE_WAIT here (loopback
    delivers in the sender's softirq); then the client closes and exits.
    Returns the client's pid."""
    client = subprocess.Popen([sys.executable, "-c", CLIENT, str(listener.getsockname()[1])],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert client.stdout.readline() == "connected\n"
        conn, _ = listener.accept()
        conn.close()
        time.sleep(0.2)
        client.stdin.write("done\n")
        client.stdin.flush()
        assert client.wait(timeout=timeout) == 0
    finally:
        if client.poll() is None:
            client.kill()
            client.wait()
    return client.pid
