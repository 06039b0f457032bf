"""Upload an encoder folder (written by :func:`mimcl_hub.hub.save_encoder`) to the Hugging Face Hub.

``push_encoder(folder, "org/name")`` checks everything it can locally first (the folder is an encoder
folder, every file in it really lies inside it, the repo id is valid) so bad input fails before any
request, then, through ``huggingface_hub.HfApi``:

1. ``create_repo(exist_ok=True)`` (and ``create_branch(exist_ok=True)`` for a ``revision`` other than main);
2. reads the branch head and its file tree (with content hashes); when the repo already holds exactly the
   folder, nothing is committed (a push is idempotent);
3. ONE ``create_commit`` on top of that head (``parent_commit``) holding every changed file of the folder,
   plus the deletion of files the repo has at that revision but the folder does not (``.gitattributes``
   kept): the Hub applies a commit whole or not at all, so a half-uploaded encoder is never visible and the
   repo mirrors the folder;
4. verifies the commit: the tree of the new revision must hold every file with the right content hash
   (git blob sha1 for regular files, the LFS sha256 for LFS files) and nothing else; only then is the
   commit URL returned.

Faults: every request (each step above) is retried on HTTP 408 / 429 / 5xx, dropped connections and
timeouts, with exponential backoff + jitter (``backoff`` · 2^(attempt-1) · U(0.5, 1), capped at 30 s; a 429's
``Retry-After`` is honoured up to the cap), at most ``max_retries`` times; never on other 4xx. A commit
whose answer was lost (the Hub applied it, the connection dropped) is not committed twice: the retry reads
the head again and finds the folder already there (step 2), or the Hub refuses the stale ``parent_commit``
(HTTP 412) and the push re-plans from the new head. ``max_retries`` / ``backoff`` default to the
environment variables ``MIMCL_PUSH_MAX_RETRIES`` (4) and ``MIMCL_PUSH_BACKOFF`` (1.0 s).

Pull requests (``create_pr=True``): the same single commit is sent with the Hub's ``create_pr=1``, so it
lands on a new ``refs/pr/N`` opened against ``revision`` (which does not move) and the pull request's URL is
returned; step 1 does not create anything (the repo and branch must exist: anyone may open a PR on a repo
they cannot write to). That commit is never re-sent after a fault that may have reached the Hub (each send
would open another PR): the error says to look at the repo's pull requests first. A folder the branch
already holds opens no PR (the commit URL of the head is returned, as above).

``parent_commit``: plan and commit on top of that commit instead of the branch head, e.g. the revision an
evaluation read. Without ``create_pr`` a branch that has moved past it is an error (:class:`StaleRevisionError`,
nothing committed, nothing overwritten); with it the pull request starts from that commit.

``upload_folder`` is not used on purpose: with ``hf_xet`` installed it may split a folder into several
commits. ``HF_ENDPOINT`` and ``HF_TOKEN`` are honoured (read at call time); ``endpoint=`` / ``token=``
override them. Every failure is a :class:`PushError` naming the repo, and for 401/403 the (masked) token.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence, TypeVar, Union

from .http_errors import chain as _chain, http_status as _status, is_http_library_error, is_transient

__all__ = ["ENCODER_FILES", "PushError", "RetryPolicy", "StaleRevisionError", "git_blob_sha1", "is_transient",
           "mask_token", "push_encoder", "push_folder"]

logger = logging.getLogger(__name__)
T = TypeVar("T")

#: Files every encoder folder has (see :func:`mimcl_hub.hub.save_encoder`).
ENCODER_FILES = ("config.json", "model.safetensors", "README.md")

_SKIP_DIRS = {".git", ".cache", "__pycache__"}


class PushError(ValueError, RuntimeError):
    """Pushing an encoder folder to the Hub failed (bad folder / repo id / token, or a network / Hub error).

    A ``ValueError`` (bad input, the CLI answers exit code 2) and a ``RuntimeError`` (what the training loop
    raised before)."""


class StaleRevisionError(PushError):
    """The branch moved past ``parent_commit`` (someone else committed in between): nothing was committed."""


def mask_token(token: Optional[str]) -> str:
    """``'hf_…abcd'`` (prefix up to the first ``_`` and the last 4 characters), or ``'no token'``."""
    if not token:
        return "no token"
    token = str(token)
    if len(token) < 10:
        return "…" + token[-2:]
    prefix = token.split("_", 1)[0] + "_" if "_" in token[:5] else token[:2]
    return f"{prefix}…{token[-4:]}"


def _check_folder(folder: Union[str, os.PathLike]) -> Path:
    path = Path(folder)
    if not path.exists():
        raise PushError(f"cannot push {path}: it does not exist (save an encoder with mimcl_hub.hub.save_encoder "
                        "or `mimcl train` first)")
    if not path.is_dir():
        raise PushError(f"cannot push {path}: not a folder (expected an encoder folder with "
                        f"{', '.join(ENCODER_FILES)})")
    missing = [name for name in ENCODER_FILES if not (path / name).is_file()]
    if missing:
        raise PushError(f"cannot push {path}: not an encoder folder, missing {', '.join(missing)} "
                        f"(an encoder folder has {', '.join(ENCODER_FILES)}; see mimcl_hub.hub.save_encoder)")
    try:
        config = json.loads((path / "config.json").read_text())
    except (OSError, ValueError) as e:
        raise PushError(f"cannot push {path}: config.json is not valid JSON ({e})") from e
    if not isinstance(config, dict) or "architecture" not in config:
        raise PushError(f"cannot push {path}: config.json has no 'architecture' (not a timm encoder config)")
    from .loading import check_encoder_folder

    try:            # what everyone who downloads it will check: never publish an encoder that cannot load
        check_encoder_folder(path, check_values=True)
    except (ValueError, OSError) as e:
        raise PushError(f"cannot push {path}: it would not load ({e})") from e
    return path


def _is_branch_name(name: str) -> bool:
    """``git check-ref-format --branch`` rules, checked before any request (``refs/pr/N`` is accepted: the Hub's
    pull-request refs)."""
    import re

    if name.startswith(("/", "-", ".")) or name.endswith(("/", ".", ".lock")) or name == "@":
        return False
    if ".." in name or "//" in name or "@{" in name or "/." in name:
        return False
    return not re.search(r"[\x00-\x20\x7f~^:?*\[\\]", name)


def _check_repo_id(repo_id: str) -> str:
    from .._safety import check_repo_id

    try:
        return check_repo_id(repo_id)
    except ValueError as e:
        raise PushError(str(e)) from e


def _local_files(folder: Path, exclude: Sequence[str] = ()) -> list[str]:
    """Every file under ``folder`` (POSIX names) except the top-level entries named in ``exclude``, refusing links
    that lead outside it: a symlink to ``~/.ssh/id_rsa`` inside an encoder folder must never be uploaded."""
    from .._safety import is_within

    files = []
    for root, dirs, names in os.walk(folder):
        top = Path(root) == folder
        dirs[:] = sorted(d for d in dirs if d not in _SKIP_DIRS and not (top and d in exclude))
        names = [n for n in names if not (top and n in exclude)]
        for d in dirs:
            if not is_within(Path(root) / d, folder):
                raise PushError(f"cannot push {folder}: {Path(root) / d} links outside the folder "
                                f"(to {os.path.realpath(Path(root) / d)}); copy the files in instead")
        for name in sorted(names):
            path = Path(root) / name
            if not is_within(path, folder):
                raise PushError(f"cannot push {folder}: {path} links outside the folder (to {os.path.realpath(path)}); "
                                "copy the file in instead")
            if not path.is_file():
                raise PushError(f"cannot push {folder}: {path} is not a regular file")
            files.append(path.relative_to(folder).as_posix())
    return files


def git_blob_sha1(data: bytes) -> str:
    """The git object id of a blob: what the Hub reports as a regular file's ``oid``."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass(frozen=True)
