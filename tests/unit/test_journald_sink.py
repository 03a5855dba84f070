"""Whether journald is there: a socket that answers, not a file."""

import socket

from tetrad.sinks.journald import listening


def test_a_socket_that_answers_is_journald(tmp_path):
    path = str(tmp_path / "socket")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(path)
        assert listening(path)


def test_a_socket_file_left_behind_is_not(tmp_path):
    path = str(tmp_path / "socket")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(path)
    assert (tmp_path / "socket").exists()            # as a stopped journald leaves it
    assert not listening(path)
    assert not listening(str(tmp_path / "missing"))
