"""Rank encoders by the results in their model cards: markdown, JSON and HTML leaderboards.

``build_leaderboard(SOURCES)`` turns each source into model cards and each card into one row:

* a local encoder folder (``README.md`` written by :func:`mimcl_hub.hub.save_encoder` / ``mimcl eval``);
* a Hub model repo id ``ORG/NAME`` (its ``README.md`` is downloaded with ``hf_hub_download``);
* a query, ``author:ORG``, ``tag:TAG`` or ``search:TEXT`` (several joined with ``,``, e.g.
  ``author:mimcl-org,tag:infoaug``), answered by ``HfApi.list_models``.

``HF_ENDPOINT`` / ``HF_TOKEN`` are honoured (read at call time), ``endpoint=`` / ``token=`` override them.

A row (:data:`ROW_FIELDS` + one column per dataset × metric, e.g. ``digits/knn_top1``) is read from the card's
YAML only, parsed into a :class:`mimcl_hub.hub.card.RunCard` (:meth:`~mimcl_hub.hub.card.RunCard.from_model_card`):
the ``model-index`` results and the ``mimcl_hub:`` block (backbone, objective, twin_mode, mi_weight, epochs,
steps). A card from elsewhere without that block still ranks: the backbone comes from ``config.json``'s
architecture and the objective from the card's tags (names of ``mimcl_hub.objectives.OBJECTIVES``).

A source that cannot be read — no card, YAML that does not parse, a malformed ``model-index``, a metric value
that is not a finite number, a ``mimcl_hub:`` block with a value of the wrong type or a non-finite number (e.g.
``epochs: .nan``), no results at all — becomes an entry of ``Leaderboard.errors`` naming the model and the reason;
every other model is still ranked, in every format. Rows are ranked by ``sort`` (default: kNN top-1 accuracy on
the first dataset), descending for metrics; models without a value for the sort column come last.

Writers: :func:`to_markdown` (for READMEs), :func:`to_json` (``{"rows": [...], "columns": [...],
"errors": [...], "sort": ...}``), :func:`to_html` (one self-contained page: the package data
``mimcl_hub/hub/space/index.html`` with the data embedded; the table sorts when a header is clicked and filters as
you type — the same page is the Hub Space). Markdown cells and headers are escaped (``|``, line breaks), so a
hostile dataset or model name cannot add columns or rows. Publishing the rows and the Space:
:mod:`mimcl_hub.hub.leaderboard_publish`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

from .._markdown import md_cell, md_code
from .card import META_FIELDS, METRICS, RunCard, load_model_card, metric_key

__all__ = [
    "CARD_FIELDS", "FORMATS", "Leaderboard", "LeaderboardError", "MAX_RESULTS_PER_MODEL", "ROW_FIELDS", "SPACE_DIR", "build_leaderboard",
    "folder_model_name", "metric_key", "output_format", "page_template", "rank_rows", "render",
"resolve_sources", "row_from_card", "row_from_run",
    "space_readme", "to_html", "to_json", "to_markdown", "write_leaderboard",
]

#: The Space, package data of ``mimcl_hub.hub``: ``index.html`` (the page, also the ``--format html`` template)
#: and ``README.md`` (the Space card).
SPACE_DIR = "space"

#: The :class:`~mimcl_hub.hub.card.RunCard` fields every row shows (from the card's ``mimcl_hub:`` block).
CARD_FIELDS = ("backbone", "objective", "twin_mode", "mi_weight", "epochs", "steps")
assert set(CARD_FIELDS) <= set(META_FIELDS)

#: Descriptive columns of every row, in order; metric columns (``DATASET/METRIC``) follow.
ROW_FIELDS = ("rank", "model", *CARD_FIELDS)

FORMATS = ("md", "json", "html")
#: Most results (dataset x metric columns) one model's row may add. A card from anyone's repo can list any number of
#: datasets; past this it would widen the table of every model (10 000 results: 10 011 columns) and is not ranked.
#: A paper-scale evaluation is 3 datasets x 3 metrics; VTAB's 19 datasets x 3 is 57.
MAX_RESULTS_PER_MODEL = 256
_QUERY_KEYS = ("author", "tag", "search")
_METRIC_ORDER = tuple(METRICS)
_DATA_MARK = "/*LEADERBOARD_DATA*/"
_CONFIG_MARK = "/*LEADERBOARD_CONFIG*/"


class LeaderboardError(ValueError):
    """Bad leaderboard input (a source that is neither a folder, a repo id nor a query; an unknown sort column;
    an unknown format) or a failed publish."""


@dataclass
class Leaderboard:
    """Ranked rows. ``rows``: dicts with :data:`ROW_FIELDS` + ``columns``; ``errors``: ``{"model", "source",
    "error"}`` for each source that could not be ranked; ``sort``: the ranking column; ``descending``."""

    rows: list[dict[str, Any]]
    columns: list[str]
    errors: list[dict[str, str]] = field(default_factory=list)
    sort: Optional[str] = None
    descending: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "columns": self.columns, "fields": list(ROW_FIELDS), "errors": self.errors,
                "sort": self.sort, "descending": self.descending}


# --------------------------------------------------------------------------------------------- reading cards
def row_from_run(model: str, run: RunCard) -> dict[str, Any]:
    """One leaderboard row from a parsed :class:`~mimcl_hub.hub.card.RunCard`: ``rank`` (filled in by
    :func:`rank_rows`), ``model``, :data:`CARD_FIELDS`, then ``DATASET/METRIC`` per result.

    Raises:
        ValueError: the card has no results.
    """
    if not run.results:
        raise ValueError("the model card has no model-index results (run `mimcl eval` on the encoder first)")
    if len(run.results) > MAX_RESULTS_PER_MODEL:
        raise ValueError(f"the model card lists {len(run.results):,} results, more than the "
                         f"{MAX_RESULTS_PER_MODEL} one leaderboard row may add (each a column of every row)")
    row: dict[str, Any] = {"rank": None, "model": model, **{name: getattr(run, name) for name in CARD_FIELDS}}
    for entry in run.results:
        row[entry.column] = entry.value
    return row


def row_from_card(model: str, card_data, config: Optional[dict] = None) -> dict[str, Any]:
    """One leaderboard row from a ``ModelCard`` / ``ModelCardData`` (and the encoder's ``config.json`` dict, when
    known): :meth:`RunCard.from_model_card` then :func:`row_from_run`.

    Raises:
        ValueError: the card has no results, a metric value is not a finite number (names the metric), or its
            ``mimcl_hub:`` block holds a bad value (names the field).
    """
    return row_from_run(model, RunCard.from_model_card(card_data, config))


def _read_json(path: Path) -> Optional[dict]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def folder_model_name(folder: Path) -> str:
    """The name a local encoder folder is listed under: the folder's name, or its parent's for the
    ``OUTPUT_DIR/encoder`` folders training writes."""
    folder = Path(folder).absolute()
    return folder.parent.name if folder.name == "encoder" and folder.parent.name else folder.name


def _local_row(folder: Path) -> dict[str, Any]:
    card_path = folder / "README.md"
    if not card_path.is_file():
        raise ValueError(f"{folder} has no README.md model card")
    card = load_model_card(card_path)
    return row_from_card(folder_model_name(folder), card, _read_json(folder / "config.json"))


def _hub_row(repo_id: str, token, endpoint: str, revision: Optional[str] = None) -> dict[str, Any]:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError

    from .._safety import check_repo_id

    check_repo_id(repo_id, what="listed repo id")

    try:
        card_path = hf_hub_download(repo_id, "README.md", revision=revision, token=token, endpoint=endpoint)
    except EntryNotFoundError as e:
        raise ValueError("the repo has no README.md model card") from e
    card = load_model_card(Path(card_path))
    run = RunCard.from_model_card(card)
    if run.backbone is None:                  # a card from elsewhere: the architecture of its config.json
        try:
            config = _read_json(Path(hf_hub_download(repo_id, "config.json", revision=revision, token=token,
                                                     endpoint=endpoint)))
        except EntryNotFoundError:
            config = None
        run = RunCard.from_model_card(card, config)
    return row_from_run(repo_id, run)


def _parse_query(source: str) -> Optional[dict[str, str]]:
    if ":" not in source or os.path.exists(source):
        return None
    query: dict[str, str] = {}
    for part in source.split(","):
        key, sep, value = part.partition(":")
        key, value = key.strip().lower(), value.strip()
        if not sep or key not in _QUERY_KEYS:
            return None
        if not value:
            raise LeaderboardError(f"query {source!r}: {key}: needs a value (e.g. author:mimcl-org, tag:infoaug)")
        if key in query:
            raise LeaderboardError(f"query {source!r}: {key}: given twice")
        query[key] = value
    return query


def resolve_sources(sources: Sequence[str], token=None, endpoint: Optional[str] = None) -> list[tuple[str, str]]:
    """``[(kind, id)]`` with kind ``"folder"`` or ``"hub"``, queries expanded (each model once, input order).

    Raises:
        LeaderboardError: a source that is not an existing folder, a valid repo id nor a query, or a failed query.
    """
    from .._safety import check_repo_id

    if isinstance(sources, (str, os.PathLike)):
        sources = [sources]
    if not sources:
        raise LeaderboardError("no sources: give encoder folders, Hub repo ids or queries (author:ORG, tag:TAG)")
    out: list[tuple[str, str]] = []
    seen: set[tuple[str, str]] = set()

    def add(kind: str, ident: str, key: Optional[str] = None) -> None:
        if (kind, key or ident) not in seen:
            seen.add((kind, key or ident))
            out.append((kind, ident))

    for raw in sources:
        source = os.fspath(raw)
        if os.path.isdir(source):       # one folder once, however it is spelled (enc, enc/, ./x/../enc, a link)
            add("folder", str(Path(source)), key=os.path.realpath(source))
            continue
        query = _parse_query(source)
        if query is not None:
            for repo_id in _query_models(query, token, endpoint):
                add("hub", repo_id)      # checked with check_repo_id when read: a bad listed id is one error row
            continue
        try:
            check_repo_id(source)
        except ValueError:
            raise LeaderboardError(
                f"source {source!r} is not an encoder folder, a Hub repo id (ORG/NAME) or a query "
                f"({', '.join(k + ':VALUE' for k in _QUERY_KEYS)})") from None
        add("hub", source)
    return out


def _endpoint(endpoint: Optional[str]) -> str:
    return (endpoint or os.environ.get("HF_ENDPOINT") or "https://huggingface.co").rstrip("/")


def _query_models(query: dict[str, str], token, endpoint: Optional[str]) -> list[str]:
    from huggingface_hub import HfApi

    api = HfApi(endpoint=_endpoint(endpoint), token=token or os.environ.get("HF_TOKEN") or None)
    try:
        models = api.list_models(author=query.get("author"), filter=query.get("tag"), search=query.get("search"))
        return [m.id for m in models]
    except Exception as e:
        raise LeaderboardError(f"listing models for {query} on {_endpoint(endpoint)} failed: "
                               f"{type(e).__name__}: {e}") from e


# --------------------------------------------------------------------------------------------- ranking
def _columns(rows: Iterable[dict[str, Any]]) -> list[str]:
    datasets: list[str] = []
    metrics: dict[str, set[str]] = {}
    for row in rows:
        for key in row:
            if key in ROW_FIELDS or "/" not in key:
                continue
            dataset, _, metric = key.rpartition("/")
            if dataset not in metrics:
                datasets.append(dataset)
                metrics[dataset] = set()
            metrics[dataset].add(metric)

    def order(metric: str) -> tuple:
        return (_METRIC_ORDER.index(metric), "") if metric in _METRIC_ORDER else (len(_METRIC_ORDER), metric)

    return [f"{d}/{m}" for d in datasets for m in sorted(metrics[d], key=order)]


def _sort_column(sort: Optional[str], columns: list[str]) -> str:
    if sort is None:
        knn = [c for c in columns if c.endswith("/knn_top1")]
        if knn:
            return knn[0]
        if columns:
            return columns[0]
        return "model"
    if sort in columns or sort in ROW_FIELDS[1:]:
        return sort
    matches = [c for c in columns if c.rpartition("/")[2] == sort]
    if matches:
        return matches[0]
    raise LeaderboardError(f"unknown sort column {sort!r}: use one of {', '.join(list(ROW_FIELDS[1:]) + columns)} "
                           "(or a metric name such as knn_top1, meaning its first dataset)")


def rank_rows(rows: list[dict[str, Any]], sort: str, descending: Optional[bool] = None) -> list[dict[str, Any]]:
    """Rows ordered by ``sort`` (missing values last, ties by model name) with ``rank`` 1..n filled in.
    ``descending`` defaults to True for metric columns and False for the descriptive ones."""
    if descending is None:
        descending = sort not in ROW_FIELDS
    present = [r for r in rows if r.get(sort) is not None]
    missing = sorted((r for r in rows if r.get(sort) is None), key=lambda r: str(r["model"]))
    present.sort(key=lambda r: str(r["model"]))
    present.sort(key=lambda r: r[sort] if isinstance(r[sort], (int, float)) else str(r[sort]), reverse=descending)
    ranked = present + missing
    for i, row in enumerate(ranked, 1):
        row["rank"] = i
    return ranked


def build_leaderboard(sources: Sequence[str], sort: Optional[str] = None, descending: Optional[bool] = None,
                      token=None, endpoint: Optional[str] = None) -> Leaderboard:
    """Read every source's model card and rank the models (see the module docstring).

    Args:
        sources: encoder folders, Hub repo ids and queries (``author:ORG``, ``tag:TAG``, ``search:TEXT``).
        sort: a column (``digits/knn_top1``), a metric name (its first dataset) or a field (``epochs``);
            default kNN top-1 on the first dataset.
        descending: default True for metrics, False for fields.
    Raises:
        LeaderboardError: bad sources or sort column (a single unreadable card is an ``errors`` entry instead).
    """
    token = token or os.environ.get("HF_TOKEN") or None
    endpoint = _endpoint(endpoint)
    rows: list[dict[str, Any]] = []
    errors: list[dict[str, str]] = []
    sources_of: list[str] = []              # the source of each row, for telling rows of the same name apart
    for kind, ident in resolve_sources(sources, token=token, endpoint=endpoint):
        try:
            row = _local_row(Path(ident)) if kind == "folder" else _hub_row(ident, token, endpoint)
            json.dumps(row, allow_nan=False)      # every writer can write it (JSON / HTML refuse NaN)
            rows.append(row)
            sources_of.append(ident)
        except LeaderboardError:
            raise
        except Exception as e:  # one bad model never stops the ranking of the others
            reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            errors.append({"model": folder_model_name(Path(ident)) if kind == "folder" else ident, "source": ident,
                           "error": reason})
    _disambiguate(rows, sources_of)
    columns = _columns(rows)
    column = _sort_column(sort, columns)
    if descending is None:
        descending = column not in ROW_FIELDS
    for row in rows:
        for c in columns:
            row.setdefault(c, None)
    ordered = [{k: row[k] for k in (*ROW_FIELDS, *columns)} for row in rank_rows(rows, column, descending)]
    return Leaderboard(rows=ordered, columns=columns, errors=errors, sort=column, descending=descending)


def _disambiguate(rows: list[dict[str, Any]], sources: list[str]) -> None:
    """Rows of different folders with the same name (``a/enc`` and ``b/enc`` are both "enc") are named by their
    folder path as given instead, so no two rows read the same."""
    names = [row["model"] for row in rows]
    for row, source in zip(rows, sources):
        if names.count(row["model"]) > 1 and source != row["model"]:
            row["model"] = source


# --------------------------------------------------------------------------------------------- writers
def _cell(value: Any) -> str:
    if value is None:
        return "–"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def to_markdown(board: Leaderboard) -> str:
    """A GitHub / Hub markdown table (``–`` for a missing value), the ranking column named below it, and the
    models that could not be ranked with their reasons. Headers and cells are escaped (``md_cell``)."""
    header = [*ROW_FIELDS, *board.columns]
    lines = ["| " + " | ".join(md_cell(h) for h in header) + " |",
             "| " + " | ".join("---:" if h == "rank" or "/" in h else "---" for h in header) + " |"]
    for row in board.rows:
        cells = []
        for h in header:
            value = row.get(h)
            if h in ("mi_weight", "epochs"):
                cells.append("–" if value is None else f"{value:g}")
            elif h == "steps" or h == "rank":
                cells.append("–" if value is None else str(int(value)))
            else:
                cells.append(md_cell(_cell(value)))
        lines.append("| " + " | ".join(cells) + " |")
    if not board.rows:
        lines.append("| " + " | ".join(["–"] * len(header)) + " |")
    order = "highest first" if board.descending else "lowest first"
    lines += ["", f"Ranked by {md_code(str(board.sort))} ({order})."]
    if board.errors:
        lines += ["", "Not ranked (card could not be read):", ""]
        lines += [f"- {md_code(e['model'])}: {md_cell(e['error'])}" for e in board.errors]
    return "\n".join(lines) + "\n"


def to_json(board: Leaderboard) -> str:
    """``{"rows": [...], "columns": [...], "fields": [...], "errors": [...], "sort": ..., "descending": ...}``."""
    return json.dumps(board.to_dict(), indent=2, allow_nan=False) + "\n"


def _script_json(payload: Any) -> str:
    # safe inside <script>: no "</script>", no "<!--", no line separators that break JS
    text = json.dumps(payload, allow_nan=False)
    return (text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def _space_file(name: str) -> str:
    return resources.files(__package__).joinpath(SPACE_DIR, name).read_text(encoding="utf-8")


def page_template() -> str:
    """The Space page ``mimcl_hub/hub/space/index.html`` (package data)."""
    return _space_file("index.html")


def space_readme() -> str:
    """The Space card ``mimcl_hub/hub/space/README.md`` (package data)."""
    return _space_file("README.md")


def to_html(board: Leaderboard, title: str = "mimcl_hub encoder leaderboard", dataset: Optional[str] = None,
            endpoint: Optional[str] = None) -> str:
    """The self-contained page: :func:`page_template` with the rows embedded. With ``dataset``
    (``ORG/NAME`` of a results dataset) the page loads fresher rows from that dataset's ``leaderboard.json``
    when it is opened, keeping the embedded ones if that fails."""
    import html

    config = {"title": title, "dataset": dataset, "endpoint": _endpoint(endpoint) if dataset else None}
    page = page_template()
    for mark in (_DATA_MARK, _CONFIG_MARK, "<!--TITLE-->"):
        if mark not in page:
            raise LeaderboardError(f"the leaderboard page mimcl_hub/hub/{SPACE_DIR}/index.html lacks the {mark} "
                                   "placeholder")
    return (page.replace(_DATA_MARK, _script_json(board.to_dict()))
            .replace(_CONFIG_MARK, _script_json(config))
            .replace("<!--TITLE-->", html.escape(title)))


def render(board: Leaderboard, fmt: str, **html_args) -> str:
    if fmt == "md":
        return to_markdown(board)
    if fmt == "json":
        return to_json(board)
    if fmt == "html":
        return to_html(board, **html_args)
    raise LeaderboardError(f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}")


def output_format(path: str | os.PathLike, fmt: Optional[str] = None) -> str:
    """``fmt``, or the format of ``path``'s suffix (``.md`` / ``.markdown``, ``.json``, ``.html`` / ``.htm``).
    ``mimcl leaderboard`` calls it before any work, so a bad ``--output`` fails first.

    Raises:
        LeaderboardError: ``path`` is an existing folder, or neither tells a known format.
    """
    if os.path.isdir(path):
        raise LeaderboardError(f"--output {path} is an existing folder: give a file name, e.g. "
                               f"{os.path.join(path, 'leaderboard.' + (fmt or 'md'))}")
    parent = os.path.dirname(os.path.abspath(path))
    if os.path.lexists(parent) and not os.path.isdir(parent):
        raise LeaderboardError(f"--output {path}: {parent} is not a folder")
    by_suffix = {".md": "md", ".markdown": "md", ".json": "json", ".html": "html",
                 ".htm": "html"}.get(Path(path).suffix.lower())
    if fmt and by_suffix and fmt != by_suffix:
        raise LeaderboardError(f"--format {fmt} contradicts --output {path} (a .{Path(path).suffix.lower()[1:]} file "
                               f"holds {by_suffix}): change one of them")
    fmt = fmt or by_suffix
    if fmt not in FORMATS:
        raise LeaderboardError(f"cannot tell the format of {path}: pass --format ({', '.join(FORMATS)})")
    return fmt


def write_leaderboard(board: Leaderboard, path: str | os.PathLike, fmt: Optional[str] = None, **html_args) -> Path:
    """Write ``board`` to ``path`` atomically (temp file + rename); ``fmt`` defaults to the file's suffix."""
    from .._atomic import atomic_write_text

    path = Path(path)
    text = render(board, output_format(path, fmt), **html_args)
    path.parent.mkdir(parents=True, exist_ok=True)          # like every other output of mimcl
    atomic_write_text(path, text)
    return path
