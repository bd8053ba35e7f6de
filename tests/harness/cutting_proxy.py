"""A TCP proxy that loses answers: the server answered, the client never reads it.

It forwards HTTP/1.1 requests one at a time (keep-alive included), reads each answer from the
server in full, and, for the first `cuts[path]` requests whose path starts with a given prefix,
drops the answer and resets the client's connection (SO_LINGER 0 → RST) instead of sending it.
The server has done the work and committed; the client sees a broken connection.
"""

from __future__ import annotations

import socket
import struct
import threading

from tests.harness.ports import free_port


def _read_message(sock: socket.socket, buffer: bytearray) -> bytes | None:
    """One HTTP/1.1 message with a Content-Length body (all this API sends), or None at EOF."""
    while b"\r\n\r\n" not in buffer:
        chunk = sock.recv(65536)
        if not chunk:
            return None
        buffer += chunk
    head_end = buffer.index(b"\r\n\r\n") + 4
    length = 0
    for line in bytes(buffer[:head_end]).split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(buffer) < head_end + length:
        chunk = sock.recv(65536)
        if not chunk:
            return None
        buffer += chunk
    message = bytes(buffer[: head_end + length])
    del buffer[: head_end + length]
    return message


class CuttingProxy:
    def __init__(self, upstream_port: int, cuts: dict[str, int]):
        self.upstream_port = upstream_port
        self.cuts = dict(cuts)
        self.cut_done: list[str] = []
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self._closed = True
        self._listener.close()

    def _should_cut(self, request: bytes) -> str | None:
        path = request.split(b" ", 2)[1].decode()
        with self._lock:
            for prefix, left in self.cuts.items():
                if path.startswith(prefix) and left > 0:
                    self.cuts[prefix] = left - 1
                    self.cut_done.append(path)
                    return path
        return None

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
        from_client, from_upstream = bytearray(), bytearray()
        try:
            while True:
                request = _read_message(client, from_client)
                if request is None:
                    return
                upstream.sendall(request)
                answer = _read_message(upstream, from_upstream)
                if answer is None:
                    return
                if self._should_cut(request):
                    # The answer is here and complete; the client gets a reset instead.
                    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    return
                client.sendall(answer)
        except OSError:
            return
        finally:
            client.close()
            upstream.close()
