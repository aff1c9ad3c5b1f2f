"""A small Hugging Face Hub-compatible HTTP server for tests: `push_to_hub` / `from_pretrained` round trips through
real HTTP on 127.0.0.1, with no network.

It implements the endpoints that `huggingface_hub` (2.x) and `transformers` call to create repositories, branches
and tags, upload (preupload, the git-LFS batch API with a basic PUT transfer, the NDJSON commit), inspect
(repo info at a revision, tree listing, paths-info, refs, commits) and download (`resolve/<revision>/<path>` with
the `X-Repo-Commit`, `ETag`, `X-Linked-Etag` and `X-Linked-Size` headers, HEAD, GET and byte ranges). Content is
stored on disk under `root` (blobs addressed by sha256, one JSON state file per repository written atomically), so
a server that is stopped or killed and started again on the same `root` still has every completed commit, and a
commit is all or nothing: files are visible only once their commit is recorded.

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

import base64
import datetime as _datetime
import hashlib
import json
import os
import re
import shutil
import socket
import tempfile
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

DEFAULT_USER = "user"
DEFAULT_TOKEN = "hf_local_test_token"
GITATTRIBUTES = (
    "*.bin filter=lfs diff=lfs merge=lfs -text\n"
    "*.pt filter=lfs diff=lfs merge=lfs -text\n"
    "*.safetensors filter=lfs diff=lfs merge=lfs -text\n"
    "*.model filter=lfs diff=lfs merge=lfs -text\n"
    "*.mp4 filter=lfs diff=lfs merge=lfs -text\n"
)
REPO_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
URL_PREFIXES = {"model": "", "dataset": "datasets/", "space": "spaces/"}
_LFS_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".model", ".msgpack", ".h5", ".onnx", ".mp4", ".wav")


class HubError(Exception):
    """An HTTP error answered to the client, with the `X-Error-Code` huggingface_hub maps to its exceptions."""

    def __init__(self, status: int, message: str, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.code = status, message, code


@dataclass
class RecordedRequest:
    method: str
    kind: str
    repo_id: str | None
    path: str


def git_blob_oid(content: bytes) -> str:
    """The git object id of a blob (what the Hub reports as a regular file's `oid` / ETag)."""
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


def _lfs_pointer(sha256: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


def _now() -> str:
    return _datetime.datetime.now(_datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class LocalHub:
    """The storage and the Hub semantics (repositories, commits, branches, tags), independent of HTTP."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        (self.root / "blobs").mkdir(parents=True, exist_ok=True)
        (self.root / "incoming").mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()

    # -- storage ---------------------------------------------------------------------------------------------------
    def _state_file(self, repo_type: str, repo_id: str) -> Path:
        return self.root / "repos" / repo_type / repo_id / "state.json"

    def _load(self, repo_type: str, repo_id: str) -> dict:
        path = self._state_file(repo_type, repo_id)
        if not path.exists():
            raise HubError(404, f"Repository Not Found for url: {repo_type} {repo_id}.", "RepoNotFound")
        return json.loads(path.read_text(encoding="utf-8"))

    def _save(self, repo_type: str, repo_id: str, state: dict) -> None:
        path = self._state_file(repo_type, repo_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(state, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)  # atomic: a reader (or a restarted server) sees the old or the new state, never half

    def blob_path(self, sha256: str) -> Path:
        return self.root / "blobs" / sha256

    def has_blob(self, sha256: str, size: int | None = None) -> bool:
        path = self.blob_path(sha256)
        return path.exists() and (size is None or path.stat().st_size == size)

    def store_blob(self, content: bytes) -> str:
        sha256 = hashlib.sha256(content).hexdigest()
        if not self.has_blob(sha256, len(content)):
            self._write_blob_atomically(sha256, [content])
        return sha256

    def _write_blob_atomically(self, sha256: str, chunks) -> None:
        fd, tmp = tempfile.mkstemp(dir=self.root / "incoming")
        with os.fdopen(fd, "wb") as handle:
            for chunk in chunks:
                handle.write(chunk)
        os.replace(tmp, self.blob_path(sha256))

    def receive_upload(self, sha256: str, size: int, stream, length: int) -> None:
        """Store an LFS object read from `stream` after checking its size and sha256 (a partial upload leaves
        nothing behind)."""
        fd, tmp = tempfile.mkstemp(dir=self.root / "incoming")
        digest, received = hashlib.sha256(), 0
        try:
            with os.fdopen(fd, "wb") as handle:
                while received < length:
                    chunk = stream.read(min(1 << 20, length - received))
                    if not chunk:
                        break
                    digest.update(chunk)
                    handle.write(chunk)
                    received += len(chunk)
            if received != size or digest.hexdigest() != sha256:
                raise HubError(400, f"LFS object {sha256}: received {received} bytes with another hash; expected {size} bytes.")
            os.replace(tmp, self.blob_path(sha256))
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)

    # -- repositories ----------------------------------------------------------------------------------------------
    def repo_exists(self, repo_type: str, repo_id: str) -> bool:
        return self._state_file(repo_type, repo_id).exists()

    def create_repo(self, repo_type: str, repo_id: str, private: bool = False) -> None:
        with self._lock:
            if self.repo_exists(repo_type, repo_id):
                raise HubError(409, f"You already created this {repo_type} repo: {repo_id}.")
            state = {"private": private, "created": _now(), "branches": {}, "tags": {}, "commits": {}}
            files = {".gitattributes": self._file_entry(GITATTRIBUTES.encode(), lfs=False)}
            commit = self._new_commit(state, None, files, "initial commit", "")
            state["branches"]["main"] = commit
            self._save(repo_type, repo_id, state)

    def delete_repo(self, repo_type: str, repo_id: str) -> None:
        with self._lock:
            self._load(repo_type, repo_id)
            shutil.rmtree(self._state_file(repo_type, repo_id).parent)

    def _file_entry(self, content: bytes, lfs: bool) -> dict:
        sha256 = self.store_blob(content)
        return {"sha256": sha256, "size": len(content), "lfs": lfs, "oid": git_blob_oid(content)}

    @staticmethod
    def _new_commit(state: dict, parent: str | None, files: dict, title: str, description: str) -> str:
        date = _now()
        tree = json.dumps(sorted((path, entry["sha256"]) for path, entry in files.items()))
        oid = hashlib.sha1(f"{parent}\n{tree}\n{title}\n{description}\n{date}\n{len(state['commits'])}".encode()).hexdigest()
        state["commits"][oid] = {"parent": parent, "files": files, "title": title, "message": description, "date": date}
        return oid

    def resolve_revision(self, state: dict, revision: str, repo_id: str) -> str:
        revision = revision or "main"
        if revision in state["branches"]:
            return state["branches"][revision]
        if revision in state["tags"]:
            return state["tags"][revision]
        if revision.startswith("refs/heads/") and revision[11:] in state["branches"]:
            return state["branches"][revision[11:]]
        if re.fullmatch(r"[0-9a-f]{40}", revision) and revision in state["commits"]:
            return revision
        raise HubError(404, f"Invalid rev id: {revision} (repo {repo_id}).", "RevisionNotFound")

    def snapshot(self, repo_type: str, repo_id: str, revision: str = "main") -> tuple[str, dict]:
        """(commit id, {path: entry}) of a revision."""
        with self._lock:
            state = self._load(repo_type, repo_id)
            commit = self.resolve_revision(state, revision, repo_id)
            return commit, state["commits"][commit]["files"]

    def read_file(self, repo_id: str, path: str, revision: str = "main", repo_type: str = "model") -> bytes:
        """The content of `path` at `revision` (for assertions in tests)."""
        _, files = self.snapshot(repo_type, repo_id, revision)
        if path not in files:
            raise HubError(404, f"Entry not found: {path} in {repo_id}@{revision}.", "EntryNotFound")
        return self.blob_path(files[path]["sha256"]).read_bytes()

    def create_branch(self, repo_type: str, repo_id: str, branch: str, starting_point: str | None) -> None:
        with self._lock:
            state = self._load(repo_type, repo_id)
            if branch in state["branches"]:
                raise HubError(409, f"Reference already exists: refs/heads/{branch}.")
            state["branches"][branch] = self.resolve_revision(state, starting_point or "main", repo_id)
            self._save(repo_type, repo_id, state)

    def delete_branch(self, repo_type: str, repo_id: str, branch: str) -> None:
        with self._lock:
            state = self._load(repo_type, repo_id)
            if branch == "main" or branch not in state["branches"]:
                raise HubError(400 if branch == "main" else 404, f"Cannot delete branch {branch!r}.", "RevisionNotFound")
            del state["branches"][branch]
            self._save(repo_type, repo_id, state)

    def create_tag(self, repo_type: str, repo_id: str, tag: str, revision: str) -> None:
        with self._lock:
            state = self._load(repo_type, repo_id)
            if tag in state["tags"]:
                raise HubError(409, f"Tag {tag!r} already exists.")
            state["tags"][tag] = self.resolve_revision(state, revision, repo_id)
            self._save(repo_type, repo_id, state)

    def commit(self, repo_type: str, repo_id: str, revision: str, header: dict, operations: list[dict]) -> str:
        """Apply NDJSON commit operations on top of the branch `revision`; returns the new commit id."""
        with self._lock:
            state = self._load(repo_type, repo_id)
            if revision not in state["branches"]:
                if re.fullmatch(r"[0-9a-f]{40}", revision) or revision in state["tags"]:
                    raise HubError(400, f"Commits go to a branch; {revision!r} is not one.", "RevisionNotFound")
                raise HubError(404, f"Invalid rev id: {revision} (repo {repo_id}).", "RevisionNotFound")
            parent = state["branches"][revision]
            expected_parent = header.get("parentCommit")
            if expected_parent and expected_parent != parent:
                raise HubError(412, f"A commit has happened since {expected_parent}; the branch is at {parent}.")
            files = dict(state["commits"][parent]["files"])
            for key, value in operations:
                path = value.get("path", "")
                if key == "file":
                    if value.get("encoding", "base64") != "base64":
                        raise HubError(400, f"Unsupported encoding {value.get('encoding')!r} for {path}.")
                    files[path] = self._file_entry(base64.b64decode(value["content"]), lfs=False)
                elif key == "lfsFile":
                    sha256, size = value["oid"], int(value["size"])
                    if not self.has_blob(sha256, size):
                        raise HubError(400, f"LFS object {sha256} of {path} was never uploaded.")
                    entry = {"sha256": sha256, "size": size, "lfs": True, "oid": git_blob_oid(_lfs_pointer(sha256, size))}
                    files[path] = entry
                elif key == "deletedFile":
                    if path not in files:
                        raise HubError(404, f"Cannot delete {path}: not found.", "EntryNotFound")
                    del files[path]
                elif key == "deletedFolder":
                    prefix = path.rstrip("/") + "/"
                    for name in [name for name in files if name.startswith(prefix)]:
                        del files[name]
                else:
                    raise HubError(400, f"Unsupported commit operation {key!r} (this local Hub knows file, lfsFile, "
                                        "deletedFile, deletedFolder).")
            oid = self._new_commit(state, parent, files, header.get("summary", ""), header.get("description", ""))
            state["branches"][revision] = oid
            self._save(repo_type, repo_id, state)
            return oid

    def refs(self, repo_type: str, repo_id: str) -> dict:
        with self._lock:
            state = self._load(repo_type, repo_id)
        return state

    def history(self, repo_type: str, repo_id: str, revision: str) -> list[tuple[str, dict]]:
        with self._lock:
            state = self._load(repo_type, repo_id)
            oid = self.resolve_revision(state, revision, repo_id)
            commits = []
            while oid is not None:
                commits.append((oid, state["commits"][oid]))
                oid = state["commits"][oid]["parent"]
            return commits


class _Handler(BaseHTTPRequestHandler):
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

    # -- plumbing --------------------------------------------------------------------------------------------------
    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _json_body(self) -> Any:
        body = self._body()
        return json.loads(body) if body else {}

    def _send(self, status: int, body: bytes = b"", headers: dict | None = None, content_type: str = "application/json"):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)

    def _json(self, status: int, payload: Any, headers: dict | None = None):
        self._send(status, json.dumps(payload).encode(), headers)

    def _dispatch(self, method: str) -> None:
        owner = self.server.owner
        url = urlsplit(self.path)
        parts = [unquote(p) for p in url.path.split("/")[1:]]
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        try:
            kind, handler, args = _route(method, parts)
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
            self._json(error.status, {"error": error.message}, headers)
        except (BrokenPipeError, ConnectionResetError):
            pass
        except Exception as error:  # a bug of this server: say so to the client
            self._json(500, {"error": f"local hub server error: {type(error).__name__}: {error}"})


def _route(method: str, parts: list[str]):
    """(route kind, handler, keyword arguments) of a request path split on '/' (components unquoted)."""
    if parts[:2] == ["api", "whoami-v2"]:
        return "whoami", _whoami, {}
    if parts[:2] == ["api", "validate-yaml"] and method == "POST":
        return "validate_yaml", _validate_yaml, {}
    if parts[:3] == ["api", "repos", "create"] and method == "POST":
        return "create_repo", _create_repo, {}
    if parts[:3] == ["api", "repos", "delete"] and method == "DELETE":
        return "delete_repo", _delete_repo, {}
    if parts[0] == "lfs-upload" and len(parts) == 3 and method == "PUT":
        return "lfs_upload", _lfs_upload, {"sha256": parts[1], "size": int(parts[2])}
    if parts[0] == "api" and len(parts) >= 4 and parts[1] in REPO_TYPES:
        repo_type, repo_id, rest = REPO_TYPES[parts[1]], f"{parts[2]}/{parts[3]}", parts[4:]
        common = {"repo_type": repo_type, "repo_id": repo_id}
        if not rest and method == "GET":
            return "repo_info", _repo_info, {**common, "revision": "main"}
        action, tail = rest[0] if rest else "", rest[1:]
        revision = tail[0] if tail else "main"
        if action == "revision" and method == "GET":
            return "repo_info", _repo_info, {**common, "revision": revision}
        if action == "tree" and method == "GET":
            return "tree", _tree, {**common, "revision": revision, "path": "/".join(tail[1:])}
        if action == "paths-info" and method == "POST":
            return "paths_info", _paths_info, {**common, "revision": revision}
        if action == "refs" and method == "GET":
            return "refs", _refs, common
        if action == "commits" and method == "GET":
            return "commits", _commits, {**common, "revision": revision}
        if action == "branch" and tail:
            handler = _create_branch if method == "POST" else _delete_branch
            return "branch", handler, {**common, "branch": "/".join(tail)}
        if action == "tag" and tail and method == "POST":
            return "tag", _create_tag, {**common, "revision": tail[0]}
        if action == "preupload" and method == "POST":
            return "preupload", _preupload, {**common, "revision": revision}
        if action == "commit" and method == "POST":
            return "commit", _commit, {**common, "revision": revision}
        if action.startswith("xet-"):
            raise HubError(501, "This local test Hub does not implement Xet storage: set HF_HUB_DISABLE_XET=1 so that "
                                "huggingface_hub uploads and downloads through git LFS.")
    # git LFS batch API: /{prefix}{namespace}/{name}.git/info/lfs/objects/batch
    for repo_type, prefix in URL_PREFIXES.items():
        skip = 1 if prefix else 0
        if prefix and parts[0] != prefix.rstrip("/"):
            continue
        rest = parts[skip:]
        if len(rest) >= 2 and rest[1].endswith(".git") and rest[2:] == ["info", "lfs", "objects", "batch"]:
            return "lfs_batch", _lfs_batch, {"repo_type": repo_type, "repo_id": f"{rest[0]}/{rest[1][:-4]}"}
        if len(rest) >= 5 and rest[2] == "resolve" and method in ("GET", "HEAD"):
            args = {"repo_type": repo_type, "repo_id": f"{rest[0]}/{rest[1]}", "revision": rest[3],
                    "path": "/".join(rest[4:])}
            return "resolve", _resolve, args
    raise HubError(404, f"This local test Hub has no route for {method} /{'/'.join(parts)}.")


# -- endpoint handlers -------------------------------------------------------------------------------------------------
def _whoami(request: _Handler, hub: LocalHub, query: dict) -> None:
    user = request.server.owner.user
    request._json(200, {"type": "user", "id": user, "name": user, "fullname": user, "orgs": [],
                        "auth": {"type": "access_token", "accessToken": {"displayName": "local", "role": "write"}}})


def _validate_yaml(request: _Handler, hub: LocalHub, query: dict) -> None:
    import yaml

    content = request._json_body().get("content", "")
    match = re.match(r"^---\s*\n(.*?)\n---\s*(\n|$)", content, flags=re.DOTALL)
    errors = []
    if match:
        try:
            metadata = yaml.safe_load(match.group(1))
            if metadata is not None and not isinstance(metadata, dict):
                errors.append({"message": "the metadata block must be a YAML mapping"})
        except yaml.YAMLError as error:
            errors.append({"message": f"invalid YAML: {error}"})
    if errors:
        request._json(400, {"errors": errors}, {"X-Error-Message": errors[0]["message"]})
    else:
        request._json(200, {"errors": [], "warnings": []})


def _create_repo(request: _Handler, hub: LocalHub, query: dict) -> None:
    payload = request._json_body()
    namespace = payload.get("organization") or request.server.owner.user
    repo_type = payload.get("type") or "model"
    repo_id = f"{namespace}/{payload['name']}"
    private = payload.get("private") or payload.get("visibility") == "private"
    base = request.server.owner.endpoint
    answer = {"url": f"{base}/{URL_PREFIXES[repo_type]}{repo_id}", "name": repo_id, "id": repo_id}
    try:
        hub.create_repo(repo_type, repo_id, private=bool(private))
    except HubError as error:
        if error.status != 409:
            raise
        # as the Hub: the conflict answer still carries the url (create_repo(exist_ok=True) reads it)
        request._json(409, {**answer, "error": error.message}, {"X-Error-Message": error.message})
        return
    request._json(200, answer)


def _delete_repo(request: _Handler, hub: LocalHub, query: dict) -> None:
    payload = request._json_body()
    namespace = payload.get("organization") or request.server.owner.user
    hub.delete_repo(payload.get("type") or "model", f"{namespace}/{payload['name']}")
    request._json(200, {})


def _file_json(path: str, entry: dict) -> dict:
    item = {"type": "file", "path": path, "size": entry["size"], "oid": entry["oid"]}
    if entry["lfs"]:
        item["lfs"] = {"oid": entry["sha256"], "size": entry["size"],
                       "pointerSize": len(_lfs_pointer(entry["sha256"], entry["size"]))}
    return item


def _repo_info(request: _Handler, hub: LocalHub, query: dict, repo_type: str, repo_id: str, revision: str) -> None:
    commit, files = hub.snapshot(repo_type, repo_id, revision)
    state = hub.refs(repo_type, repo_id)
    author = repo_id.split("/")[0]
    request._json(200, {
        "_id": hashlib.sha1(repo_id.encode()).hexdigest()[:24], "id": repo_id, "modelId": repo_id, "author": author,
        "sha": commit, "private": state["private"], "disabled": False, "gated": False, "downloads": 0, "likes": 0,
        "tags": [], "createdAt": state["created"], "lastModified": state["commits"][commit]["date"],
        "siblings": [{"rfilename": path} for path in sorted(files)],
        "usedStorage": sum(entry["size"] for entry in files.values()),
    })


def _tree(request: _Handler, hub: LocalHub, query: dict, repo_type: str, repo_id: str, revision: str, path: str):
    _, files = hub.snapshot(repo_type, repo_id, revision)
    recursive = query.get("recursive", "false").lower() in ("1", "true")
    prefix = path.strip("/") + "/" if path.strip("/") else ""
    if prefix and prefix[:-1] in files:
        raise HubError(400, f"{path} is a file, not a folder.")
    entries, folders = [], set()
    for name in sorted(files):
        if not name.startswith(prefix):
            continue
        rest = name[len(prefix):]
        if "/" in rest:
            # every folder on the way (recursive) or the first one (not recursive)
            pieces = rest.split("/")[:-1]
            for depth in range(1, len(pieces) + 1 if recursive else 2):
                folders.add(prefix + "/".join(pieces[:depth]))
            if not recursive:
                continue
        entries.append(_file_json(name, files[name]))
    if prefix and not entries and not folders:
        raise HubError(404, f"Entry not found: {path}.", "EntryNotFound")
    entries += [{"type": "directory", "path": folder, "oid": hashlib.sha1(folder.encode()).hexdigest(), "size": 0}
                for folder in sorted(folders)]
    request._json(200, entries)


def _paths_info(request: _Handler, hub: LocalHub, query: dict, repo_type: str, repo_id: str, revision: str) -> None:
    body = request._body()
    if request.headers.get("Content-Type", "").startswith("application/json"):
        paths = json.loads(body or b"{}").get("paths", [])
    else:
        paths = parse_qs(body.decode()).get("paths", [])
    _, files = hub.snapshot(repo_type, repo_id, revision)
    found = []
    for path in paths:
        if path in files:
            found.append(_file_json(path, files[path]))
        elif any(name.startswith(path.rstrip("/") + "/") for name in files):
            found.append({"type": "directory", "path": path, "oid": hashlib.sha1(path.encode()).hexdigest(), "size": 0})
    request._json(200, found)


def _refs(request: _Handler, hub: LocalHub, query: dict, repo_type: str, repo_id: str) -> None:
    state = hub.refs(repo_type, repo_id)
    request._json(200, {
        "branches": [{"name": b, "ref": f"refs/heads/{b}", "targetCommit": c} for b, c in state["branches"].items()],
        "tags": [{"name": t, "ref": f"refs/tags/{t}", "targetCommit": c} for t, c in state["tags"].items()],
        "converts": [],
    })


def _commits(request: _Handler, hub: LocalHub, query: dict, repo_type: str, repo_id: str, revision: str) -> None:
    history = hub.history(repo_type, repo_id, revision)
    request._json(200, [
        {"id": oid, "title": c["title"], "message": c["message"], "date": c["date"],
         "authors": [{"user": repo_id.split("/")[0]}]}
        for oid, c in history
    ])


def _create_branch(request: _Handler, hub: LocalHub, query: dict, repo_type: str, repo_id: str, branch: str) -> None:
    payload = request._json_body()
    hub.create_branch(repo_type, repo_id, branch, payload.get("startingPoint"))
    request._json(200, {})


def _delete_branch(request: _Handler, hub: LocalHub, query: dict, repo_type: str, repo_id: str, branch: str) -> None:
    hub.delete_branch(repo_type, repo_id, branch)
    request._json(200, {})


def _create_tag(request: _Handler, hub: LocalHub, query: dict, repo_type: str, repo_id: str, revision: str) -> None:
    payload = request._json_body()
    hub.create_tag(repo_type, repo_id, payload["tag"], revision)
    request._json(200, {})


def _is_lfs(path: str, sample: bytes, size: int) -> bool:
    if path.endswith(_LFS_SUFFIXES) or size > 10 * 1024 * 1024:
        return True
    try:
        sample.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return b"\0" in sample


def _preupload(request: _Handler, hub: LocalHub, query: dict, repo_type: str, repo_id: str, revision: str) -> None:
    payload = request._json_body()
    _, files = hub.snapshot(repo_type, repo_id, revision)
    answer = []
    for item in payload.get("files", []):
        path, size = item["path"], int(item["size"])
        mode = "lfs" if _is_lfs(path, base64.b64decode(item.get("sample", "")), size) else "regular"
        existing = files.get(path)
        answer.append({"path": path, "uploadMode": mode, "shouldIgnore": False,
                       "oid": None if existing is None else existing["oid"]})
    request._json(200, {"files": answer, "commitOid": hub.snapshot(repo_type, repo_id, revision)[0]})


def _lfs_batch(request: _Handler, hub: LocalHub, query: dict, repo_type: str, repo_id: str) -> None:
    payload = request._json_body()
    if not hub.repo_exists(repo_type, repo_id):
        raise HubError(404, f"Repository Not Found: {repo_id}.", "RepoNotFound")
    if payload.get("operation") != "upload":
        raise HubError(400, "This local Hub serves LFS downloads through resolve/; the batch API takes uploads only.")
    base = request.server.owner.endpoint
    objects = []
    for obj in payload.get("objects", []):
        sha256, size = obj["oid"], int(obj["size"])
        entry = {"oid": sha256, "size": size, "authenticated": True}
        if not hub.has_blob(sha256, size):  # already stored: no action, the client skips the upload
            entry["actions"] = {"upload": {"href": f"{base}/lfs-upload/{sha256}/{size}", "header": {}}}
        objects.append(entry)
    request._send(200, json.dumps({"transfer": "basic", "objects": objects, "hash_algo": "sha256"}).encode(),
                  content_type="application/vnd.git-lfs+json")


def _lfs_upload(request: _Handler, hub: LocalHub, query: dict, sha256: str, size: int) -> None:
    length = int(request.headers.get("Content-Length") or 0)
    hub.receive_upload(sha256, size, request.rfile, length)
    request._send(200, b"")


def _commit(request: _Handler, hub: LocalHub, query: dict, repo_type: str, repo_id: str, revision: str) -> None:
    if query.get("create_pr"):
        raise HubError(400, "This local Hub does not implement pull requests (create_pr).")
    lines = [json.loads(line) for line in request._body().splitlines() if line.strip()]
    header = next((line["value"] for line in lines if line.get("key") == "header"), {})
    operations = [(line["key"], line["value"]) for line in lines if line.get("key") != "header"]
    oid = hub.commit(repo_type, repo_id, revision, header, operations)
    base = request.server.owner.endpoint
    request._json(200, {"commitUrl": f"{base}/{URL_PREFIXES[repo_type]}{repo_id}/commit/{oid}", "commitOid": oid,
                        "success": True, "pullRequestUrl": None})


def _resolve(request: _Handler, hub: LocalHub, query: dict, repo_type: str, repo_id: str, revision: str, path: str):
    commit, files = hub.snapshot(repo_type, repo_id, revision)
    if path not in files:
        raise HubError(404, f"Entry not found: {path} in {repo_id} at {revision}.", "EntryNotFound")
    entry = files[path]
    blob = hub.blob_path(entry["sha256"])
    size = entry["size"]
    headers = {"X-Repo-Commit": commit, "ETag": f'"{entry["sha256"] if entry["lfs"] else entry["oid"]}"',
               "Accept-Ranges": "bytes"}
    if entry["lfs"]:
        headers["X-Linked-Etag"] = f'"{entry["sha256"]}"'
        headers["X-Linked-Size"] = str(size)
    start, end, status = 0, size, 200
    match = re.fullmatch(r"bytes=(\d*)-(\d*)", request.headers.get("Range", "") or "")
    if match and request.command == "GET" and (match.group(1) or match.group(2)):
        if match.group(1):
            start = int(match.group(1))
            end = min(size, int(match.group(2)) + 1) if match.group(2) else size
        else:
            start = max(0, size - int(match.group(2)))
        status = 206
        headers["Content-Range"] = f"bytes {start}-{max(start, end - 1)}/{size}"
    request.send_response(status)
    request.send_header("Content-Type", "application/octet-stream")
    request.send_header("Content-Length", str(end - start))
    for key, value in headers.items():
        request.send_header(key, value)
    request.end_headers()
    if request.command == "GET":
        with open(blob, "rb") as handle:
            handle.seek(start)
            remaining = end - start
            while remaining > 0:
                chunk = handle.read(min(1 << 20, remaining))
                if not chunk:
                    break
                request.wfile.write(chunk)
                remaining -= len(chunk)


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
        server = _Server((self.host, self.port), _Handler)
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

    def _die(self, request: _Handler) -> None:
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
    import argparse
    import time

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


__all__ = ["LocalHub", "LocalHubServer", "HubError", "RecordedRequest", "git_blob_oid"]
