"""Load a saved encoder folder (or Hub repo) as a plain ``nn.Module``: :class:`MIMCLEncoder`.

``MIMCLEncoder.from_pretrained(DIR | "org/name")`` reads the folder written by
:func:`mimcl_hub.hub.save.save_encoder` — ``config.json`` (timm format), ``model.safetensors``,
``README.md`` — builds the timm model from ``architecture`` + ``model_args`` with ``num_classes=0``
(timm's own config parser, exactly what ``timm.create_model("local-dir:DIR", pretrained=True)`` uses) and
loads the weights strictly. Hub repo ids are fetched with ``huggingface_hub.snapshot_download`` (which
honours ``HF_ENDPOINT``, ``HF_TOKEN`` and ``HF_HUB_OFFLINE``).

Only safetensors weights are read. Pickle checkpoints (``pytorch_model.bin``, ``*.pth``) are refused unless
``allow_pickle=True``, and even then they go through ``torch.load(weights_only=True)``.

Every file is untrusted (:mod:`mimcl_hub.hub.loading`): ``config.json`` and the safetensors header are bounded,
parsed and type-checked before use,
the architecture is built on the ``meta`` device and compared with the weight file (names, shapes, dtypes, hence its
size) before any real allocation, and non-finite weights are refused. Every defect is a ``ValueError`` (or
``FileNotFoundError`` for a missing file) naming the file and what is wrong.

``forward(pixel_values)`` returns pooled (B, D) features; :meth:`MIMCLEncoder.embed` takes PIL images or
uint8 arrays and applies the model's own preprocessing (``timm.data.resolve_data_config`` +
``create_transform``, eval mode). :meth:`MIMCLEncoder.save_pretrained` writes the same folder back
(via ``save_encoder``), keeping the model card, and :meth:`MIMCLEncoder.push_to_hub` uploads that folder with
:func:`mimcl_hub.hub.push.push_encoder` (the code ``mimcl push`` and training's ``--push_to_hub`` use): the
``huggingface_hub.ModelHubMixin`` shape, ``save_pretrained(dir, push_to_hub=True, repo_id=...)`` included::

    encoder = MIMCLEncoder.from_pretrained("runs/vit/encoder")
    url = encoder.push_to_hub("my-org/vit-simclr-infoaug")          # one verified commit (none when unchanged)
    same = MIMCLEncoder.from_pretrained("my-org/vit-simclr-infoaug")  # same weights, config.json and README.md
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from .._atomic import atomic_write_bytes
from .._safety import check_repo_id
from .loading import CONFIG_NAME, MAX_CONFIG_BYTES, MAX_HEADER_BYTES, PICKLE_NAMES, WEIGHTS_NAME, load_encoder_folder

__all__ = ["CONFIG_NAME", "MAX_CONFIG_BYTES", "MAX_HEADER_BYTES", "MIMCLEncoder", "PICKLE_NAMES", "WEIGHTS_NAME"]

CARD_NAME = "README.md"
_HUB_FILES = [CONFIG_NAME, WEIGHTS_NAME, CARD_NAME, "*.png", "eval_results.json", "training_metrics.json"]


def _looks_like_path(name: str) -> bool:
    return name.startswith((".", "/", "~")) or "\\" in name or os.path.exists(name)


def resolve_folder(path_or_repo_id: str | os.PathLike, revision: str | None = None, token: str | bool | None = None,
                   allow_pickle: bool = False, cache_dir: str | None = None) -> Path:
    """A local folder as is, or a Hub repo id downloaded with ``snapshot_download`` (config, weights, card)."""
    name = os.fspath(path_or_repo_id)
    if os.path.isdir(name):
        return Path(name)
    if os.path.exists(name):
        raise FileNotFoundError(f"encoder {name!r}: is a file, not an encoder folder (config.json + model.safetensors)")
    if _looks_like_path(name) or name.count("/") != 1:
        raise FileNotFoundError(f"encoder {name!r}: no such folder (and not a Hub repo id of the form ORG/NAME)")
    check_repo_id(name, what="encoder repo id")
    from huggingface_hub import snapshot_download

    patterns = list(_HUB_FILES) + (list(PICKLE_NAMES) + ["*.pth"] if allow_pickle else [])
    try:
        return Path(snapshot_download(repo_id=name, revision=revision, token=token, allow_patterns=patterns,
                                      cache_dir=cache_dir))
    except (OSError, ValueError) as e:     # offline, no such repo / revision, no access: name what was asked for
        from huggingface_hub.constants import ENDPOINT, HF_HUB_OFFLINE

        where = "the local Hugging Face cache (HF_HUB_OFFLINE is set)" if HF_HUB_OFFLINE else ENDPOINT
        raise FileNotFoundError(f"encoder {name!r}{f' revision {revision!r}' if revision else ''}: not a local "
                                f"folder, and it could not be fetched from {where} "
                                f"({type(e).__name__}: {' '.join(str(e).split())})") from e


def _holds_weights(path: Path, model: nn.Module) -> bool:
    """Does the safetensors file ``path`` hold exactly ``model``'s state dict (names, dtypes, shapes, values)?"""
    if not path.is_file():
        return False
    from safetensors.torch import load_file

    try:
        saved = load_file(str(path))
    except Exception:         # unreadable / not safetensors: write the model's own file
        return False
    state = model.state_dict()
    return saved.keys() == state.keys() and all(
        saved[k].dtype == v.dtype and saved[k].shape == v.shape and torch.equal(saved[k], v.detach().cpu())
        for k, v in state.items())


