"""Tiny real HTTP servers for tests that need a peer which cannot run here (the Kubernetes API) or
that must answer in a controlled way (a predictor pod's /v1/samples): real sockets, real JSON."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

JsonAnswer = Callable[[str, dict[str, list[str]], str | None], tuple[int, dict]]


def serve_json(answer: JsonAnswer) -> ThreadingHTTPServer:
    """A real HTTP server on a free 127.0.0.1 port: each GET is `answer(path, query, authorization)`
    → (status, JSON body). The caller shuts it down."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            parsed = urlparse(self.path)
            status, body = answer(parsed.path, parse_qs(parsed.query), self.headers.get("Authorization"))
            payload = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args) -> None:  # keep pytest output clean
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def server_url(server: ThreadingHTTPServer) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}"