class _Digest:
    size: int
    sha1: str    # git blob id
    sha256: str  # LFS oid


def _file_digest(path: Path, chunk: int = 1 << 20) -> _Digest:
    """Size, git blob id and sha256 of one file, read in 1 MiB chunks: a folder holding a file larger than the
    memory (a stray checkpoint) is hashed, not loaded (``huggingface_hub`` streams the upload from the path too)."""
    size = path.stat().st_size
    sha1 = hashlib.sha1(b"blob %d\0" % size)
    sha256 = hashlib.sha256()
    read = 0
    with open(path, "rb") as f:
        while block := f.read(chunk):
            sha1.update(block)
            sha256.update(block)
            read += len(block)
    if read != size:
        raise PushError(f"cannot push {path}: it changed size while it was read ({size} then {read} bytes)")
    return _Digest(size, sha1.hexdigest(), sha256.hexdigest())


def _digests(folder: Path, files: list[str]) -> dict[str, _Digest]:
    return {name: _file_digest(folder / name) for name in files}


def _matches(entry, digest: _Digest) -> bool:
    """Does a remote file (``RepoSibling`` / ``RepoFile``) hold exactly this content?"""
    lfs = getattr(entry, "lfs", None)
    if lfs is not None:
        sha256 = lfs.get("sha256") if isinstance(lfs, dict) else getattr(lfs, "sha256", None)
        size = getattr(entry, "size", None)
        return sha256 == digest.sha256 and (size is None or int(size) == digest.size)
    return getattr(entry, "blob_id", None) == digest.sha1