class MIMCLEncoder(nn.Module):
    """A saved mimcl_hub encoder: a headless timm backbone plus its config and model card.

    Attributes:
        model: the timm backbone (``num_classes=0``).
        config: the ``config.json`` dict.
        folder: where it was loaded from (a Hub snapshot folder for repo ids), or ``None``.
    """

    def __init__(self, model: nn.Module, config: Mapping[str, Any] | None = None, folder: str | os.PathLike | None = None):
        super().__init__()
        self.model = model
        if config is None:
            from .save import encoder_config

            config = encoder_config(model)
        self.config = dict(config)
        self.folder = Path(folder) if folder is not None else None
        self._transform = None

    # ---------------------------------------------------------------------------------------- loading

    @classmethod
    def from_pretrained(cls, path_or_repo_id: str | os.PathLike, revision: str | None = None,
                        token: str | bool | None = None, device: torch.device | str | None = None,
                        allow_pickle: bool = False, cache_dir: str | None = None) -> "MIMCLEncoder":
        """Load a local encoder folder or a Hub repo id (``ORG/NAME``, through ``snapshot_download``).

        Every file is treated as untrusted and checked before it is used: ``config.json`` (UTF-8 JSON object, typed
        fields, ranged sizes), the safetensors header (bounded length, offsets within the real file size), then the
        architecture is built on the ``meta`` device and compared with the file (names, shapes, dtype kinds, hence
        its size) before anything is allocated; only then is it built for real and loaded strictly. Weights with
        NaN / inf are refused.

        Raises:
            FileNotFoundError: no such folder, or ``config.json`` / ``model.safetensors`` missing or not a regular
                file (named).
            ValueError: a bad config, a damaged weight file, weights that do not match the architecture (both files
                and both sizes named), non-finite weights, or a pickle checkpoint without ``allow_pickle=True``.
        """
        folder = resolve_folder(path_or_repo_id, revision=revision, token=token, allow_pickle=allow_pickle,
                                cache_dir=cache_dir)
        model, config = load_encoder_folder(folder, allow_pickle)
        encoder = cls(model, config, folder).eval()
        if device is not None:
            encoder.to(device)
        return encoder

    # ---------------------------------------------------------------------------------------- properties

    @property
    def pretrained_cfg(self) -> dict[str, Any]:
        return dict(getattr(self.model, "pretrained_cfg", {}) or {})

    @property
    def num_features(self) -> int:
        return int(self.model.num_features)

    @property
    def device(self) -> torch.device:
        try:
            return next(self.parameters()).device
        except StopIteration:
            return torch.device("cpu")

    @property
    def card(self):
        """The ``huggingface_hub.ModelCard`` of ``README.md``, or ``None`` when the folder has none."""
        if self.folder is None or not (self.folder / CARD_NAME).is_file():
            return None
        from huggingface_hub import ModelCard

        return ModelCard.load(self.folder / CARD_NAME)

    def data_config(self) -> dict[str, Any]:
        """timm's ``resolve_data_config`` for this model (input size, mean, std, interpolation, crop)."""
        from timm.data import resolve_data_config

        return resolve_data_config({}, model=self.model)

    @property
    def transform(self):
        """The eval transform (``timm.data.create_transform(**data_config(), is_training=False)``)."""
        if self._transform is None:
            from timm.data import create_transform

            self._transform = create_transform(**self.data_config(), is_training=False)
        return self._transform

    # ---------------------------------------------------------------------------------------- inference

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) preprocessed images -> (B, D) pooled features."""
        return self.model(pixel_values)

    def preprocess(self, images: Any) -> torch.Tensor:
        """PIL image(s) or uint8 array(s) (H, W, 3) / (N, H, W, 3) / (H, W) -> (N, C, H, W) float tensor."""
        from PIL import Image

        if isinstance(images, Image.Image):
            images = [images]
        elif isinstance(images, (np.ndarray, torch.Tensor)):
            arr = np.asarray(images.cpu() if isinstance(images, torch.Tensor) else images)
            if arr.dtype != np.uint8:
                raise ValueError(f"embed: arrays must be uint8 (H, W[, 3]) images, got {arr.dtype}")
            images = [arr] if arr.ndim == 2 or (arr.ndim == 3 and arr.shape[-1] in (1, 3, 4)) else list(arr)
        if not isinstance(images, Sequence) or len(images) == 0:
            raise ValueError("embed: pass a PIL image, a list of them, or a uint8 array (N, H, W, 3)")
        out = []
        for i, im in enumerate(images):
            if not isinstance(im, Image.Image):
                arr = np.asarray(im)
                if arr.dtype != np.uint8 or arr.ndim not in (2, 3):
                    raise ValueError(f"embed: image {i} is not a PIL image or uint8 (H, W[, C]) array "
                                     f"({arr.dtype} {arr.shape})")
                if arr.ndim == 3 and arr.shape[-1] == 1:
                    arr = arr[..., 0]
                im = Image.fromarray(arr)
            out.append(self.transform(im.convert("RGB")))
        return torch.stack(out)

    @torch.no_grad()
    def embed(self, images: Any, batch_size: int = 256) -> torch.Tensor:
        """Pooled features (N, D) of PIL images / uint8 arrays, with the model's own eval preprocessing."""
        x = self.preprocess(images)
        was_training = self.training
        self.eval()
        try:
            feats = [self(x[i:i + batch_size].to(self.device)).float().cpu() for i in range(0, len(x), batch_size)]
        finally:
            self.train(was_training)
        return torch.cat(feats)

    # ---------------------------------------------------------------------------------------- saving

    def save_pretrained(self, folder: str | os.PathLike, card: Any = None, *, repo_id: str | None = None,
                        push_to_hub: bool = False, token: str | None = None, private: bool = False,
                        revision: str | None = None, commit_message: str | None = None, create_pr: bool = False,
                        **kwargs: Any) -> str:
        """Write the encoder folder with :func:`~mimcl_hub.hub.save.save_encoder` (atomically); with
        ``push_to_hub=True`` upload it to ``repo_id`` too (:meth:`push_to_hub`'s arguments).

        ``card``: a :class:`~mimcl_hub.hub.card.RunCard` (or a mapping of its fields) rendered into a new
        ``README.md``. Without it the loaded model card (``README.md``), its twin picture and ``eval_results.json``
        are kept as they are, so ``from_pretrained(save_pretrained(...))`` round-trips; an encoder without a card
        (built from a model) gets a new one. ``repo_id``: the Hub repo the folder is for: a card rendered here
        names it (``hub_model_id``, the repo its "How to use" snippets load) unless the card sets another. Extra
        keyword arguments go to ``save_encoder`` (``heads``, ``heads_config``, ``metrics``, ``twin_figure``).

        Returns:
            The folder's absolute path; with ``push_to_hub`` the commit URL (or pull request URL) instead, as
            ``ModelHubMixin.save_pretrained`` does.

        Raises:
            ValueError: ``push_to_hub`` without ``repo_id`` (nothing written), push arguments without
                ``push_to_hub``, a bad card field; :class:`~mimcl_hub.hub.push.PushError` when the upload fails
                (the folder stays written).
        """
        from .save import as_run_card, save_encoder

        if push_to_hub and not repo_id:
            raise ValueError("save_pretrained(push_to_hub=True) needs repo_id='ORG/NAME' (the Hub repo to push to)")
        if repo_id is not None:
            check_repo_id(repo_id, what="repo_id")
        if not push_to_hub and (token is not None or private or revision is not None or commit_message is not None
                                or create_pr):
            raise ValueError("save_pretrained: token / private / revision / commit_message / create_pr apply to the "
                             "upload only; pass push_to_hub=True (and repo_id) or call push_to_hub")
        loaded_card = self.card if card is None else None
        if card is None and loaded_card is None and repo_id is not None:
            card = {}                    # no card to keep: render one that names the repo
        if card is not None and repo_id is not None:
            card = as_run_card(card)
            if card.hub_model_id is None:
                card = dataclasses.replace(card, hub_model_id=repo_id)
        src = self.folder
        if src is not None and "twin_figure" not in kwargs and (src / "twins.png").is_file():
            kwargs["twin_figure"] = str(src / "twins.png")
        extra: dict[str, bytes] = {}
        if card is None and src is not None:
            for name in ("eval_results.json",):
                if (src / name).is_file():
                    extra[name] = (src / name).read_bytes()
            if (src / "training_metrics.json").is_file() and "metrics" not in kwargs:
                kwargs["metrics"] = json.loads((src / "training_metrics.json").read_text(encoding="utf-8"))
        out = Path(save_encoder(self.model, folder, card, **kwargs))
        if src is not None and _holds_weights(src / WEIGHTS_NAME, self.model):
            # unchanged weights keep their file byte for byte: a file written elsewhere (or by an older mimcl_hub, with
            # other __metadata__) may differ from a new one in the header alone, and a re-push of it commits nothing
            extra[WEIGHTS_NAME] = (src / WEIGHTS_NAME).read_bytes()
        if loaded_card is not None:
            extra[CARD_NAME] = str(loaded_card.content).encode("utf-8")
        for name, data in extra.items():
            atomic_write_bytes(out / name, data)
        if push_to_hub:
            from .push import push_encoder

            return push_encoder(out, repo_id, token=token, private=private, revision=revision, create_pr=create_pr,
                                commit_message=commit_message or self._commit_message())
        return str(out)

    def push_to_hub(self, repo_id: str, *, card: Any = None, token: str | None = None, private: bool = False,
                    revision: str | None = None, commit_message: str | None = None, create_pr: bool = False,
                    endpoint: str | None = None, max_retries: int | None = None,
                    backoff: float | None = None) -> str:
        """Upload this encoder to the model repo ``repo_id``: :meth:`save_pretrained` into a temporary folder (the
        files training writes: ``config.json``, ``model.safetensors``, ``README.md``, ``training_metrics.json``
        and, when loaded with them, ``eval_results.json`` / ``twins.png``), then
        :func:`~mimcl_hub.hub.push.push_encoder` — the code of ``mimcl push`` and of training's ``--push_to_hub``:
        one verified atomic commit, retried on transient faults, the repo mirroring the folder.

        ``card``: as in :meth:`save_pretrained` (default: the loaded card, unchanged; a new card naming
        ``repo_id`` for an encoder without one). ``revision``: the branch (default ``main``, created when
        missing). ``create_pr``: open a pull request against that branch instead of committing to it (the repo
        must exist). ``endpoint`` / ``token`` default to ``HF_ENDPOINT`` / ``HF_TOKEN`` (or the saved login);
        ``max_retries`` / ``backoff`` to ``MIMCL_PUSH_MAX_RETRIES`` / ``MIMCL_PUSH_BACKOFF``.

        Returns:
            The commit URL (the pull request URL with ``create_pr``). When the repo already holds exactly these
            files nothing is committed and the URL of the commit holding them is returned.

        Raises:
            :class:`~mimcl_hub.hub.push.PushError` (a ``ValueError``): a bad repo id / revision, a refused
            token, or an upload that failed (nothing is reported as pushed unless the Hub holds every file).
        """
        from .push import PushError, push_encoder

        try:
            check_repo_id(repo_id, what="repo_id")
        except ValueError as e:
            raise PushError(str(e)) from e
        with tempfile.TemporaryDirectory(prefix="mimcl_push_") as tmp:
            folder = self.save_pretrained(Path(tmp) / repo_id.split("/")[-1], card=card, repo_id=repo_id)
            return push_encoder(folder, repo_id, token=token, private=private, revision=revision,
                                create_pr=create_pr, endpoint=endpoint, max_retries=max_retries, backoff=backoff,
                                commit_message=commit_message or self._commit_message())

    def _commit_message(self) -> str:
        return f"Upload {self.config.get('architecture', 'encoder')} encoder with mimcl_hub (MIMCLEncoder.push_to_hub)"

    def extra_repr(self) -> str:
        return f"architecture={self.config.get('architecture')!r}, num_features={self.config.get('num_features')}"
