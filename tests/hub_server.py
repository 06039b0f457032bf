"""A small Hub-compatible HTTP server for tests (127.0.0.1 only, stdlib ``http.server``).

It implements the part of the Hugging Face Hub HTTP API that the real ``huggingface_hub`` client
(and timm / transformers through it) uses to create repos, commit files, and download them:

* ``GET  /api/whoami-v2``                                     token check (401 on a bad / missing token)
* ``POST /api/repos/create``                                  409 when the repo exists
* ``GET  /api/{type}s/{ns}/{name}[/revision/{rev}]``           repo info with ``sha`` and ``siblings`` (``?blobs=true``:
                                                               with size, blobId and lfs {sha256, size})
* ``GET  /api/{type}s?author=&search=&filter=&full=``          list repos (``filter``: card tags / library)
* ``POST /api/{type}s/{ns}/{name}/preupload/{rev}``            ``uploadMode: regular``, or ``lfs`` for names ending
                                                               in one of ``lfs_suffixes`` (opt-in)
* ``POST /{ns}/{name}.git/info/lfs/objects/batch``             LFS batch API (basic transfer): upload + verify
* ``PUT  /lfs-upload/{sha256}``, ``POST /lfs-verify``            LFS object upload (sha256 checked) and verify
* ``POST /api/{type}s/{ns}/{name}/commit/{rev}``               NDJSON header / file (base64) / lfsFile /
                                                               deletedFile / deletedFolder ops, applied atomically;
                                                               ``parentCommit`` checked (412 when stale);
                                                               ``?create_pr=1``: a pull request instead (below)
* ``POST /api/{type}s/{ns}/{name}/branch/{branch}``            create a branch
* ``GET  /api/{type}s/{ns}/{name}/tree/{rev}[/{path}]``        tree listing (``recursive``)
* ``POST /api/{type}s/{ns}/{name}/paths-info/{rev}``           per-path info
* ``POST /api/validate-yaml``                                  always valid
* ``GET|HEAD /[{type}s/]{ns}/{name}/resolve/{rev}/{path}``     file download with ETag, X-Repo-Commit,
                                                               Content-Length, a Content-Type by file name and
                                                               CORS ``*`` (a Space page can fetch a dataset
                                                               file); 404 + ``X-Error-Code``
                                                               ``RepoNotFound`` / ``RevisionNotFound`` /
                                                               ``EntryNotFound``

Pull requests (``create_commit(..., create_pr=True)``, as on the Hub): the commit is made on top of
``parentCommit`` (default: the head of ``{rev}``; no 412, a PR may start from an older commit), stored as the
new ref ``refs/pr/N`` (N = 1, 2, ... per repo) which every revision route resolves, and answered with
``pullRequestUrl`` = ``{url}/{ns}/{name}/discussions/N``; ``{rev}`` itself does not move. Opening a PR (and
its preupload) needs a valid token but not write access to the namespace, as on the Hub.
``server.pull_requests(repo_id)`` lists them.

Repos are keyed by (type, "namespace/name"); every commit has a sha1 id and a full file snapshot (file
contents are stored content-addressed under a temporary folder). Write endpoints need
``Authorization: Bearer <token>`` with the configured token (401 otherwise; 403 for a namespace the
token's user does not own). Private repos are only visible with the token.

Fault injection: ``server.fail_next(n, mode=..., path_contains=..., method=...)`` makes the next ``n``
matching requests fail. Modes: ``"500"`` / ``"503"`` / ``"429"`` (that status, with ``Retry-After: 0`` for
429) or ``"drop"`` (the connection is closed without an answer) — the request is read completely first and
never applied; ``"apply_then_500"`` / ``"apply_then_drop"`` — the request IS applied (a commit lands), then
its answer is lost; ``"corrupt"`` / ``"lose_file"`` (commits only) — the commit is applied and answered
200, but one uploaded regular file is stored with other content / left out (a storage fault the client can
only see by reading the revision back). Every request is recorded in ``server.requests`` as
``(method, path)``; ``server.count(path_contains, method)`` counts them. LFS tree entries carry
``lfs: {oid: sha256, size, pointerSize}`` as on the Hub.

Usage::

    with HubServer(token="hf_test_token", user="tester") as hub:
        env = {"HF_ENDPOINT": hub.url, "HF_TOKEN": "hf_test_token", "HF_HUB_DISABLE_XET": "1"}
"""