def _differences(remote: dict, local: dict[str, _Digest], mirror: bool = True) -> list[str]:
    """What keeps ``remote`` (path -> RepoFile) from holding ``local``: missing / different files and, when
    ``mirror``, extra ones."""
    problems = [f"{name} missing" for name in sorted(set(local) - set(remote))]
    problems += [f"{name} has other content" for name in sorted(set(local) & set(remote))
                 if not _matches(remote[name], local[name])]
    if mirror:
        problems += [f"{name} not in the folder" for name in sorted(set(remote) - set(local))
                     if name != ".gitattributes"]
    return problems


# ------------------------------------------------------------------------------------------------------- retries

_BACKOFF_CAP = 30.0


def _from_env(name: str, default: str, cast, expected: str):
    """``cast`` of environment variable ``name`` (``default`` when unset); a PushError naming it otherwise."""
    raw = os.environ.get(name, default)
    try:
        return cast(raw)
    except ValueError:
        raise PushError(f"{name} must be {expected}, got {raw!r}") from None


@dataclass
class RetryPolicy:
    """``max_retries`` retries after the first attempt; the n-th waits ``min(cap, backoff * 2**(n-1))`` times
    a jitter in [0.5, 1)."""

    max_retries: int = 4
    backoff: float = 1.0
    cap: float = _BACKOFF_CAP
    attempts: dict = field(default_factory=dict)  # what -> attempts made (reported in errors and logs)
    last: str = ""                                  # the step tried last

    @classmethod
    def resolve(cls, max_retries: Optional[int], backoff: Optional[float]) -> "RetryPolicy":
        from .._safety import check_number

        if max_retries is None:
            max_retries = _from_env("MIMCL_PUSH_MAX_RETRIES", "4", int, "an int in [0, 20]")
        if backoff is None:
            backoff = _from_env("MIMCL_PUSH_BACKOFF", "1.0", float, "a number of seconds in [0, 60]")
        try:
            check_number("max_retries (MIMCL_PUSH_MAX_RETRIES)", max_retries, 0, 20, integer=True)
            check_number("backoff (MIMCL_PUSH_BACKOFF, seconds)", backoff, 0, 60)
        except ValueError as e:
            raise PushError(str(e)) from e
        return cls(int(max_retries), float(backoff))

    def delay(self, attempt: int, error: Optional[BaseException] = None) -> float:
        wait = min(self.cap, self.backoff * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0)
        for e in _chain(error) if error is not None else ():
            retry_after = getattr(getattr(e, "response", None), "headers", {}).get("Retry-After")
            if retry_after:
                try:
                    wait = max(wait, min(self.cap, float(retry_after)))
                except ValueError:
                    pass
                break
        return wait

    def call(self, what: str, fn: Callable[[], T]) -> T:
        """``fn()``, retried on transient faults; the last fault is raised with ``self.attempts[what]`` set."""
        attempt = 0
        while True:
            attempt += 1
            self.attempts[what] = attempt
            self.last = what
            try:
                return fn()
            except Exception as e:
                if not is_transient(e) or attempt > self.max_retries:
                    raise
                wait = self.delay(attempt, e)
                logger.warning("%s failed (%s); retry %d/%d in %.2f s", what, _describe(e), attempt,
                               self.max_retries, wait)
                time.sleep(wait)


