"""A small HTTP file server on 127.0.0.1 for rehearsing downloads (standard library only).

It serves the regular files lying directly in one folder, the way a dataset host serves an archive:
``GET`` and ``HEAD``, ``Content-Length``, a strong ``ETag`` and ``Last-Modified``, ``Accept-Ranges:
bytes``, and ``Range: bytes=N-`` / ``bytes=N-M`` answered with ``206 Partial Content`` and
``Content-Range`` (``If-Range`` with another validator gets the whole file, a range starting past the
end gets ``416`` with ``Content-Range: bytes */SIZE``). Anything else is refused: a path naming a
sub-folder, ``..``, a hidden file, a symlink or a missing file (403 / 404). It binds 127.0.0.1 only,
on a free port by default, and logs nothing.

In Python::

    with serve(folder) as base_url:      # e.g. http://127.0.0.1:40123
        ...                              # fetch f"{base_url}/GOPRO_Large.zip"

From a shell (serves until killed; the URL is printed and, with ``--port-file``, written to a file
once the socket listens, so a script can wait for that file)::

    python -m pipelines.rehearsal.server FOLDER --port-file server.url
"""
from __future__ import annotations

import argparse
import contextlib
import email.utils
import os
import re
import signal
import sys
import threading
import urllib.parse
from collections.abc import Iterator
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

HOST = "127.0.0.1"  # never any other interface
CHUNK = 1 << 20
CONTENT_TYPES = {".zip": "application/zip", ".gz": "application/gzip", ".tgz": "application/gzip",
                 ".tar": "application/x-tar", ".json": "application/json", ".yaml": "text/plain; charset=utf-8",
                 ".txt": "text/plain; charset=utf-8"}
_RANGE_RE = re.compile(r"bytes=(\d+)-(\d*)")


def _validators(path: Path) -> tuple[int, str, str]:
    """(size, strong ETag, Last-Modified) of a file: they change whenever its size or mtime does."""
    st = path.stat()
    return st.st_size, f'"{st.st_size:x}-{st.st_mtime_ns:x}"', email.utils.formatdate(st.st_mtime, usegmt=True)


class _Handler(BaseHTTPRequestHandler):
    server_version = "blurdm-rehearsal"
    sys_version = ""
    folder: Path  # set on the subclass made by make_server

    def log_message(self, format, *args):  # quiet: no line per request
        pass

    def do_HEAD(self):
        self._answer(body=False)

    def do_GET(self):
        self._answer(body=True)

    def _refuse(self, status: HTTPStatus) -> None:
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _file(self) -> Path | HTTPStatus:
        """The file the request names, or why not: only a plain file directly in the folder."""
        raw = self.path.split("?", 1)[0].split("#", 1)[0]  # not urlsplit: "//host/x" is no netloc here
        name = urllib.parse.unquote(raw.removeprefix("/"))
        if not name or "/" in name or "\\" in name or "\0" in name or name.startswith("."):
            return HTTPStatus.FORBIDDEN
        path = self.folder / name
        if path.is_symlink():
            return HTTPStatus.FORBIDDEN
        if not path.is_file():
            return HTTPStatus.NOT_FOUND
        return path

    def _answer(self, body: bool) -> None:
        path = self._file()
        if isinstance(path, HTTPStatus):
            self._refuse(path)
            return
        size, etag, modified = _validators(path)
        start, end, status = 0, size - 1, HTTPStatus.OK
        wanted = self.headers.get("Range")
        if_range = self.headers.get("If-Range")
        if wanted and (not if_range or if_range.strip() in (etag, modified)):
            match = _RANGE_RE.fullmatch(wanted.strip())
            if match:  # an unsupported form (suffix, several ranges) gets the whole file, as RFC 9110 allows
                start = int(match.group(1))
                end = min(int(match.group(2)), size - 1) if match.group(2) else size - 1
                if start >= size or end < start:
                    self.send_response(HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE)
                    self.send_header("Content-Range", f"bytes */{size}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                status = HTTPStatus.PARTIAL_CONTENT
        length = end - start + 1 if size else 0
        self.send_response(status)
        self.send_header("Content-Type", CONTENT_TYPES.get(path.suffix.lower(), "application/octet-stream"))
        self.send_header("Content-Length", str(length))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("ETag", etag)
        self.send_header("Last-Modified", modified)
        if status == HTTPStatus.PARTIAL_CONTENT:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.end_headers()
        if not body:
            return
        with open(path, "rb") as fh:
            fh.seek(start)
            left = length
            while left > 0:
                block = fh.read(min(CHUNK, left))
                if not block:  # the file shrank under us: the client sees a short body
                    break
                self.wfile.write(block)
                left -= len(block)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        if not isinstance(sys.exc_info()[1], ConnectionError):  # a client hanging up is no error
            super().handle_error(request, client_address)


def make_server(folder: str | os.PathLike, port: int = 0) -> ThreadingHTTPServer:
    """A (not yet serving) threaded server for the files directly in ``folder``, on 127.0.0.1:``port``
    (0: a free port; read it from ``server.server_port``)."""
    folder = Path(folder).resolve()
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder to serve")
    handler = type("RehearsalHandler", (_Handler,), {"folder": folder})
    return _Server((HOST, port), handler)


def base_url(server: ThreadingHTTPServer) -> str:
    return f"http://{HOST}:{server.server_port}"


@contextlib.contextmanager
def serve(folder: str | os.PathLike, port: int = 0) -> Iterator[str]:
    """Serve ``folder`` on 127.0.0.1 in a background thread; yields the base URL (no trailing slash)."""
    server = make_server(folder, port)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True,
                              name="rehearsal-http")
    thread.start()
    try:
        yield base_url(server)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.rehearsal.server",
                                     description="Serve the files of FOLDER on 127.0.0.1 (HTTP Range "
                                                 "supported) until killed.")
    parser.add_argument("folder", type=Path)
    parser.add_argument("--port", type=int, default=0, help="port to listen on (default: a free one)")
    parser.add_argument("--port-file", type=Path,
                        help="write the base URL (http://127.0.0.1:PORT) to this file once listening")
    args = parser.parse_args(argv)
    server = make_server(args.folder, args.port)
    url = base_url(server)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # `kill PID`: close the socket, exit 0
    try:
        if args.port_file is not None:
            _write_atomically(args.port_file, url + "\n")
        print(url, flush=True)
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