from __future__ import annotations

import base64
import hashlib
import json
import mimetypes
import os
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Dict, List, Optional, Tuple
from urllib.parse import parse_qs, unquote, urlsplit

__all__ = ["HubServer", "client_env", "git_blob_sha1"]

_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
_GITATTRIBUTES = b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n*.bin filter=lfs diff=lfs merge=lfs -text\n"


def client_env(hub: "HubServer", home, token: Optional[str] = None) -> Dict[str, str]:
    """Environment for a subprocess that talks to ``hub`` through huggingface_hub: this process's variables
    without HF_* / proxies, HF_ENDPOINT=hub.url, Xet off, online, a fresh HF_HOME, HF_TOKEN when given."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_", "TRANSFORMERS_"))}
    env.update(HF_ENDPOINT=hub.url, HF_HUB_DISABLE_XET="1", HF_HUB_OFFLINE="0", HF_DATASETS_OFFLINE="0",
               HF_HOME=str(home), HF_HUB_DISABLE_TELEMETRY="1", HF_HUB_ETAG_TIMEOUT="30",
               HF_HUB_DOWNLOAD_TIMEOUT="30", NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost")
    for k in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
        env.pop(k, None)
    if token is not None:
        env["HF_TOKEN"] = token
    return env


def git_blob_sha1(data: bytes) -> str:
    """The git object id of a blob (what the Hub returns as ``oid`` / ``ETag`` of regular files)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())


@dataclass
class Commit:
    oid: str
    parent: Optional[str]
    title: str
    date: str
    files: Dict[str, str]  # path -> blob sha1


@dataclass
class Repo:
    type: str
    repo_id: str
    private: bool
    created: str
    commits: Dict[str, Commit] = field(default_factory=dict)
    branches: Dict[str, str] = field(default_factory=dict)     # also the PR refs ``refs/pr/N``
    pull_requests: List[dict] = field(default_factory=list)      # {num, title, ref, target, base, author}

    def resolve(self, revision: str) -> Optional[Commit]:
        if revision in self.branches:
            return self.commits[self.branches[revision]]
        return self.commits.get(revision)


class _HubError(Exception):
    def __init__(self, status: int, message: str, code: Optional[str] = None):
        super().__init__(message)
        self.status, self.message, self.code = status, message, code


