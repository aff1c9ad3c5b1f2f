"""The HTTP API of [`LocalHubServer`]: which route a request takes ([`route`]) and the endpoint handlers that
answer it as the Hub does, over a [`LocalHub`].

Routes: whoami, YAML validation, repository create / delete / info, tree, paths-info, refs, commits, branches, tags,
preupload, the NDJSON commit, the git-LFS batch API with a basic PUT transfer, and `resolve/<revision>/<path>`
(HEAD, GET and byte ranges, with the `X-Repo-Commit`, `ETag`, `X-Linked-Etag` and `X-Linked-Size` headers).
Xet storage is not implemented: a Xet request gets a 501 saying so.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from typing import TYPE_CHECKING
from urllib.parse import parse_qs

import yaml  # a dependency of huggingface_hub

from .hub_storage import HubError, LocalHub, lfs_pointer

if TYPE_CHECKING:
    from .hub_server import HubRequestHandler

REPO_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
URL_PREFIXES = {"model": "", "dataset": "datasets/", "space": "spaces/"}
_LFS_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".model", ".msgpack", ".h5", ".onnx", ".mp4", ".wav")


def route(method: str, parts: list[str]):
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
def _whoami(request: HubRequestHandler, hub: LocalHub, query: dict) -> None:
    user = request.server.owner.user
    request.send_json(200, {"type": "user", "id": user, "name": user, "fullname": user, "orgs": [],
                            "auth": {"type": "access_token", "accessToken": {"displayName": "local", "role": "write"}}})


def _validate_yaml(request: HubRequestHandler, hub: LocalHub, query: dict) -> None:
    content = request.read_json().get("content", "")
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
        request.send_json(400, {"errors": errors}, {"X-Error-Message": errors[0]["message"]})
    else:
        request.send_json(200, {"errors": [], "warnings": []})


def _create_repo(request: HubRequestHandler, hub: LocalHub, query: dict) -> None:
    payload = request.read_json()
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
        request.send_json(409, {**answer, "error": error.message}, {"X-Error-Message": error.message})
        return
    request.send_json(200, answer)


def _delete_repo(request: HubRequestHandler, hub: LocalHub, query: dict) -> None:
    payload = request.read_json()
    namespace = payload.get("organization") or request.server.owner.user
    hub.delete_repo(payload.get("type") or "model", f"{namespace}/{payload['name']}")
    request.send_json(200, {})


def _file_json(path: str, entry: dict) -> dict:
    item = {"type": "file", "path": path, "size": entry["size"], "oid": entry["oid"]}
    if entry["lfs"]:
        item["lfs"] = {"oid": entry["sha256"], "size": entry["size"],
                       "pointerSize": len(lfs_pointer(entry["sha256"], entry["size"]))}
    return item


def _repo_info(request: HubRequestHandler, hub: LocalHub, query: dict,
               repo_type: str, repo_id: str, revision: str) -> None:
    commit, files = hub.snapshot(repo_type, repo_id, revision)
    state = hub.refs(repo_type, repo_id)
    author = repo_id.split("/")[0]
    request.send_json(200, {
        "_id": hashlib.sha1(repo_id.encode()).hexdigest()[:24], "id": repo_id, "modelId": repo_id, "author": author,
        "sha": commit, "private": state["private"], "disabled": False, "gated": False, "downloads": 0, "likes": 0,
        "tags": [], "createdAt": state["created"], "lastModified": state["commits"][commit]["date"],
        "siblings": [{"rfilename": path} for path in sorted(files)],
        "usedStorage": sum(entry["size"] for entry in files.values()),
    })


def _tree(request: HubRequestHandler, hub: LocalHub, query: dict,
          repo_type: str, repo_id: str, revision: str, path: str):
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
    request.send_json(200, entries)


def _paths_info(request: HubRequestHandler, hub: LocalHub, query: dict,
                repo_type: str, repo_id: str, revision: str) -> None:
    body = request.read_body()
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
    request.send_json(200, found)


def _refs(request: HubRequestHandler, hub: LocalHub, query: dict, repo_type: str, repo_id: str) -> None:
    state = hub.refs(repo_type, repo_id)
    request.send_json(200, {
        "branches": [{"name": b, "ref": f"refs/heads/{b}", "targetCommit": c} for b, c in state["branches"].items()],
        "tags": [{"name": t, "ref": f"refs/tags/{t}", "targetCommit": c} for t, c in state["tags"].items()],
        "converts": [],
    })


def _commits(request: HubRequestHandler, hub: LocalHub, query: dict,
             repo_type: str, repo_id: str, revision: str) -> None:
    history = hub.history(repo_type, repo_id, revision)
    request.send_json(200, [
        {"id": oid, "title": c["title"], "message": c["message"], "date": c["date"],
         "authors": [{"user": repo_id.split("/")[0]}]}
        for oid, c in history
    ])


def _create_branch(request: HubRequestHandler, hub: LocalHub, query: dict,
                   repo_type: str, repo_id: str, branch: str) -> None:
    payload = request.read_json()
    hub.create_branch(repo_type, repo_id, branch, payload.get("startingPoint"))
    request.send_json(200, {})


def _delete_branch(request: HubRequestHandler, hub: LocalHub, query: dict,
                   repo_type: str, repo_id: str, branch: str) -> None:
    hub.delete_branch(repo_type, repo_id, branch)
    request.send_json(200, {})


def _create_tag(request: HubRequestHandler, hub: LocalHub, query: dict,
                repo_type: str, repo_id: str, revision: str) -> None:
    payload = request.read_json()
    hub.create_tag(repo_type, repo_id, payload["tag"], revision)
    request.send_json(200, {})


def _is_lfs(path: str, sample: bytes, size: int) -> bool:
    if path.endswith(_LFS_SUFFIXES) or size > 10 * 1024 * 1024:
        return True
    try:
        sample.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return b"\0" in sample


def _preupload(request: HubRequestHandler, hub: LocalHub, query: dict,
               repo_type: str, repo_id: str, revision: str) -> None:
    payload = request.read_json()
    _, files = hub.snapshot(repo_type, repo_id, revision)
    answer = []
    for item in payload.get("files", []):
        path, size = item["path"], int(item["size"])
        mode = "lfs" if _is_lfs(path, base64.b64decode(item.get("sample", "")), size) else "regular"
        existing = files.get(path)
        answer.append({"path": path, "uploadMode": mode, "shouldIgnore": False,
                       "oid": None if existing is None else existing["oid"]})
    request.send_json(200, {"files": answer, "commitOid": hub.snapshot(repo_type, repo_id, revision)[0]})


def _lfs_batch(request: HubRequestHandler, hub: LocalHub, query: dict, repo_type: str, repo_id: str) -> None:
    payload = request.read_json()
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
    request.send_bytes(200, json.dumps({"transfer": "basic", "objects": objects, "hash_algo": "sha256"}).encode(),
                       content_type="application/vnd.git-lfs+json")


def _lfs_upload(request: HubRequestHandler, hub: LocalHub, query: dict, sha256: str, size: int) -> None:
    length = int(request.headers.get("Content-Length") or 0)
    hub.receive_upload(sha256, size, request.rfile, length)
    request.send_bytes(200, b"")


def _commit(request: HubRequestHandler, hub: LocalHub, query: dict,
            repo_type: str, repo_id: str, revision: str) -> None:
    if query.get("create_pr"):
        raise HubError(400, "This local Hub does not implement pull requests (create_pr).")
    lines = [json.loads(line) for line in request.read_body().splitlines() if line.strip()]
    header = next((line["value"] for line in lines if line.get("key") == "header"), {})
    operations = [(line["key"], line["value"]) for line in lines if line.get("key") != "header"]
    oid = hub.commit(repo_type, repo_id, revision, header, operations)
    base = request.server.owner.endpoint
    request.send_json(200, {"commitUrl": f"{base}/{URL_PREFIXES[repo_type]}{repo_id}/commit/{oid}", "commitOid": oid,
                            "success": True, "pullRequestUrl": None})


def _resolve(request: HubRequestHandler, hub: LocalHub, query: dict,
             repo_type: str, repo_id: str, revision: str, path: str):
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


__all__ = ["REPO_TYPES", "URL_PREFIXES", "route"]
