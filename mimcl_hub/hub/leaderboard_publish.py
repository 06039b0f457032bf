"""Publish a leaderboard on the Hub: the rows as an HF dataset and the static Space that shows them.

:func:`push_leaderboard_dataset` writes ``data/leaderboard.parquet`` (``datasets.load_dataset(repo_id)`` reads it),
``leaderboard.json`` and a dataset card; :func:`push_leaderboard_space` deploys the page of
:func:`mimcl_hub.hub.leaderboard.to_html` as a static Space that reloads the rows from that dataset. Each is one
verified, retried commit (:func:`mimcl_hub.hub.push.push_folder`); ``HF_ENDPOINT`` / ``HF_TOKEN`` are honoured.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from .._markdown import md_cell, md_code
from .leaderboard import ROW_FIELDS, Leaderboard, _endpoint, space_readme, to_html, to_json

__all__ = ["push_leaderboard_dataset", "push_leaderboard_space"]

_DATASET_CARD = """---
license: apache-2.0
pretty_name: {title}
tags:
- leaderboard
- mimcl_hub
- self-supervised
configs:
- config_name: default
  data_files:
  - split: train
    path: data/leaderboard.parquet
---

# {title}

Results of self-supervised encoders trained with [mimcl_hub](https://arxiv.org/abs/2511.00028), read from the
`model-index` of each model card and ranked by {sort} ({order}). One row per model: {fields}, then one column
per dataset × metric ({columns}).

```python
from datasets import load_dataset
rows = load_dataset("{repo_id}", split="train")
```

Built with `mimcl leaderboard ... --push_dataset {repo_id}`; `leaderboard.json` holds the same rows for the
leaderboard Space.
{errors}"""


def _parquet_bytes(board: Leaderboard) -> bytes:
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([("rank", pa.int64()), ("model", pa.string()), ("backbone", pa.string()),
                        ("objective", pa.string()), ("twin_mode", pa.string()), ("mi_weight", pa.float64()),
                        ("epochs", pa.float64()), ("steps", pa.int64()),
                        *[(c, pa.float64()) for c in board.columns]])
    table = pa.Table.from_pylist(board.rows, schema=schema)
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    return buffer.getvalue()


def _commit(repo_id: str, repo_type: str, files: dict[str, bytes], token, endpoint: Optional[str], private: bool,
            message: str, space_sdk: Optional[str] = None) -> str:
    """``files`` (repo path -> bytes) as one verified, retried commit (:func:`mimcl_hub.hub.push.push_folder`);
    other files of the repo stay."""
    import tempfile

    from .push import push_folder

    with tempfile.TemporaryDirectory(prefix="mimcl-leaderboard-") as tmp:
        for name, data in files.items():
            path = Path(tmp, name)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        return push_folder(tmp, repo_id, repo_type=repo_type, space_sdk=space_sdk, mirror=False, token=token,
                           private=private, commit_message=message, endpoint=_endpoint(endpoint))


def push_leaderboard_dataset(board: Leaderboard, repo_id: str, token=None, endpoint: Optional[str] = None,
                             private: bool = False, title: str = "mimcl_hub encoder leaderboard") -> str:
    """Publish ``board`` as the dataset ``repo_id`` in one commit: ``data/leaderboard.parquet`` (one row per
    model; ``datasets.load_dataset(repo_id)`` reads it), ``leaderboard.json`` (:func:`to_json`) and a dataset
    card. Returns the commit URL. Raises :class:`mimcl_hub.hub.PushError`."""
    errors = ""
    if board.errors:
        errors = "\nNot ranked:\n\n" + "\n".join(f"- {md_code(e['model'])}: {md_cell(e['error'])}"
                                                 for e in board.errors) + "\n"
    card = _DATASET_CARD.format(title=title, sort=md_code(str(board.sort)), repo_id=repo_id,
                                order="highest first" if board.descending else "lowest first",
                                fields=", ".join(f"`{f}`" for f in ROW_FIELDS),
                                columns=", ".join(md_code(c) for c in board.columns) or "none yet",
                                errors=errors)
    files = {"README.md": card.encode("utf-8"), "leaderboard.json": to_json(board).encode("utf-8"),
             "data/leaderboard.parquet": _parquet_bytes(board)}
    return _commit(repo_id, "dataset", files, token, endpoint, private,
                   f"Update leaderboard: {len(board.rows)} models ranked by {board.sort}")


def push_leaderboard_space(board: Leaderboard, repo_id: str, dataset: Optional[str] = None, token=None,
                           endpoint: Optional[str] = None, private: bool = False,
                           title: str = "mimcl_hub encoder leaderboard") -> str:
    """Deploy the static Space ``repo_id`` in one commit: ``index.html`` (:func:`to_html`, reading fresh rows
    from ``dataset``'s ``leaderboard.json`` when given) and :func:`space_readme` as the Space card
    (``sdk: static``; its title set to ``title``, ``datasets`` to ``dataset``). Returns the commit URL.
    Raises :class:`mimcl_hub.hub.PushError`."""
    from huggingface_hub import SpaceCard

    card = SpaceCard(space_readme())
    card.data.title = title
    if dataset:
        card.data.datasets = [dataset]
    page = to_html(board, title=title, dataset=dataset, endpoint=endpoint)
    files = {"README.md": str(card).encode("utf-8"), "index.html": page.encode("utf-8")}
    return _commit(repo_id, "space", files, token, endpoint, private,
                   f"Deploy leaderboard: {len(board.rows)} models" + (f" from {dataset}" if dataset else ""),
                   space_sdk=card.data.sdk or "static")
