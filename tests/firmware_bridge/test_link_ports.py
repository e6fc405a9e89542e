"""Links: raw pty pairs, pyserial URLs (device paths, socket://), port locking, missing ports."""
import socket
import threading

import pytest

from tinyexit.errors import UserError
from tinyexit.firmware_bridge.harness.link import PtyPair, SerialLink, lock_path


def _read_all(link, n, timeout=2.0):
    got = b""
    while len(got) < n:
        chunk = link.read(timeout)
        assert chunk, f"only {len(got)} of {n} bytes arrived"
        got += chunk
    return got


def test_pty_pair_carries_every_byte_value_unchanged():
    pair = PtyPair()
    dev = SerialLink(pair.slave_path)
    try:
        data = bytes(range(256)) * 8  # includes ^C, ^D, ^Q, ^S, CR, LF and 0x00
        pair.link.write(data)
        assert _read_all(dev, len(data)) == data
        dev.write(data[::-1])
        assert _read_all(pair.link, len(data)) == data[::-1]
    finally:
        dev.close()
        pair.close()


def test_second_user_of_a_port_is_refused_until_the_first_closes():
    pair = PtyPair()
    first = SerialLink(pair.slave_path)
    try:
        with pytest.raises(UserError, match=r"port /dev/pts/\d+ is in use by another tinyexit process \(pid \d+"):
            SerialLink(pair.slave_path)
        assert lock_path(pair.slave_path).is_file()
    finally:
        first.close()
    SerialLink(pair.slave_path).close()
    pair.close()


def test_missing_port_names_the_port():
    with pytest.raises(UserError, match="cannot open port /dev/ttyTINYEXIT_NONE: .*No such file"):
        SerialLink("/dev/ttyTINYEXIT_NONE")


def test_socket_url_link_talks_to_a_tcp_peer():
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def echo():
        conn, _ = server.accept()
        with conn:
            while data := conn.recv(4096):
                conn.sendall(data[::-1])

    t = threading.Thread(target=echo, daemon=True)
    t.start()
    link = SerialLink(f"socket://127.0.0.1:{port}")
    try:
        link.write(b"\x00\x01tinyexit")
        assert _read_all(link, 10) == b"tixeynit\x01\x00"
    finally:
        link.close()
        server.close()


def test_refused_socket_is_a_user_error():
    s = socket.create_server(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    with pytest.raises(UserError, match=f"cannot open port socket://127.0.0.1:{port}"):
        SerialLink(f"socket://127.0.0.1:{port}")
