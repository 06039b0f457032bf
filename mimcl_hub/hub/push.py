"""Upload an encoder folder (written by :func:`mimcl_hub.hub.save_encoder`) to the Hugging Face Hub.

``push_encoder(folder, "org/name")`` checks everything it can locally first (the folder is an encoder
folder, the repo id is valid) so bad input fails before any request, then, through
``huggingface_hub.HfApi``:

1. ``create_repo(exist_ok=True)`` (and ``create_branch(exist_ok=True)`` for a ``revision`` other than main);
2. ONE ``create_commit`` holding every file of the folder, plus the deletion of files the repo has at that
   revision but the folder does not (``.gitattributes`` kept): the Hub applies a commit whole or not at
   all, so a half-uploaded encoder is never visible and the repo mirrors the folder.

``upload_folder`` is not used on purpose: with ``hf_xet`` installed it may split a folder into several
commits. ``HF_ENDPOINT`` and ``HF_TOKEN`` are honoured (read at call time); ``endpoint=`` / ``token=``
override them. Every failure is a :class:`PushError` naming the repo, and for 401/403 the (masked) token.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional, Union

__all__ = ["ENCODER_FILES", "PushError", "mask_token", "push_encoder"]

#: Files every encoder folder has (see :func:`mimcl_hub.hub.save_encoder`).
ENCODER_FILES = ("config.json", "model.safetensors", "README.md")

_SKIP_DIRS = {".git", ".cache", "__pycache__"}


class PushError(ValueError, RuntimeError):
    """Pushing an encoder folder to the Hub failed (bad folder / repo id / token, or a network / Hub error).

    A ``ValueError`` (bad input, the CLI answers exit code 2) and a ``RuntimeError`` (what the training loop
    raised before)."""


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
    return path


def _check_repo_id(repo_id: str) -> str:
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    if not isinstance(repo_id, str) or repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise PushError(f"invalid repo id {repo_id!r}: expected NAMESPACE/NAME (e.g. your-name/vit-tiny-infoaug)")
    try:
        validate_repo_id(repo_id)
    except HFValidationError as e:
        raise PushError(f"invalid repo id {repo_id!r}: {e}") from e
    return repo_id


def _local_files(folder: Path) -> list[str]:
    files = []
    for root, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if d not in _SKIP_DIRS)
        for name in sorted(names):
            files.append((Path(root) / name).relative_to(folder).as_posix())
    return files


def push_encoder(folder: Union[str, os.PathLike], repo_id: str, token: Optional[str] = None, private: bool = False,
                 revision: Optional[str] = None, commit_message: Optional[str] = None,
                 endpoint: Optional[str] = None) -> str:
    """Upload ``folder`` to the model repo ``repo_id`` as one commit; returns the commit URL.

    ``token`` defaults to ``HF_TOKEN`` / the saved login, ``endpoint`` to ``HF_ENDPOINT`` /
    https://huggingface.co, ``revision`` to ``main`` (another branch is created from main when missing).
    Raises :class:`PushError` (nothing is sent when the folder or the repo id is bad)."""
    path = _check_folder(folder)
    repo_id = _check_repo_id(repo_id)
    if revision is not None and (not isinstance(revision, str) or not revision.strip()):
        raise PushError(f"invalid revision {revision!r} for {repo_id}: expected a branch name")
    files = _local_files(path)

    import httpx2
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi
    from huggingface_hub.errors import HfHubHTTPError
    from huggingface_hub.utils import get_token

    token = token or os.environ.get("HF_TOKEN") or get_token()
    endpoint = (endpoint or os.environ.get("HF_ENDPOINT") or "https://huggingface.co").rstrip("/")
    api = HfApi(endpoint=endpoint, token=token)
    branch = revision or "main"
    where = f"{repo_id}" + (f"@{branch}" if revision else "") + f" on {endpoint}"
    try:
        api.create_repo(repo_id, private=private or None, exist_ok=True)
        if branch != "main":
            api.create_branch(repo_id, branch=branch, exist_ok=True)
        remote = set(api.list_repo_files(repo_id, revision=branch))
        operations = [CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(path / name)) for name in files]
        operations += [CommitOperationDelete(path_in_repo=name) for name in sorted(remote - set(files))
                       if name != ".gitattributes"]
        info = api.create_commit(repo_id, operations, revision=branch,
                                 commit_message=commit_message or f"Upload encoder from {path.name} with mimcl_hub")
    except HfHubHTTPError as e:
        status = getattr(getattr(e, "response", None), "status_code", None)
        if status in (401, 403):
            raise PushError(
                f"the Hub refused token {mask_token(token)} for {where} (HTTP {status}): "
                + ("no token given; set HF_TOKEN, run `hf auth login` or pass --token"
                   if not token else "check that the token is valid and has write access to that namespace")
            ) from e
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise PushError(f"pushing {path} to {where} failed (HTTP {status}): {first}; the upload is one commit, "
                        "so the repo holds all of it or none of it — push again to retry") from e
    except (OSError, ValueError, httpx2.HTTPError) as e:  # connection refused / dropped, bad answers
        raise PushError(f"pushing {path} to {where} failed: could not complete the upload "
                        f"({type(e).__name__}: {e or 'connection closed'}); the commit is all-or-nothing, so "
                        "the repo has no part of this upload — run the push again") from e
    return str(info.commit_url)