def _describe(error: BaseException) -> str:
    status = _status(error)
    if status is not None:
        return f"HTTP {status}"
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


# ------------------------------------------------------------------------------------------------------- push


def push_encoder(folder: Union[str, os.PathLike], repo_id: str, token: Optional[str] = None, private: bool = False,
                 revision: Optional[str] = None, commit_message: Optional[str] = None,
                 endpoint: Optional[str] = None, max_retries: Optional[int] = None,
                 backoff: Optional[float] = None, create_pr: bool = False) -> str:
    """Upload ``folder`` to the model repo ``repo_id`` as one verified commit; returns the commit URL (with
    ``create_pr``: the URL of the pull request opened against ``revision``, see the module docstring).

    ``token`` defaults to ``HF_TOKEN`` / the saved login, ``endpoint`` to ``HF_ENDPOINT`` /
    https://huggingface.co, ``revision`` to ``main`` (another branch is created from main when missing).
    ``max_retries`` / ``backoff`` (seconds) default to ``MIMCL_PUSH_MAX_RETRIES`` / ``MIMCL_PUSH_BACKOFF``
    (4 / 1.0). When the repo already holds exactly the folder, no commit is made and the URL of the commit
    holding it is returned. The repo mirrors the folder (files it has and the folder lacks are deleted).

    Raises :class:`PushError` (nothing is sent when the folder or the repo id is bad; nothing is reported as
    pushed unless the remote revision was verified to hold every file)."""
    path = _check_folder(folder)
    return push_folder(path, repo_id, token=token, private=private, revision=revision, endpoint=endpoint,
                       commit_message=commit_message or f"Upload encoder from {path.name} with mimcl_hub",
                       max_retries=max_retries, backoff=backoff, create_pr=create_pr)