class HubServer:
    """The server: ``start()`` / ``stop()`` or a context manager; ``url`` is ``http://127.0.0.1:PORT``."""

    def __init__(self, token: str = "hf_test_token", user: str = "tester", orgs: Tuple[str, ...] = ("mimcl-org",),
                 storage: Optional[str] = None, lfs_suffixes: Tuple[str, ...] = ()):
        self.token, self.user, self.orgs = token, user, tuple(orgs)
        self.lfs_suffixes = tuple(lfs_suffixes)
        self.lfs_pointers: Dict[str, Tuple[str, int]] = {}  # pointer blob sha1 -> (sha256, size)
        self._local = threading.local()
        self._own_storage = storage is None
        self.storage = storage or tempfile.mkdtemp(prefix="hub_server_")
        os.makedirs(os.path.join(self.storage, "blobs"), exist_ok=True)
        os.makedirs(os.path.join(self.storage, "lfs"), exist_ok=True)
        self.repos: Dict[Tuple[str, str], Repo] = {}
        self.requests: List[Tuple[str, str]] = []
        self.unhandled: List[Tuple[str, str]] = []
        self._faults: List[list] = []  # [remaining, mode, path_contains]
        self.lock = threading.RLock()
        self._httpd: Optional[ThreadingHTTPServer] = None
        self._thread: Optional[threading.Thread] = None

    # ----------------------------------------------------------------- lifecycle
    def start(self) -> "HubServer":
        handler = type("Handler", (_Handler,), {"hub": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="hub-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._own_storage:
            shutil.rmtree(self.storage, ignore_errors=True)

    def __enter__(self) -> "HubServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._httpd is not None, "server not started"
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    # ----------------------------------------------------------------- test helpers
    FAULT_MODES = ("500", "503", "429", "drop", "apply_then_500", "apply_then_drop", "corrupt", "lose_file")

    def fail_next(self, n: int = 1, mode: str = "500", path_contains: str = "", method: Optional[str] = None,
                  skip: int = 0) -> None:
        """The next ``n`` requests whose path contains ``path_contains`` (and, if given, with that HTTP
        ``method``) fail in ``mode`` (see the module docstring), after ``skip`` such requests went through."""
        if mode not in self.FAULT_MODES:
            raise ValueError(f"mode must be one of {self.FAULT_MODES}, got {mode!r}")
        with self.lock:
            self._faults.append([int(n), mode, path_contains, method, int(skip)])

    def clear_faults(self) -> None:
        with self.lock:
            self._faults.clear()

    def count(self, path_contains: str, method: Optional[str] = None) -> int:
        """How many requests (of ``method``) whose path contains ``path_contains`` the server saw."""
        with self.lock:
            return sum(1 for m, p in self.requests if path_contains in p and (method is None or m == method))

    def reset_log(self) -> None:
        with self.lock:
            self.requests.clear()
            self.unhandled.clear()

    def repo(self, repo_id: str, repo_type: str = "model") -> Optional[Repo]:
        with self.lock:
            return self.repos.get((repo_type, repo_id))

    def files(self, repo_id: str, revision: str = "main", repo_type: str = "model") -> Dict[str, bytes]:
        """``{path: content}`` of a repo at a revision (empty dict when the repo does not exist)."""
        with self.lock:
            repo = self.repos.get((repo_type, repo_id))
            commit = repo.resolve(revision) if repo else None
            if commit is None:
                return {}
            return {p: self._content(oid) for p, oid in commit.files.items()}

    def pull_requests(self, repo_id: str, repo_type: str = "model") -> List[dict]:
        """The pull requests of a repo: ``{num, title, ref ("refs/pr/N"), target (branch), base (parent commit),
        author}`` each, oldest first."""
        with self.lock:
            repo = self.repos.get((repo_type, repo_id))
            return [dict(pr) for pr in (repo.pull_requests if repo else [])]

    def _take_fault(self, path: str, method: Optional[str] = None) -> Optional[str]:
        with self.lock:
            for fault in self._faults:
                if fault[0] > 0 and fault[2] in path and (fault[3] is None or fault[3] == method):
                    if fault[4] > 0:     # let this one through
                        fault[4] -= 1
                        continue
                    fault[0] -= 1
                    mode = fault[1]
                    self._faults = [f for f in self._faults if f[0] > 0]
                    return mode
        return None

    # ----------------------------------------------------------------- storage
    def _write_blob(self, data: bytes) -> str:
        oid = git_blob_sha1(data)
        path = os.path.join(self.storage, "blobs", oid)
        if not os.path.exists(path):
            tmp = path + f".tmp{threading.get_ident()}"
            with open(tmp, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        return oid

    def _read_blob(self, oid: str) -> bytes:
        with open(os.path.join(self.storage, "blobs", oid), "rb") as f:
            return f.read()

    def _blob_size(self, oid: str) -> int:
        if oid in self.lfs_pointers:
            return self.lfs_pointers[oid][1]
        return os.path.getsize(os.path.join(self.storage, "blobs", oid))

    # ----------------------------------------------------------------- LFS
    def _is_lfs(self, path: str) -> bool:
        return bool(self.lfs_suffixes) and path.endswith(self.lfs_suffixes)

    def _lfs_path(self, sha256: str) -> str:
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            raise _HubError(400, f"invalid LFS oid {sha256!r}")
        return os.path.join(self.storage, "lfs", sha256)

    def _lfs_pointer(self, sha256: str, size: int) -> str:
        """Store the git pointer blob of an LFS object; returns its sha1."""
        pointer = f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()
        oid = self._write_blob(pointer)
        self.lfs_pointers[oid] = (sha256, size)
        return oid

    def _content(self, oid: str) -> bytes:
        """A file's content: the LFS object behind a pointer, else the blob."""
        if oid in self.lfs_pointers:
            with open(self._lfs_path(self.lfs_pointers[oid][0]), "rb") as f:
                return f.read()
        return self._read_blob(oid)

    def _lfs_batch(self, body: bytes) -> Tuple[int, dict, bytes]:
        payload = json.loads(body or b"{}")
        objects = []
        for obj in payload.get("objects", []):
            oid, size = str(obj.get("oid")), int(obj.get("size", 0))
            entry = {"oid": oid, "size": size}
            if not os.path.exists(self._lfs_path(oid)):
                entry["actions"] = {"upload": {"href": f"{self.url}/lfs-upload/{oid}"},
                                    "verify": {"href": f"{self.url}/lfs-verify"}}
            objects.append(entry)
        return _json(200, {"transfer": "basic", "objects": objects})

    def _lfs_upload(self, oid: str, body: bytes) -> Tuple[int, dict, bytes]:
        if hashlib.sha256(body).hexdigest() != oid:
            raise _HubError(400, "the uploaded content does not match its sha256")
        path = self._lfs_path(oid)
        tmp = path + f".tmp{threading.get_ident()}"
        with open(tmp, "wb") as f:
            f.write(body)
        os.replace(tmp, path)
        return _json(200, {})

    def _new_commit(self, repo: Repo, parent: Optional[str], title: str, files: Dict[str, str]) -> Commit:
        payload = json.dumps([repo.type, repo.repo_id, parent, title, sorted(files.items()), time.time_ns()])
        oid = hashlib.sha1(payload.encode()).hexdigest()
        commit = Commit(oid=oid, parent=parent, title=title, date=_now_iso(), files=dict(files))
        repo.commits[oid] = commit
        return commit

    # ----------------------------------------------------------------- auth
    def user_for(self, headers) -> Optional[str]:
        auth = headers.get("Authorization") or ""
        if auth.startswith("Bearer ") and auth[len("Bearer "):].strip() == self.token:
            return self.user
        return None

    def _require_user(self, headers) -> str:
        auth = headers.get("Authorization") or ""
        if not auth:
            raise _HubError(401, "Invalid username or password.")
        user = self.user_for(headers)
        if user is None:
            raise _HubError(401, "Invalid credentials in Authorization header")
        return user

    def _require_write(self, headers, repo_id: str) -> None:
        self._require_user(headers)
        namespace = repo_id.split("/")[0]
        if namespace not in (self.user, *self.orgs):
            raise _HubError(403, f"You don't have the rights to create or write to {repo_id}", "Forbidden")

    def _get_repo(self, headers, repo_type: str, repo_id: str) -> Repo:
        repo = self.repos.get((repo_type, repo_id))
        if repo is None or (repo.private and self.user_for(headers) is None):
            raise _HubError(404, "Repository not found", "RepoNotFound")
        return repo

    def _get_commit(self, repo: Repo, revision: str) -> Commit:
        commit = repo.resolve(revision)
        if commit is None:
            raise _HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        return commit

    # ----------------------------------------------------------------- API
    def _repo_url(self, repo_type: str, repo_id: str) -> str:
        prefix = "" if repo_type == "model" else f"{repo_type}s/"
        return f"{self.url}/{prefix}{repo_id}"

    def _info(self, repo: Repo, commit: Commit, full: bool = True, blobs: bool = False) -> dict:
        readme = commit.files.get("README.md")
        info = {
            "_id": hashlib.sha1(repo.repo_id.encode()).hexdigest()[:24], "id": repo.repo_id,
            "modelId": repo.repo_id, "author": repo.repo_id.split("/")[0], "sha": commit.oid,
            "lastModified": commit.date, "createdAt": repo.created, "private": repo.private, "gated": False,
            "disabled": False, "downloads": 0, "likes": 0, "tags": [],
        }
        if full:
            info["siblings"] = [self._sibling(p, commit.files[p], blobs) for p in sorted(commit.files)]
            if readme is not None:
                info["cardData"] = _front_matter(self._read_blob(readme))
                info["tags"] = list(info["cardData"].get("tags") or []) if isinstance(info["cardData"], dict) else []
                if isinstance(info["cardData"], dict) and info["cardData"].get("library_name"):
                    info["library_name"] = info["cardData"]["library_name"]
        return info

    def _sibling(self, path: str, oid: str, blobs: bool) -> dict:
        """A ``siblings`` item; with ``?blobs=true`` (``files_metadata=True``) also size, blobId and LFS info."""
        if not blobs:
            return {"rfilename": path}
        out = {"rfilename": path, "size": self._blob_size(oid), "blobId": oid}
        if oid in self.lfs_pointers:
            sha256, size = self.lfs_pointers[oid]
            out["lfs"] = {"sha256": sha256, "size": size, "pointerSize": len(self._read_blob(oid))}
        return out

    def _entry(self, path: str, oid: str) -> dict:
        entry = {"type": "file", "path": path, "size": self._blob_size(oid), "oid": oid}
        if oid in self.lfs_pointers:
            sha256, size = self.lfs_pointers[oid]
            entry["lfs"] = {"oid": sha256, "size": size, "pointerSize": len(self._read_blob(oid))}
        return entry

    def handle(self, method: str, raw_path: str, headers, body: bytes) -> Tuple[int, dict, bytes]:
        url = urlsplit(raw_path)
        query = parse_qs(url.query)
        parts = [unquote(p) for p in url.path.split("/") if p]
        if parts[:1] == ["api"]:
            return self._api(method, parts[1:], query, headers, body)
        if parts[-4:] == ["info", "lfs", "objects", "batch"] and method == "POST":
            self._require_user(headers)
            return self._lfs_batch(body)
        if len(parts) == 2 and parts[0] == "lfs-upload" and method == "PUT":
            return self._lfs_upload(parts[1], body)
        if parts == ["lfs-verify"] and method == "POST":
            oid = json.loads(body or b"{}").get("oid", "")
            if not os.path.exists(self._lfs_path(oid)):
                raise _HubError(404, f"LFS object {oid} was not uploaded")
            return _json(200, {})
        return self._resolve(method, parts, headers)

    def _api(self, method, parts, query, headers, body):
        if parts == ["whoami-v2"] and method == "GET":
            user = self._require_user(headers)
            return _json(200, {"type": "user", "id": hashlib.sha1(user.encode()).hexdigest()[:24], "name": user,
                               "fullname": user, "orgs": [{"type": "org", "name": o} for o in self.orgs],
                               "auth": {"type": "access_token",
                                        "accessToken": {"displayName": "test", "role": "write"}}})
        if parts == ["validate-yaml"] and method == "POST":
            return _json(200, {"errors": [], "warnings": []})
        if parts == ["repos", "create"] and method == "POST":
            payload = json.loads(body or b"{}")
            repo_type = payload.get("type") or "model"
            name, org = payload.get("name"), payload.get("organization")
            if not name:
                raise _HubError(400, "name is required")
            repo_id = f"{org or self.user}/{name}"
            self._require_write(headers, repo_id)
            with self.lock:
                if (repo_type, repo_id) in self.repos:
                    return _json(409, {"error": "You already created this model repo",
                                       "url": self._repo_url(repo_type, repo_id)})
                repo = Repo(type=repo_type, repo_id=repo_id, private=payload.get("visibility") == "private"
                            or bool(payload.get("private")), created=_now_iso())
                first = self._new_commit(repo, None, "initial commit", {".gitattributes": self._write_blob(_GITATTRIBUTES)})
                repo.branches["main"] = first.oid
                self.repos[(repo_type, repo_id)] = repo
            return _json(200, {"url": self._repo_url(repo_type, repo_id), "name": repo_id, "id": repo_id})
        if not parts or parts[0] not in _TYPES:
            raise _HubError(404, f"unknown API route /api/{'/'.join(parts)}")
        repo_type = _TYPES[parts[0]]
        rest = parts[1:]
        if not rest and method == "GET":  # list
            return self._list(repo_type, query, headers)
        if len(rest) < 2:
            raise _HubError(404, "Repository not found", "RepoNotFound")
        repo_id, rest = f"{rest[0]}/{rest[1]}", rest[2:]
        with self.lock:
            repo = self._get_repo(headers, repo_type, repo_id)
            if not rest and method == "GET":
                return _json(200, self._info(repo, self._get_commit(repo, "main"), blobs=_flag(query, "blobs")))
            action = rest[0]
            if action == "revision" and len(rest) >= 2 and method == "GET":
                return _json(200, self._info(repo, self._get_commit(repo, "/".join(rest[1:])),
                                             blobs=_flag(query, "blobs")))
            if action == "tree" and len(rest) >= 2 and method == "GET":
                commit = self._get_commit(repo, rest[1])
                return _json(200, self._tree(commit, "/".join(rest[2:]), _flag(query, "recursive")))
            if action == "paths-info" and len(rest) >= 2 and method == "POST":
                commit = self._get_commit(repo, rest[1])
                form = parse_qs(body.decode()) if body else {}
                if not form and body:
                    form = {"paths": json.loads(body).get("paths", [])}
                out = []
                for p in form.get("paths", []):
                    if p in commit.files:
                        out.append(self._entry(p, commit.files[p]))
                    elif any(f.startswith(p.rstrip("/") + "/") for f in commit.files):
                        out.append({"type": "directory", "path": p.rstrip("/"), "oid": "0" * 40, "size": 0})
                return _json(200, out)
            if action == "preupload" and len(rest) >= 2 and method == "POST":
                if _flag(query, "create_pr"):        # opening a PR needs no write access (as on the Hub)
                    self._require_user(headers)
                else:
                    self._require_write(headers, repo_id)
                commit = self._get_commit(repo, rest[1]) if rest[1] in repo.branches else None
                files = json.loads(body or b"{}").get("files", [])
                out = []
                for f in files:
                    lfs = self._is_lfs(f["path"]) and int(f.get("size") or 0) > 0
                    oid = commit.files.get(f["path"]) if commit else None
                    if lfs and oid is not None:   # the Hub answers an LFS file's sha256 as its oid
                        oid = self.lfs_pointers.get(oid, (None,))[0]
                    out.append({"path": f["path"], "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False,
                                "oid": oid})
                return _json(200, {"files": out})
            if action == "commit" and len(rest) >= 2 and method == "POST":
                create_pr = _flag(query, "create_pr")
                if create_pr:
                    author = self._require_user(headers)
                else:
                    author = None
                    self._require_write(headers, repo_id)
                return self._commit(repo, "/".join(rest[1:]), body, create_pr=create_pr, author=author)
            if action == "branch" and len(rest) >= 2 and method == "POST":
                self._require_write(headers, repo_id)
                branch = "/".join(rest[1:])
                if branch in repo.branches:
                    raise _HubError(409, f"Branch {branch} already exists")
                start = json.loads(body or b"{}").get("startingPoint") or "main"
                repo.branches[branch] = self._get_commit(repo, start).oid
                return _json(200, {})
        raise _HubError(404, f"unknown API route /api/{'/'.join(parts)}")

    def _list(self, repo_type, query, headers):
        author = (query.get("author") or [None])[0]
        search = (query.get("search") or [""])[0].lower()
        wanted_tags = set(query.get("filter") or [])
        full = _flag(query, "full") or "cardData" in query
        limit = int((query.get("limit") or ["1000"])[0])
        out = []
        with self.lock:
            for (t, repo_id), repo in sorted(self.repos.items()):
                if t != repo_type or (repo.private and self.user_for(headers) is None):
                    continue
                if author and repo_id.split("/")[0] != author:
                    continue
                if search and search not in repo_id.lower():
                    continue
                info = self._info(repo, repo.commits[repo.branches["main"]], full=True)
                if not wanted_tags <= set(info["tags"]) | {info.get("library_name")}:
                    continue
                out.append(info if full else self._info(repo, repo.commits[repo.branches["main"]], full=False))
        return _json(200, out[:limit])

    def _tree(self, commit: Commit, prefix: str, recursive: bool) -> list:
        prefix = prefix.strip("/")
        base = prefix + "/" if prefix else ""
        files = {p: o for p, o in commit.files.items() if p.startswith(base)}
        if prefix and not files:
            raise _HubError(404, f"{prefix} does not exist", "EntryNotFound")
        entries, folders = [], set()
        for path, oid in sorted(files.items()):
            rel = path[len(base):]
            segments = rel.split("/")
            for i in range(1, len(segments)):
                if recursive or i == 1:
                    folders.add(base + "/".join(segments[:i]))
            if recursive or len(segments) == 1:
                entries.append(self._entry(path, oid))
        entries += [{"type": "directory", "path": f, "oid": hashlib.sha1(f.encode()).hexdigest(), "size": 0}
                    for f in sorted(folders)]
        return entries

    def _commit(self, repo: Repo, revision: str, body: bytes, create_pr: bool = False, author: Optional[str] = None):
        # parse and validate everything first: a commit is applied whole or not at all
        lines = [json.loads(line) for line in body.splitlines() if line.strip()]
        if not lines or lines[0].get("key") != "header":
            raise _HubError(400, "the first NDJSON line must be the commit header")
        header = lines[0]["value"]
        if revision not in repo.branches:
            raise _HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        head = repo.commits[repo.branches[revision]]
        parent = header.get("parentCommit")
        if create_pr and parent:             # a PR starts from its parent commit, however old
            if parent not in repo.commits:
                raise _HubError(404, f"Invalid rev id: {parent}", "RevisionNotFound")
            head = repo.commits[parent]
        elif parent and parent != head.oid:
            raise _HubError(412, "A commit has happened since. Please refresh and try again.")
        files = dict(head.files)
        added = []
        for op in lines[1:]:
            key, value = op.get("key"), op.get("value") or {}
            path = str(value.get("path", "")).lstrip("/")
            if not path or ".." in path.split("/"):
                raise _HubError(400, f"invalid path {path!r}")
            if key == "file":
                if value.get("encoding") != "base64":
                    raise _HubError(400, f"unsupported encoding {value.get('encoding')!r}")
                files[path] = self._write_blob(base64.b64decode(value["content"]))
                added.append(path)
            elif key == "lfsFile":
                sha256 = str(value.get("oid", ""))
                if value.get("algo", "sha256") != "sha256" or not os.path.exists(self._lfs_path(sha256)):
                    raise _HubError(422, f"LFS object {sha256} for {path} was not uploaded")
                files[path] = self._lfs_pointer(sha256, os.path.getsize(self._lfs_path(sha256)))
            elif key == "deletedFile":
                if path not in files:
                    raise _HubError(404, f"A file with this name doesn't exist: {path}", "EntryNotFound")
                del files[path]
            elif key == "deletedFolder":
                files = {p: o for p, o in files.items() if not p.startswith(path.rstrip("/") + "/")}
            else:
                raise _HubError(400, f"unsupported commit operation {key!r}")
        tamper = getattr(self._local, "tamper", None)
        if tamper and added:             # injected storage fault: the client is told the commit succeeded
            victim = sorted(added)[0]
            if tamper == "corrupt":
                files[victim] = self._write_blob(self._read_blob(files[victim]) + b"\n<corrupted>")
            elif tamper == "lose_file":
                del files[victim]
        commit = self._new_commit(repo, head.oid, header.get("summary") or "", files)
        prefix = "" if repo.type == "model" else f"{repo.type}s/"
        answer = {"success": True, "commitOid": commit.oid,
                  "commitUrl": f"{self.url}/{prefix}{repo.repo_id}/commit/{commit.oid}", "pullRequestUrl": None}
        if create_pr:
            num = len(repo.pull_requests) + 1
            ref = f"refs/pr/{num}"
            repo.branches[ref] = commit.oid
            repo.pull_requests.append({"num": num, "title": commit.title, "ref": ref, "target": revision,
                                       "base": head.oid, "author": author})
            answer["pullRequestUrl"] = f"{self._repo_url(repo.type, repo.repo_id)}/discussions/{num}"
        else:
            repo.branches[revision] = commit.oid
        return _json(200, answer)

    def _resolve(self, method, parts, headers):
        repo_type = "model"
        if parts and parts[0] in _TYPES and parts[0] != "models":
            repo_type, parts = _TYPES[parts[0]], parts[1:]
        if len(parts) < 5 or parts[2] != "resolve" or method not in ("GET", "HEAD"):
            raise _HubError(404, "not found")
        repo_id, revision, path = f"{parts[0]}/{parts[1]}", parts[3], "/".join(parts[4:])
        with self.lock:
            repo = self._get_repo(headers, repo_type, repo_id)
            commit = self._get_commit(repo, revision)
            oid = commit.files.get(path)
            if oid is None:
                raise _HubError(404, "Entry not found", "EntryNotFound")
            data = self._content(oid)
            etag = self.lfs_pointers[oid][0] if oid in self.lfs_pointers else oid  # LFS: the sha256, as on the Hub
        content_type = mimetypes.guess_type(path)[0] or "application/octet-stream"
        return 200, {"ETag": f'"{etag}"', "X-Repo-Commit": commit.oid, "Content-Type": content_type,
                     "Access-Control-Allow-Origin": "*", "Accept-Ranges": "bytes",
                     "Last-Modified": formatdate(usegmt=True)}, data


def _flag(query, name: str) -> bool:
    return (query.get(name) or ["false"])[0].lower() in ("1", "true", "yes")


def _front_matter(readme: bytes) -> dict:
    text = readme.decode("utf-8", "replace")
    if not text.startswith("---"):
        return {}
    end = text.find("\n---", 3)
    if end < 0:
        return {}
    try:
        import yaml

        data = yaml.safe_load(text[3:end])
        return data if isinstance(data, dict) else {}
    except Exception:
        return {}


def _json(status: int, payload) -> Tuple[int, dict, bytes]:
    return status, {"Content-Type": "application/json"}, json.dumps(payload).encode()


class _Handler(BaseHTTPRequestHandler):
    hub: HubServer
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # quiet
        pass

    def _serve(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        with self.hub.lock:
            self.hub.requests.append((method, self.path))
        fault = self.hub._take_fault(self.path, method)
        if fault == "drop":
            self._drop()
            return
        if fault in ("500", "503", "429"):
            status, headers, data = _json(int(fault), {"error": f"injected HTTP {fault}"})
            if fault == "429":
                headers["Retry-After"] = "0"
        else:
            self.hub._local.tamper = fault if fault in ("corrupt", "lose_file") else None
            try:
                status, headers, data = self.hub.handle(method, self.path, self.headers, body)
            except _HubError as e:
                status, headers, data = _json(e.status, {"error": e.message})
                if e.code:
                    headers["X-Error-Code"] = e.code
                headers["X-Error-Message"] = e.message
                if e.status == 404 and e.code is None:
                    with self.hub.lock:
                        self.hub.unhandled.append((method, self.path))
            except Exception as e:  # a bug in this test server: answer 500 and keep the details
                status, headers, data = _json(500, {"error": f"{type(e).__name__}: {e}"})
                with self.hub.lock:
                    self.hub.unhandled.append((method, self.path))
            finally:
                self.hub._local.tamper = None
            if fault == "apply_then_drop":       # applied, but the answer never arrives
                self._drop()
                return
            if fault == "apply_then_500":
                status, headers, data = _json(500, {"error": "injected HTTP 500 after the request was applied"})
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if method != "HEAD":
            self.wfile.write(data)

    def _drop(self) -> None:
        self.close_connection = True
        try:
            self.connection.shutdown(2)
        except OSError:
            pass

    def do_GET(self):
        self._serve("GET")

    def do_HEAD(self):
        self._serve("HEAD")

    def do_POST(self):
        self._serve("POST")

    def do_PUT(self):
        self._serve("PUT")

    def do_DELETE(self):
        self._serve("DELETE")
