"""A small Hugging Face Hub-compatible HTTP server for tests: `push_to_hub` / `from_pretrained` round trips through
real HTTP on 127.0.0.1, with no network.

It implements the endpoints that `huggingface_hub` (2.x) and `transformers` call to create repositories, branches
and tags, upload (preupload, the git-LFS batch API with a basic PUT transfer, the NDJSON commit), inspect
(repo info at a revision, tree listing, paths-info, refs, commits) and download (`resolve/<revision>/<path>` with
the `X-Repo-Commit`, `ETag`, `X-Linked-Etag` and `X-Linked-Size` headers, HEAD, GET and byte ranges). Content is
stored on disk under `root`, so a server that is stopped or killed and started again on the same `root` still has
every completed commit, and a commit is all or nothing.

This module runs the server (its thread, connections and faults); `hub_storage` holds the repositories
([`LocalHub`]) and `hub_endpoints` the HTTP API (routes and endpoint handlers).

Xet storage is not implemented: binary files are uploaded through git LFS, which `huggingface_hub` uses when
`HF_HUB_DISABLE_XET=1` ([`LocalHubServer.client_environment`] sets it); a Xet request gets a 501 saying so.

Because `huggingface_hub` reads `HF_ENDPOINT` and `HF_HUB_OFFLINE` when it is imported (and copies them into
module-level objects), clients are best run in a subprocess whose environment is `client_environment()`:

```python
from transformers_av.testing.hub_server import LocalHubServer

with LocalHubServer(tmp_path / "hub") as server:
    env = {**os.environ, **server.client_environment(tmp_path / "hf_home")}
    subprocess.run([sys.executable, "push_and_load.py"], env=env, check=True)
    readme = server.read_file("user/favor-tiny", "README.md")
```

Faults for robustness tests: [`LocalHubServer.kill_on`] makes the server drop the connection and stop listening
when a given kind of request arrives (as if its process were killed mid-request); `start()` brings it back on the
same port and storage. Every request is recorded in `server.requests` (method, route kind, repo id, path).

Run it by hand with `python -m transformers_av.testing.hub_server --root DIR [--port N]`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import tempfile
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

from .hub_endpoints import route
from .hub_storage import HubError, LocalHub, git_blob_oid  # noqa: F401  (git_blob_oid: re-exported)

DEFAULT_USER = "user"
DEFAULT_TOKEN = "hf_local_test_token"


@dataclass
class RecordedRequest:
    """One request as the server saw it: its method, route kind, repository id (if any) and path."""

    method: str
    kind: str
    repo_id: str | None
    path: str


class HubRequestHandler(BaseHTTPRequestHandler):
    """Answers one HTTP connection: records the request, applies a fault set by `kill_on`, and hands the request to
    its endpoint handler (`hub_endpoints`)."""

    protocol_version = "HTTP/1.1"
    server: "_Server"

    def log_message(self, format, *args):  # quiet
        pass

    def setup(self):
        super().setup()
        self.server.owner._track(self.connection, add=True)

    def finish(self):
        try:
            super().finish()
        finally:
            self.server.owner._track(self.connection, add=False)

    def do_GET(self):
        self._dispatch("GET")

    def do_HEAD(self):
        self._dispatch("HEAD")

    def do_POST(self):
        self._dispatch("POST")

    def do_PUT(self):
        self._dispatch("PUT")

    def do_DELETE(self):
        self._dispatch("DELETE")

    # -- what endpoint handlers read and answer with ---------------------------------------------------------------
    def read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def read_json(self) -> Any:
        body = self.read_body()
        return json.loads(body) if body else {}

    def send_bytes(self, status: int, body: bytes = b"", headers: dict | None = None,
                   content_type: str = "application/json"):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)

    def send_json(self, status: int, payload: Any, headers: dict | None = None):
        self.send_bytes(status, json.dumps(payload).encode(), headers)

    def _dispatch(self, method: str) -> None:
        owner = self.server.owner
        url = urlsplit(self.path)
        parts = [unquote(p) for p in url.path.split("/")[1:]]
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        try:
            kind, handler, args = route(method, parts)
        except HubError as error:
            kind, handler, args = "unknown", None, error
        repo_id = args.get("repo_id") if isinstance(args, dict) else None
        owner.requests.append(RecordedRequest(method, kind, repo_id, url.path))
        if owner._should_kill(kind):
            owner._die(self)
            return
        try:
            if handler is None:
                raise args if isinstance(args, HubError) else HubError(404, f"Not found: {method} {url.path}")
            handler(self, owner.hub, query, **args)
        except HubError as error:
            headers = {"X-Error-Message": error.message}
            if error.code:
                headers["X-Error-Code"] = error.code
            self.send_json(error.status, {"error": error.message}, headers)
        except (BrokenPipeError, ConnectionResetError):
            pass
        except Exception as error:  # a bug of this server: say so to the client
            self.send_json(500, {"error": f"local hub server error: {type(error).__name__}: {error}"})


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False
    owner: "LocalHubServer"


class LocalHubServer:
    """A [`LocalHub`] served over HTTP on `host:port` (127.0.0.1 and a free port by default), in a background thread.

    Args:
        root: the storage folder (created; default: a temporary folder removed by `stop(cleanup=True)`).
        host: interface to bind (only loopback addresses are accepted).
        port: 0 picks a free port; after a `stop()` / kill, `start()` binds the same port again.
        user: the name `whoami` reports and the namespace of repositories created without one.
    """

    def __init__(self, root: str | os.PathLike | None = None, *, host: str = "127.0.0.1", port: int = 0,
                 user: str = DEFAULT_USER, token: str = DEFAULT_TOKEN):
        if host not in ("127.0.0.1", "::1", "localhost"):
            raise ValueError(f"LocalHubServer binds a loopback interface only, got host={host!r}.")
        self._own_root = root is None
        self.root = Path(tempfile.mkdtemp(prefix="local-hub-")) if root is None else Path(root)
        self.hub = LocalHub(self.root)
        self.host, self.port, self.user, self.token = host, port, user, token
        self.requests: list[RecordedRequest] = []
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._kill_on: set[str] = set()
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()

    # -- lifecycle ---------------------------------------------------------------------------------------------------
    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._server is not None

    def start(self) -> "LocalHubServer":
        if self._server is not None:
            return self
        server = _Server((self.host, self.port), HubRequestHandler)
        server.owner = self
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"local-hub:{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self, cleanup: bool = False) -> None:
        """Stop serving (open connections are closed). `cleanup=True` also deletes a temporary `root`."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        self._close_connections()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if cleanup and self._own_root:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> "LocalHubServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop(cleanup=True)

    # -- faults ------------------------------------------------------------------------------------------------------
    def kill_on(self, kind: str) -> None:
        """When the next request of route `kind` arrives ("commit", "lfs_upload", "lfs_batch", "preupload",
        "create_repo", "resolve", ...), drop its connection without an answer and stop serving, as if the server
        process had been killed at that moment. Storage keeps only what was complete before."""
        self._kill_on.add(kind)

    def _should_kill(self, kind: str) -> bool:
        if kind in self._kill_on:
            self._kill_on.discard(kind)
            return True
        return False

    def _die(self, request: HubRequestHandler) -> None:
        request.close_connection = True
        try:
            request.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        threading.Thread(target=self.stop, daemon=True).start()

    def _track(self, connection: socket.socket, add: bool) -> None:
        with self._connections_lock:
            (self._connections.add if add else self._connections.discard)(connection)

    def _close_connections(self) -> None:
        with self._connections_lock:
            connections, self._connections = list(self._connections), set()
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    # -- helpers for tests -------------------------------------------------------------------------------------------
    def client_environment(self, hf_home: str | os.PathLike | None = None) -> dict[str, str]:
        """Environment variables that point huggingface_hub / transformers in a (sub)process at this server: the
        endpoint, online mode, LFS instead of Xet, a token, no telemetry or progress bars, and (if given) a private
        `HF_HOME` so the download cache starts empty."""
        env = {
            "HF_ENDPOINT": self.endpoint,
            "HF_HUB_OFFLINE": "0",
            "TRANSFORMERS_OFFLINE": "0",
            "HF_HUB_DISABLE_XET": "1",
            "HF_TOKEN": self.token,
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "HF_HUB_DISABLE_PROGRESS_BARS": "1",
            "HF_HUB_DISABLE_IMPLICIT_TOKEN": "0",
        }
        if hf_home is not None:
            env["HF_HOME"] = str(hf_home)
        return env

    def read_file(self, repo_id: str, path: str, revision: str = "main", repo_type: str = "model") -> bytes:
        """The content of a file of a repository at a revision (branch, tag or commit id)."""
        return self.hub.read_file(repo_id, path, revision, repo_type)

    def list_files(self, repo_id: str, revision: str = "main", repo_type: str = "model") -> list[str]:
        return sorted(self.hub.snapshot(repo_type, repo_id, revision)[1])

    def commit_ids(self, repo_id: str, revision: str = "main", repo_type: str = "model") -> list[str]:
        """Commit ids of a revision's history, newest first."""
        return [oid for oid, _ in self.hub.history(repo_type, repo_id, revision)]

    def resolve_url(self, repo_id: str, path: str, revision: str = "main") -> str:
        return f"{self.endpoint}/{repo_id}/resolve/{quote(revision, safe='')}/{quote(path)}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Serve a local Hugging Face Hub-compatible test server.")
    parser.add_argument("--root", required=True, help="storage folder")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    server = LocalHubServer(args.root, port=args.port).start()
    print(f"serving {server.endpoint} (storage {server.root}); set HF_ENDPOINT={server.endpoint} HF_HUB_DISABLE_XET=1",
          flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


__all__ = ["HubError", "HubRequestHandler", "LocalHub", "LocalHubServer", "RecordedRequest", "git_blob_oid"]