def push_folder(folder: Union[str, os.PathLike], repo_id: str, repo_type: str = "model",
                space_sdk: Optional[str] = None, mirror: bool = True, token: Optional[str] = None,
                private: bool = False, revision: Optional[str] = None, commit_message: Optional[str] = None,
                endpoint: Optional[str] = None, max_retries: Optional[int] = None,
                backoff: Optional[float] = None, exclude: Sequence[str] = (), create_pr: bool = False,
                parent_commit: Optional[str] = None) -> str:
    """Upload every file of ``folder`` to the ``repo_type`` repo ``repo_id`` (a Space is created with
    ``space_sdk``) as one verified, retried commit (see the module docstring); returns the commit URL, or the
    pull request's URL with ``create_pr``. With ``mirror`` the repo's files that the folder lacks are deleted in
    the same commit; without it they stay. ``exclude``: top-level files or folders of ``folder`` left out (e.g.
    ``.mimcl``, the run state of a mine). ``parent_commit``: commit on top of that commit (a 40-hex id), see
    the module docstring. Raises :class:`PushError` (:class:`StaleRevisionError` when the branch moved past
    ``parent_commit``)."""
    path = Path(folder)
    if not path.is_dir():
        raise PushError(f"cannot push {path}: not a folder")
    if repo_type not in ("model", "dataset", "space"):
        raise PushError(f"invalid repo type {repo_type!r}: expected model, dataset or space")
    repo_id = _check_repo_id(repo_id)
    if revision is not None and (not isinstance(revision, str) or not revision.strip()):
        raise PushError(f"invalid revision {revision!r} for {repo_id}: expected a branch name")
    if revision is not None and not _is_branch_name(revision):
        raise PushError(f"invalid revision {revision!r} for {repo_id}: not a git branch name (no '..', '//', "
                        "leading / trailing '/' or '.', '.lock' ending, '@{', spaces or any of ~^:?*[\\)")
    if parent_commit is not None and not (isinstance(parent_commit, str) and len(parent_commit) == 40
                                          and all(c in "0123456789abcdef" for c in parent_commit)):
        raise PushError(f"invalid parent_commit {parent_commit!r} for {repo_id}: expected a 40-hex commit id")
    policy = RetryPolicy.resolve(max_retries, backoff)
    local = _digests(path, _local_files(path, tuple(exclude)))

    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError
    from huggingface_hub.utils import get_token

    token = token or os.environ.get("HF_TOKEN") or get_token()
    endpoint = (endpoint or os.environ.get("HF_ENDPOINT") or "https://huggingface.co").rstrip("/")
    api = HfApi(endpoint=endpoint, token=token)
    branch = revision or "main"
    kind = "" if repo_type == "model" else f"{repo_type} "
    where = f"{kind}{repo_id}" + (f"@{branch}" if revision else "") + f" on {endpoint}"
    message = commit_message or f"Upload {path.name} with mimcl_hub"
    target = _Target(repo_id, repo_type, space_sdk, mirror)
    try:
        url = _push(api, policy, path, target, branch, private, message, local, create_pr, parent_commit)
    except HfHubHTTPError as e:
        status = _status(e)
        if status in (401, 403):
            raise PushError(
                f"the Hub refused token {mask_token(token)} for {where} (HTTP {status}): "
                + ("no token given; set HF_TOKEN, run `hf auth login` or pass --token"
                   if not token else "check that the token is valid and has write access to that namespace")
            ) from e
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise PushError(f"pushing {path} to {where} failed (HTTP {status}){_tries(policy, e)}: {first}; "
                        + _AGAIN) from e
    except PushError as e:
        raise type(e)(f"pushing {path} to {where} failed: {e}") from e
    except Exception as e:  # noqa: BLE001  connection refused / dropped, bad answers; anything else is raised as is
        if not isinstance(e, (OSError, ValueError, RuntimeError)) and not is_http_library_error(e):
            raise
        raise PushError(f"pushing {path} to {where} failed{_tries(policy, e)}: could not complete the upload "
                        f"({_describe(e) or 'connection closed'}); " + _AGAIN) from e
    return url


@dataclass(frozen=True)
class _Target:
    repo_id: str
    repo_type: str = "model"
    space_sdk: Optional[str] = None
    mirror: bool = True

    def commit_url(self, endpoint: str, oid: str) -> str:
        prefix = "" if self.repo_type == "model" else f"{self.repo_type}s/"
        return f"{endpoint}/{prefix}{self.repo_id}/commit/{oid}"


_AGAIN = ("the upload is one commit, so the repo holds all of it or none of it — run the push again (it reads what "
          "the repo holds first and commits only what is missing)")


def _tries(policy: RetryPolicy, error: BaseException) -> str:
    """`` after 5 attempts of create commit`` for a transient fault that outlived the retries."""
    if not policy.last or not is_transient(error):
        return ""
    what, count = policy.last, policy.attempts[policy.last]
    return f" after {count} attempt{'s' if count != 1 else ''} of {what} (max_retries={policy.max_retries})"


def _remote(api, policy: RetryPolicy, target: _Target, revision: str, what: str = "read the remote files"):
    """(commit, {path: RepoSibling with size / blob_id / lfs}) of a revision: ONE request (``repo_info`` with
    ``files_metadata=True``), so the head and its files are one consistent snapshot; retried by ``policy``."""
    info = policy.call(what, lambda: api.repo_info(target.repo_id, revision=revision, repo_type=target.repo_type,
                                                   files_metadata=True))
    return info.sha, {sibling.rfilename: sibling for sibling in (info.siblings or [])}


