"""The loopback image host: serves the demo world's http/ folder on 127.0.0.1 for real downloads.

    with ImageHost(world.http) as host:
        url = host.rewrite_url("http://laion-demo.invalid/img/00000/00000012.jpg")
        # -> http://127.0.0.1:<free port>/img/00000/00000012.jpg

A ``ThreadingHTTPServer`` in a background thread: GET and HEAD, real 404s for missing files,
no request log; ``stop()`` (or leaving the ``with`` block) frees the port and joins the thread.
"""

import functools
import os
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

DEMO_URL_PREFIX = "http://laion-demo.invalid/"   # RFC 2606 reserved: never resolves


class _QuietHandler(SimpleHTTPRequestHandler):  # no directory listings, no log lines on stderr
    def log_message(self, format, *args):
        pass

    def list_directory(self, path):
        self.send_error(404, "Not Found")


class _Server(ThreadingHTTPServer):
    daemon_threads = True      # request threads never keep the interpreter alive
    allow_reuse_address = True


class ImageHost:
    """Serve ``root`` over HTTP on 127.0.0.1 at a free port (or ``port``) while in use."""

    def __init__(self, root: str | os.PathLike, port: int = 0, prefix: str = DEMO_URL_PREFIX):
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"ImageHost: {self.root} is not a folder (build the demo "
                                    "world first: laionet.demo.build_world)")
        self.prefix, self._port = prefix, port
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("ImageHost is not running: use it as a context manager or call start()")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/"

    def start(self) -> "ImageHost":
        if self._server is not None:
            return self
        handler = functools.partial(_QuietHandler, directory=str(self.root))
        self._server = _Server(("127.0.0.1", self._port), handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True,
            name=f"laionet-image-host:{self._server.server_address[1]}")
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
        self._server, self._thread = None, None

    def rewrite_url(self, url: str) -> str:
        """Map the world's ``http://laion-demo.invalid/...`` URLs onto this host; others unchanged."""
        return self.base_url + url[len(self.prefix):] if url.startswith(self.prefix) else url

    def __enter__(self) -> "ImageHost":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
