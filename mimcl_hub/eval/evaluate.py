"""Evaluate a saved encoder: kNN + linear-probe top-1 per dataset, written into its folder and model card.

``evaluate_encoder(DIR | "org/name", datasets=("digits",))``:

1. loads the encoder with :class:`mimcl_hub.hub.encoder.MIMCLEncoder` (safetensors only);
2. for each dataset (``"digits"``, a ``save_to_disk`` folder, an imagefolder / Parquet folder or an HF dataset id,
   see :func:`mimcl_hub.eval.knn.load_knn_datasets`; a dataset named twice is evaluated once) extracts frozen
   features at the model's input size and normalisation, then runs the weighted kNN (DINO protocol) and, unless
   ``linear=False``, a linear probe (:func:`mimcl_hub.eval.linear.linear_probe`). A dataset that cannot give an
   honest accuracy (labels missing, -1 or outside ``[0, C)``, fewer than two classes, test classes absent from
   train, an empty split) is refused with a ``ValueError`` naming the dataset, the split and the column (string
   labels are fine: they are mapped to class ids);
3. writes ``eval_results.json`` (merged with earlier results, by dataset) and updates ``README.md``: the card is
   parsed into a :class:`mimcl_hub.hub.card.RunCard`, the new :class:`~mimcl_hub.hub.card.EvalEntry` results are
   merged into it by (dataset, split, metric) — a new value replaces the old one — and the card's managed parts
   are written from it: the ``model-index`` and a results table between ``<!-- mimcl-eval -->`` markers; the rest
   of the card stays as it is.

Nothing is written until every dataset has been evaluated: when any dataset fails (the second of two, say),
neither ``eval_results.json`` nor ``README.md`` changes, not even with the results of the datasets before it.

The card is parsed before any evaluation: a card that does not parse (YAML errors; a ``!!python/object`` tag is
refused, never executed) or holds bad values fails with a ``ValueError`` naming ``README.md``, and neither file is
written. Both texts are made before either is written, each atomically (temp file + ``os.replace``).

For a Hub repo id nothing is written unless ``output_dir`` is given (the download cache is not a place to edit),
or ``push=True``: the results are sent back to the model's repo (``mimcl eval ORG/NAME --push [--create_pr]``):

1. ``revision`` (default ``main``) is resolved to its commit id once; the encoder and its ``README.md`` /
   ``eval_results.json`` are downloaded at exactly that commit;
2. the results are merged into that card by the same code as for a folder (:func:`update_model_card`): its
   ``model-index`` gains them (a result with the same (dataset, split, metric) is replaced, every other one is
   kept, as ``huggingface_hub.metadata_update`` does) and the results table between the markers is rewritten;
   every other YAML field and the rest of the body stay as they were. A card from elsewhere (no ``mimcl_hub:``
   block, or no card at all) works the same way;
3. ``README.md`` and ``eval_results.json`` (the per-dataset results the table is built from, merged with the
   repo's own, so a later ``--push`` from another machine keeps the table whole) are committed as one commit
   on top of that commit (``parent_commit``): when the branch has moved in between, nothing is committed
   (:class:`~mimcl_hub.hub.push.StaleRevisionError`) rather than overwriting the newer card. With
   ``create_pr=True`` a pull request is opened instead (``refs/pr/N``; the branch does not move), which needs
   no write access to the repo. A card that already holds exactly these results commits nothing.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
from pathlib import Path
from typing import Any, Iterable

import torch
from torch.utils.data import DataLoader

from .._atomic import atomic_write_text
from .._safety import check_number, check_output_apart
from .._markdown import md_cell
from ..hub.card import LOCAL_DATASETS, LOCAL_PREFIX, EvalEntry, RunCard, load_model_card, model_index_dataset

__all__ = ["EVAL_RESULTS_NAME", "eval_entries", "evaluate_encoder", "push_eval_results", "update_model_card"]

EVAL_RESULTS_NAME = "eval_results.json"
_START, _END = "<!-- mimcl-eval:start -->", "<!-- mimcl-eval:end -->"
_DATASET_NAMES = {name: title for name, (_, title) in LOCAL_DATASETS.items()}


def eval_entries(dataset: str, result: dict[str, Any], dataset_name: str | None = None) -> list[EvalEntry]:
    """The model-index entries of one dataset's result (``knn_top1`` [+ ``knn_top5``] [+ ``linear_top1``], values
    rounded to 4 decimals; kNN settings as ``k=K,T=T``). ``result``: ``knn_top1``, ``knn_k``, ``knn_t`` and
    optionally ``knn_top5``, ``linear_top1``, ``linear_config``, ``split``.

    ``dataset`` is named as the user gave it (``digits``, a folder, a Hub id); the entries name it as the
    model-index expects (:func:`~mimcl_hub.hub.card.model_index_dataset`): the Hub id, ``sklearn:digits``, or
    ``local:FOLDER_NAME``; the display name defaults to the dataset's title (``scikit-learn digits``), the Hub id or
    the folder name."""
    dataset_type = model_index_dataset(dataset)
    title = _DATASET_NAMES.get(dataset) or dataset_type.removeprefix(LOCAL_PREFIX)
    common = dict(dataset=dataset_type, dataset_name=dataset_name or title, split=result.get("split", "test"))
    knn_cfg = f"k={result['knn_k']},T={result['knn_t']}"
    out = [EvalEntry(metric="knn_top1", value=round(float(result["knn_top1"]), 4), config=knn_cfg, **common)]
    if result.get("knn_top5") is not None:
        out.append(EvalEntry(metric="knn_top5", value=round(float(result["knn_top5"]), 4), config=knn_cfg, **common))
    if result.get("linear_top1") is not None:
        out.append(EvalEntry(metric="linear_top1", value=round(float(result["linear_top1"]), 4),
                             config=result.get("linear_config"), **common))
    return out


def _results_table(all_results: dict[str, dict[str, Any]]) -> str:
    lines = [_START, "### Evaluation (`mimcl eval`)", "",
             "Frozen pooled features; weighted kNN (DINO protocol, cosine) and a linear probe (logistic regression "
             "on standardized features, L-BFGS).", "",
             "| dataset | kNN top-1 | kNN top-5 | linear top-1 | train / test |", "| --- | --- | --- | --- | --- |"]

    def f(v):
        return "–" if v is None else f"{float(v):.4f}"

    for name, r in sorted(all_results.items()):
        title = _DATASET_NAMES.get(name) or model_index_dataset(name).removeprefix(LOCAL_PREFIX)   # no local paths
        lines.append(f"| {md_cell(title)} | {f(r.get('knn_top1'))} | "
                     f"{f(r.get('knn_top5'))} | {f(r.get('linear_top1'))} | {r.get('num_train', '?')} / "
                     f"{r.get('num_test', '?')} |")
    lines += ["", _END]
    return "\n".join(lines)


def _read_card(path: Path | None):
    """``(ModelCard, RunCard)`` of ``path`` (``None``: a repo without a card, an empty one), or a ``ValueError``
    naming the file."""
    try:
        if path is None:
            from huggingface_hub import ModelCard

            card = ModelCard("")
        else:
            card = load_model_card(path)
        return card, RunCard.from_model_card(card)
    except ValueError as e:
        raise ValueError(f"{path}: {e}; neither {EVAL_RESULTS_NAME} nor README.md was written (fix the card's YAML "
                         "metadata, or move README.md away to evaluate without a card)") from e


def _updated_card(path: Path | None, results: dict[str, dict[str, Any]], all_results: dict[str, dict[str, Any]],
                  name: str) -> str:
    """The text of ``path``'s card (``None``: an empty card) with ``results`` merged in (see
    :func:`update_model_card`); writes nothing."""
    card, run = _read_card(path)
    new = [entry for dataset, res in results.items() for entry in eval_entries(dataset, res)]
    run = run.merge_results(new)
    # the model-index from the RunCard; a result of the card that was not replaced keeps its own EvalResult (a
    # card from elsewhere keeps its task names and dataset configs)
    kept = {EvalEntry.from_eval_result(r).key: r for r in (card.data.eval_results or [])}
    replaced = {entry.key for entry in new}
    data = card.data
    data.eval_results = [kept[e.key] if e.key in kept and e.key not in replaced else e.to_eval_result()
                         for e in run.results]
    data.model_name = run.model_id or name
    metrics = list(data.metrics or [])
    if "accuracy" not in metrics and data.get("mimcl_hub") is not None:   # our own cards' field; others' stay
        data.metrics = metrics + ["accuracy"]
    table = _results_table(all_results)
    text = card.text
    if _START in text and _END in text:
        head, _, rest = text.partition(_START)
        _, _, tail = rest.partition(_END)
        text = head + table + tail
    elif "\n## Training" in text:
        head, _, tail = text.partition("\n## Training")
        text = head + "\n" + table + "\n\n## Training" + tail
    else:
        text = text.rstrip("\n") + "\n\n" + table + "\n"
    card.text = text
    return str(card.content)


def update_model_card(folder: str | os.PathLike, results: dict[str, dict[str, Any]],
                      all_results: dict[str, dict[str, Any]] | None = None) -> Path:
    """Merge ``results`` (dataset -> metrics, see :func:`eval_entries`) into ``folder/README.md``: the card is
    parsed into a :class:`~mimcl_hub.hub.card.RunCard`, the results merged into it, and its ``model-index`` and
    results table (``all_results``, default ``results``) written from it; the rest of the card stays.

    Raises:
        FileNotFoundError: no ``README.md``.
        ValueError: the card does not parse or holds bad values (names the file); it is left as it was.
    """
    path = Path(folder) / "README.md"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: no model card to update")
    text = _updated_card(path, results, all_results if all_results is not None else results,
                         Path(folder).absolute().name)
    atomic_write_text(path, text)
    return path


_COMMIT_ID = re.compile(r"[0-9a-f]{40}")


def _push_branch(revision: str | None, create_pr: bool) -> str:
    """The branch results are committed to (or a pull request is opened against): ``revision`` when it names
    one, else ``main``; a commit id is only a starting point, for a pull request."""
    if revision is None or (create_pr and _COMMIT_ID.fullmatch(revision)):
        return "main"
    if _COMMIT_ID.fullmatch(revision):
        raise ValueError(f"--revision {revision} is a commit id: --push commits the results on top of a branch; "
                         "pass a branch name, or add --create_pr to open a pull request from that commit")
    return revision


def _hub_commit(repo_id: str, revision: str | None, token: str | bool | None) -> str:
    """The commit id ``revision`` (default main) of the model repo ``repo_id`` points at now."""
    from huggingface_hub import HfApi

    try:
        return HfApi(token=token).repo_info(repo_id, revision=revision).sha
    except (OSError, ValueError) as e:      # no such repo / revision, no access, offline (HfHubHTTPError is OSError)
        from huggingface_hub.constants import ENDPOINT

        raise FileNotFoundError(f"encoder {repo_id!r}{f' revision {revision!r}' if revision else ''}: could not be "
                                f"read from {ENDPOINT} ({type(e).__name__}: {' '.join(str(e).split())[:300]})") from e


def push_eval_results(repo_id: str, results: dict[str, dict[str, Any]], parent_commit: str,
                      revision: str | None = None, create_pr: bool = False, token: str | None = None,
                      commit_message: str | None = None) -> dict[str, Any]:
    """Send evaluation results back to a model repo (see the module docstring): the repo's ``README.md`` and
    ``eval_results.json`` at ``parent_commit`` are read, ``results`` (dataset -> metrics, see
    :func:`eval_entries`) merged into them as :func:`update_model_card` does, and both committed on top of
    ``parent_commit`` to the branch ``revision`` (default main) — or, with ``create_pr``, a pull request from it.

    Returns:
        ``{"url", "committed", "pull_request", "revision"}``: the commit URL (the pull request URL with
        ``create_pr``; ``None`` and ``committed: False`` when the repo already holds these results),
        ``revision`` = ``parent_commit``.

    Raises:
        ValueError: a card that does not parse (named); :class:`~mimcl_hub.hub.push.PushError` (a ValueError)
        when the commit fails, :class:`~mimcl_hub.hub.push.StaleRevisionError` when the branch moved past
        ``parent_commit`` (nothing committed).
    """
    from huggingface_hub import HfApi, hf_hub_download

    from ..hub.push import push_folder

    branch = _push_branch(revision, create_pr)
    present = {s.rfilename for s in (HfApi(token=token).repo_info(repo_id, revision=parent_commit).siblings or [])}
    fetched = {name: Path(hf_hub_download(repo_id, name, revision=parent_commit, token=token))
               for name in ("README.md", EVAL_RESULTS_NAME) if name in present}
    previous: dict[str, Any] = {}
    if EVAL_RESULTS_NAME in fetched:
        try:
            previous = json.loads(fetched[EVAL_RESULTS_NAME].read_text(encoding="utf-8")).get("results", {})
        except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
            previous = {}
        previous = previous if isinstance(previous, dict) else {}
    all_results = {**previous, **results}
    files = {"README.md": _updated_card(fetched.get("README.md"), results, all_results, repo_id),
             EVAL_RESULTS_NAME: json.dumps({"model": repo_id, "results": all_results}, indent=2,
                                           sort_keys=True) + "\n"}
    out = {"url": None, "committed": False, "pull_request": bool(create_pr), "revision": parent_commit}
    if all(name in fetched and fetched[name].read_text(encoding="utf-8") == text for name, text in files.items()):
        return out
    message = commit_message or (f"mimcl eval: {', '.join(sorted(results))} results (kNN / linear probe) of "
                                 f"{parent_commit[:7]}")
    with tempfile.TemporaryDirectory(prefix="mimcl_eval_push_") as tmp:
        for name, text in files.items():
            Path(tmp, name).write_text(text, encoding="utf-8")
        out["url"] = push_folder(tmp, repo_id, mirror=False, revision=branch, parent_commit=parent_commit,
                                 create_pr=create_pr, token=token, commit_message=message)
    out["committed"] = True
    return out


def _features(encoder, ds, batch_size: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    from .knn import extract_features

    return extract_features(encoder.model, DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=0),
                            device=device)


def evaluate_encoder(model_dir_or_repo: str | os.PathLike, datasets: str | Iterable[str] = ("digits",), knn_k: int = 20,
                     knn_t: float = 0.07, linear: bool = True, image_column: str | None = None,
                     label_column: str | None = None, max_train: int | None = None, max_test: int | None = None,
                     batch_size: int = 256, device: str | torch.device | None = None, seed: int = 0,
                     linear_epochs: int = 100, linear_weight_decay: float = 1e-4, revision: str | None = None,
                     token: str | bool | None = None, output_dir: str | os.PathLike | None = None,
                     update_card: bool = True, push: bool = False, create_pr: bool = False) -> dict[str, Any]:
    """kNN (+ linear) top-1 of a saved encoder on each dataset; see the module docstring.

    ``push`` (a Hub repo id only): send the results back to the repo's card at ``revision`` (default main),
    committed on top of the commit evaluated; ``create_pr``: open a pull request with them instead (needs
    ``push``). See :func:`push_eval_results`.

    Returns ``{"model": ..., "results": {dataset: {"knn_top1", "knn_top5", "linear_top1", "num_train",
    "num_test", "num_classes", "knn_k", "knn_t", "seconds", ...}}, "eval_results_path": ..., "card_path": ...}``
    and, with ``push``, ``"revision"`` (the commit evaluated) and ``"push"`` (:func:`push_eval_results`' answer).

    Raises:
        ValueError / FileNotFoundError: an unknown dataset (named), a dataset refused by
        :func:`~mimcl_hub.eval.knn.load_knn_datasets` (names the dataset, split and column), a bad encoder
        folder, ``create_pr`` without ``push``, ``push`` for a local folder, with ``update_card=False`` or with
        a commit id as ``revision`` (without ``create_pr``); nothing is written then.
        :class:`~mimcl_hub.hub.push.PushError` (a ValueError): the commit failed; its message ends with the
        results (``output_dir``, when given, is written before the push).
    """
    from ..hub.encoder import MIMCLEncoder
    from .knn import knn_accuracy
    from .labelled import SOURCES_HINT, load_knn_datasets
    from .linear import linear_probe

    if isinstance(datasets, (str, os.PathLike)):
        datasets = [datasets]
    datasets = list(dict.fromkeys(os.fspath(d) if isinstance(d, os.PathLike) else d for d in datasets))  # once each
    if not datasets:
        raise ValueError("evaluate_encoder: no dataset given")
    check_number("--knn_k", knn_k, 1, None, integer=True)                # flag names as `mimcl eval` spells them
    check_number("--knn_t", knn_t, 0, None, low_open=True)
    check_number("--max_train", max_train, 1, None, integer=True, allow_none=True)
    check_number("--max_test", max_test, 1, None, integer=True, allow_none=True)
    check_number("batch_size", batch_size, 1, None, integer=True)
    check_number("linear_epochs", linear_epochs, 1, None, integer=True)
    check_number("linear_weight_decay", linear_weight_decay, 0, None)
    check_number("seed", seed, 0, 2**32 - 1, integer=True)
    # results go into the encoder folder (or output_dir): never into, around or inside a dataset being read
    check_output_apart(output_dir if output_dir is not None else model_dir_or_repo,
                       {f"--dataset {d}": d for d in datasets},
                       what="--output_dir" if output_dir is not None else "the encoder folder")
    is_local = os.path.isdir(os.fspath(model_dir_or_repo))
    commit = None
    if create_pr and not push:
        raise ValueError("--create_pr opens a pull request with the results on the model's Hub repo: it needs --push")
    if push:
        if is_local:
            raise ValueError(f"--push sends the results to a Hub model's card, and "
                             f"{os.fspath(model_dir_or_repo)!r} is a local folder: evaluate the Hub model "
                             "(`mimcl eval ORG/NAME --push`), or update the "
                             "folder (`mimcl eval DIR`) and upload it (`mimcl push DIR --repo_id ORG/NAME`)")
        if not update_card:
            raise ValueError("--push commits the updated model card: it cannot be combined with --no_card")
        from .._safety import check_repo_id

        check_repo_id(os.fspath(model_dir_or_repo), what="MODEL for --push (a Hub repo id)")
        _push_branch(revision, create_pr)                     # a commit id without --create_pr: before any work
        commit = _hub_commit(os.fspath(model_dir_or_repo), revision, token)
    encoder = MIMCLEncoder.from_pretrained(model_dir_or_repo, revision=commit or revision, token=token, device=device)
    target = Path(output_dir) if output_dir is not None else (Path(model_dir_or_repo) if is_local else None)
    card_src = None                      # the card to update, parsed now: a broken one fails before any work
    if target is not None and update_card:
        for candidate in (target / "README.md", encoder.folder / "README.md" if encoder.folder else None):
            if candidate is not None and candidate.is_file():
                card_src = candidate
                _read_card(card_src)
                break
    if push and encoder.folder is not None and (encoder.folder / "README.md").is_file():
        _read_card(encoder.folder / "README.md")             # the Hub card to merge into: a broken one fails now
    data_cfg = encoder.data_config()
    img_size = int(data_cfg["input_size"][-1])
    results: dict[str, dict[str, Any]] = {}
    for name in datasets:
        t0 = time.perf_counter()
        try:
            train_set, test_set = load_knn_datasets(name, img_size=img_size, mean=data_cfg["mean"], std=data_cfg["std"],
                                                    max_train=max_train, max_test=max_test, seed=seed,
                                                    image_column=image_column, label_column=label_column)
        except ValueError:
            raise
        except Exception as e:  # datasets' / Pillow's own errors (unreadable files, offline cache miss, ...)
            raise ValueError(f"evaluation dataset {name!r} could not be loaded ({SOURCES_HINT}): "
                             f"{type(e).__name__}: {e}") from e
        tr_f, tr_y = _features(encoder, train_set, batch_size, device)
        te_f, te_y = _features(encoder, test_set, batch_size, device)
        if not (torch.isfinite(tr_f).all() and torch.isfinite(te_f).all()):
            raise ValueError(f"{model_dir_or_repo}: the encoder produced NaN / inf features on {name!r}")
        num_classes = int(getattr(train_set, "num_classes", 0)) or None
        knn = knn_accuracy(tr_f, tr_y, te_f, te_y, k=knn_k, T=knn_t, num_classes=num_classes)
        # the k used: knn_predict clamps k to the train rows, so the results (and the card) never claim more
        res: dict[str, Any] = {"knn_top1": knn["top1"], "knn_top5": knn.get("top5"),
                               "knn_k": min(knn_k, len(train_set)), "knn_t": knn_t,
                               "split": "test", "num_train": len(train_set), "num_test": len(test_set),
                               "num_classes": num_classes, "img_size": img_size}
        if linear:
            res["linear_top1"] = linear_probe(tr_f, tr_y, te_f, te_y, num_classes=num_classes, epochs=linear_epochs,
                                              weight_decay=linear_weight_decay, seed=seed)
            res["linear_config"] = f"lbfgs,epochs={linear_epochs},wd={linear_weight_decay}"
        res["seconds"] = round(time.perf_counter() - t0, 3)
        results[name] = res

    out: dict[str, Any] = {"model": str(model_dir_or_repo), "results": results, "eval_results_path": None,
                           "card_path": None}
    if target is not None:
        _write_results(out, model_dir_or_repo, target, card_src, results)
    if push:
        from ..hub.push import PushError

        out["revision"] = commit
        try:
            out["push"] = push_eval_results(os.fspath(model_dir_or_repo), results, parent_commit=commit,
                                            revision=revision, create_pr=create_pr,
                                            token=token if isinstance(token, str) else None)
        except PushError as e:         # an hour of evaluation is not lost with the commit
            summary = {name: {k: res.get(k) for k in ("knn_top1", "knn_top5", "linear_top1")}
                       for name, res in results.items()}
            raise type(e)(f"{e}; the results of {commit[:12]} were {json.dumps(summary)}") from e
    return out


def _write_results(out: dict[str, Any], model_dir_or_repo, target: Path, card_src: Path | None,
                   results: dict[str, dict[str, Any]]) -> None:
    """``target/eval_results.json`` (merged with the earlier results, by dataset) and ``target/README.md`` (from
    ``card_src``): both texts are made first, then both written atomically; the paths go into ``out``."""
    path = target / EVAL_RESULTS_NAME
    previous: dict[str, Any] = {}
    if path.is_file():
        try:
            previous = json.loads(path.read_text(encoding="utf-8")).get("results", {})
        except (json.JSONDecodeError, AttributeError):
            previous = {}
    all_results = {**previous, **results}
    # both texts first, then both writes: a card that cannot be updated leaves eval_results.json as it was too
    json_text = json.dumps({"model": str(model_dir_or_repo), "results": all_results}, indent=2, sort_keys=True) + "\n"
    card_text = (_updated_card(card_src, results, all_results, target.absolute().name)
                 if card_src is not None else None)
    target.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json_text)
    out["eval_results_path"] = str(path)
    if card_text is not None:
        atomic_write_text(target / "README.md", card_text)
        out["card_path"] = str(target / "README.md")
