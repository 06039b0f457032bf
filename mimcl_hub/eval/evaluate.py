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

For a Hub repo id nothing is written unless ``output_dir`` is given (the download cache is not a place to edit).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Iterable

import torch
from torch.utils.data import DataLoader

from .._atomic import atomic_write_text
from .._safety import check_number, check_output_apart
from .._markdown import md_cell
from ..hub.card import LOCAL_DATASETS, LOCAL_PREFIX, EvalEntry, RunCard, load_model_card, model_index_dataset

__all__ = ["EVAL_RESULTS_NAME", "eval_entries", "evaluate_encoder", "update_model_card"]

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


def _read_card(path: Path):
    """``(ModelCard, RunCard)`` of ``path``, or a ``ValueError`` naming the file."""
    try:
        card = load_model_card(path)
        return card, RunCard.from_model_card(card)
    except ValueError as e:
        raise ValueError(f"{path}: {e}; neither {EVAL_RESULTS_NAME} nor README.md was written (fix the card's YAML "
                         "metadata, or move README.md away to evaluate without a card)") from e


def _updated_card(path: Path, results: dict[str, dict[str, Any]], all_results: dict[str, dict[str, Any]],
                  name: str) -> str:
    """The text of ``path``'s card with ``results`` merged in (see :func:`update_model_card`); writes nothing."""
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
    if "accuracy" not in metrics:
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
                     update_card: bool = True) -> dict[str, Any]:
    """kNN (+ linear) top-1 of a saved encoder on each dataset; see the module docstring.

    Returns ``{"model": ..., "results": {dataset: {"knn_top1", "knn_top5", "linear_top1", "num_train",
    "num_test", "num_classes", "knn_k", "knn_t", "seconds", ...}}, "eval_results_path": ..., "card_path": ...}``.

    Raises:
        ValueError / FileNotFoundError: an unknown dataset (named), a dataset refused by
        :func:`~mimcl_hub.eval.knn.load_knn_datasets` (names the dataset, split and column), or a bad encoder
        folder; nothing is written then.
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
    encoder = MIMCLEncoder.from_pretrained(model_dir_or_repo, revision=revision, token=token, device=device)
    is_local = os.path.isdir(os.fspath(model_dir_or_repo))
    target = Path(output_dir) if output_dir is not None else (Path(model_dir_or_repo) if is_local else None)
    card_src = None                      # the card to update, parsed now: a broken one fails before any work
    if target is not None and update_card:
        for candidate in (target / "README.md", encoder.folder / "README.md" if encoder.folder else None):
            if candidate is not None and candidate.is_file():
                card_src = candidate
                _read_card(card_src)
                break
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
    if target is None:
        return out
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
    return out