def _push(api, policy: RetryPolicy, path: Path, target: _Target, branch: str, private: bool, message: str,
          local: dict[str, _Digest], create_pr: bool = False, parent: Optional[str] = None) -> str:
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete
    from huggingface_hub.errors import HfHubHTTPError

    repo_id, repo_type = target.repo_id, target.repo_type
    if not create_pr and parent is None:      # a PR / a commit on top of a known revision: it exists already
        policy.call("create the repo", lambda: api.create_repo(repo_id, repo_type=repo_type,
                                                               private=private or None, exist_ok=True,
                                                               space_sdk=target.space_sdk))
        if branch != "main":
            policy.call("create the branch", lambda: api.create_branch(repo_id, branch=branch,
                                                                       repo_type=repo_type, exist_ok=True))
    commit_url = None
    commits = 0
    while commit_url is None:
        head, remote = _remote(api, policy, target, branch)
        if not _differences(remote, local, target.mirror):
            if commits:
                logger.info("the Hub already holds %s at %s (an earlier commit attempt was applied)", path, head)
            commit_url = target.commit_url(api.endpoint, head)
            break
        if parent is not None and head != parent:
            if not create_pr:
                raise StaleRevisionError(
                    f"{branch} has moved from {parent[:12]} to {head[:12]} since that revision was read; nothing was "
                    "committed (run again to work on the new head, or open a pull request from the old one)")
            head, remote = _remote(api, policy, target, parent)      # the PR starts from the commit asked for
        operations = [CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(path / name))
                      for name, digest in local.items() if name not in remote or not _matches(remote[name], digest)]
        if target.mirror:
            operations += [CommitOperationDelete(path_in_repo=name) for name in sorted(set(remote) - set(local))
                           if name != ".gitattributes"]
        if not operations:                # the parent commit of a PR already holds the folder: nothing to open
            commit_url = target.commit_url(api.endpoint, head)
            break
        commits += 1
        policy.attempts["create the commit"] = commits
        policy.last = "create the commit"
        try:
            info = api.create_commit(repo_id, operations, revision=branch, repo_type=repo_type,
                                     commit_message=message, parent_commit=head, create_pr=create_pr)
        except Exception as e:
            stale = isinstance(e, HfHubHTTPError) and _status(e) in (409, 412)   # the head moved under us
            if create_pr and is_transient(e):
                raise PushError(f"opening the pull request failed ({_describe(e)}) and it may have been opened "
                                f"all the same; look at the pull requests of {repo_id} before running again (each "
                                "run opens a new one)") from e
            if stale and parent is not None and not create_pr:
                raise StaleRevisionError(f"{branch} moved past {parent[:12]} while committing; nothing was "
                                         "committed (run again to work on the new head)") from e
            if not (stale or is_transient(e)) or commits > policy.max_retries:
                raise
            wait = 0.0 if stale else policy.delay(commits, e)
            logger.warning("create the commit failed (%s); reading the remote again, then retry %d/%d in %.2f s",
                           _describe(e), commits, policy.max_retries, wait)
            time.sleep(wait)
            continue
        commit_url = str(info.pr_url or info.commit_url) if create_pr else str(info.commit_url)
        try:
            _verify(api, policy, path, target, info.oid, local)
        except PushError:
            raise
        except Exception as e:
            if not is_transient(e):
                raise
            raise PushError(f"the commit {info.oid} was made, but reading it back to verify it failed"
                            f"{_tries(policy, e)} ({_describe(e)}); not reporting it as pushed — run the push again "
                            "(it checks what the repo holds first)") from e
    return commit_url


def _verify(api, policy: RetryPolicy, path: Path, target: _Target, oid: str, local: dict[str, _Digest]) -> None:
    """The revision ``oid`` must hold every file of the folder with its content hash (and, when mirroring,
    nothing else)."""
    _, remote = _remote(api, policy, target, oid, what="verify the commit")
    problems = _differences(remote, local, target.mirror)
    if problems:
        raise PushError(f"the Hub accepted the commit {oid} of {path} to {target.repo_id}, but that revision does not hold "
                        f"the folder ({'; '.join(problems[:5])}); not reporting it as pushed — push again")
