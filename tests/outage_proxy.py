"""A loopback TCP proxy in front of the S3 server whose forwarding stops for some seconds: the
storage outage of issue 14, injected where the clients (botocore, s3fs, Ray's uploads) meet it.

    proxy = OutageProxy("127.0.0.1:9000", cut_on=rb"PUT /[^ ]*/embeddings/", seconds=12)
    env["AWS_ENDPOINT_URL"] = proxy.url      # the clients talk to the proxy
    ...
    proxy.cuts        # the request lines that started an outage (one at most)
    proxy.refused     # connections refused while it lasted

The outage starts at the first request whose opening bytes match ``cut_on`` (after ``after``
such requests were let through): that request is
dropped, every open connection is closed, and new ones are closed as soon as they are accepted
until ``seconds`` have passed; then it forwards again.
"""

from __future__ import annotations

import re
import socket
import threading
import time


class OutageProxy:
    def __init__(self, target: str, *, cut_on: bytes, seconds: float, after: int = 0) -> None:
        host, port = target.rsplit(":", 1)
        self.target = (host, int(port))
        self.cut_on = re.compile(cut_on)
        self.seconds = seconds
        self.after = after  # matching requests let through before the one that starts the outage
        self.cuts: list[str] = []
        self.refused = 0
        self._down_until = 0.0
        self._lock = threading.RLock()  # _cut closes sockets while holding it
        self._open: set[socket.socket] = set()
        self._server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._server.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _down(self) -> bool:
        return time.monotonic() < self._down_until

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:  # closed
                return
            if self._down():
                self.refused += 1
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._open.update((client, upstream))
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, from_client: bool) -> None:
        try:
            while data := source.recv(1 << 16):
                if from_client and not self.cuts and self.cut_on.match(data):
                    if self.after == 0:
                        self._cut(data)
                        return
                    self.after -= 1
                if self._down():
                    return
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                self._close(s)

    def _cut(self, request: bytes) -> None:
        self.cuts.append(request.split(b"\r\n", 1)[0].decode(errors="replace"))
        self._down_until = time.monotonic() + self.seconds
        with self._lock:
            for s in list(self._open):
                self._close(s)

    def _close(self, s: socket.socket) -> None:
        with self._lock:
            self._open.discard(s)
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        s.close()

    def close(self) -> None:
        self._server.close()
        with self._lock:
            for s in list(self._open):
                self._close(s)
