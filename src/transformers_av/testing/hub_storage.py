"""The storage and the Hub semantics of [`LocalHubServer`] (repositories, commits, branches, tags), independent of
HTTP.

Content lives on disk under `root`: blobs addressed by sha256 and one JSON state file per repository, written
atomically, so a server that is stopped or killed and started again on the same `root` still has every completed
commit, and a commit is all or nothing (files are visible only once their commit is recorded).
"""

from __future__ import annotations

import base64
import datetime as _datetime
import hashlib
import json
import os
import re
import shutil
import tempfile
import threading
from pathlib import Path

# what the Hub writes as the first commit of a repository: binary weights and media go through git LFS
GITATTRIBUTES = (
    "*.bin filter=lfs diff=lfs merge=lfs -text\n"
    "*.pt filter=lfs diff=lfs merge=lfs -text\n"
    "*.safetensors filter=lfs diff=lfs merge=lfs -text\n"
    "*.model filter=lfs diff=lfs merge=lfs -text\n"
    "*.mp4 filter=lfs diff=lfs merge=lfs -text\n"
)


class HubError(Exception):
    """An HTTP error answered to the client, with the `X-Error-Code` huggingface_hub maps to its exceptions."""

    def __init__(self, status: int, message: str, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.code = status, message, code


def git_blob_oid(content: bytes) -> str:
    """The git object id of a blob (what the Hub reports as a regular file's `oid` / ETag)."""
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    """The git-LFS pointer file that stands for an LFS object in git (its git oid is the file's `oid`)."""
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
                    entry = {"sha256": sha256, "size": size, "lfs": True, "oid": git_blob_oid(lfs_pointer(sha256, size))}
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


__all__ = ["GITATTRIBUTES", "HubError", "LocalHub", "git_blob_oid", "lfs_pointer"]
