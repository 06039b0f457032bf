"""``mimcl leaderboard``: encoders ranked by their model cards' ``model-index`` in markdown, JSON and HTML;
broken cards reported per model; Hub sources (repo ids, ``author:`` / ``tag:`` queries), the results dataset
and the static Space against the local Hub server (tests/hub_server.py); the HTML page in headless Chromium.

The encoder folders are real ones: ``save_encoder`` writes them and ``update_model_card`` (what ``mimcl eval``
calls) puts kNN + linear-probe results into their cards; the scores are set so that each ranking differs."""

import contextlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch

import mimcl_hub  # noqa: F401  (registers the small-image variants)
from mimcl_hub.eval.evaluate import update_model_card
from mimcl_hub.hub import save_encoder
from mimcl_hub.hub.leaderboard import (LeaderboardError, build_leaderboard, metric_key, to_html, to_json,
                                       to_markdown, write_leaderboard)
from mimcl_hub.models import create_backbone

sys.path.insert(0, os.path.dirname(__file__))
from hub_server import HubServer, client_env  # noqa: E402

TOKEN = "hf_leaderboardTOKEN9876"
CHROMIUM = "/usr/bin/chromium"
# name -> (twin_mode, kNN top-1, linear top-1): kNN order b, c, a; linear order c, a, b; name order a, b, c
SCORES = {"a": ("mi", 0.55, 0.80), "b": ("none", 0.72, 0.75), "c": ("random", 0.61, 0.90)}
KNN_ORDER, LINEAR_ORDER = ["b", "c", "a"], ["c", "a", "b"]


def _make_encoder(folder: Path, twin_mode: str, knn: float, linear: float, dataset: str = "digits",
                  backbone=None) -> Path:
    backbone = backbone or create_backbone("vit_tiny_patch4_32", img_size=16)
    save_encoder(backbone, folder, dict(
        objective="simclr", twin_mode=twin_mode, mi_weight=0.5, model_id=folder.parent.name,
        tags=["test-board"], train_metrics={"epoch": 3.0, "global_step": 48, "train_loss": 1.0},
        training_config={"model_name": "vit_tiny_patch4_32", "seed": 0, "per_device_train_batch_size": 8}))
    update_model_card(folder, {dataset: {"knn_top1": knn, "knn_top5": 0.95, "knn_k": 20, "knn_t": 0.07,
                                         "linear_top1": linear, "linear_config": "lbfgs,epochs=100,wd=0.0001",
                                         "num_train": 1097, "num_test": 700}})
    return folder


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("board")
    backbone = create_backbone("vit_tiny_patch4_32", img_size=16)
    return {name: _make_encoder(root / name / "encoder", mode, knn, lin, backbone=backbone)
            for name, (mode, knn, lin) in SCORES.items()}


def _models(rows):
    return [r["model"] for r in rows]


def _md_models(text: str) -> list:
    lines = [line for line in text.splitlines() if line.startswith("| ") and not line.startswith("| rank")
             and not line.startswith("| ---")]
    return [line.split(" | ")[1] for line in lines]


def _html_data(page: str) -> dict:
    raw = re.search(r'<script type="application/json" id="leaderboard-data">(.*?)</script>', page, re.S).group(1)
    return json.loads(raw)


def _mimcl(*args, env=None, cwd=None):
    """``mimcl ARGS``: in this process (``cli.main``, what the console script runs; ~4 s of imports saved per call)
    unless it needs its own environment (a Hub endpoint) or folder. tests/test_cli_bad_input.py checks the real
    process's exit status and one-line errors."""
    if env is None and cwd is None:
        from mimcl_hub.cli import main

        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main([str(a) for a in args])
            except SystemExit as e:            # argparse's usage errors
                code = e.code if isinstance(e.code, int) else 1
        return subprocess.CompletedProcess(list(args), code, out.getvalue(), err.getvalue())
    return subprocess.run([sys.executable, "-m", "mimcl_hub.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=180, env=env, cwd=cwd)


# --------------------------------------------------------------------------------------------- local folders
def test_three_folders_ranked_in_every_format(folders, tmp_path):
    sources = [str(folders[n]) for n in ("a", "b", "c")]
    board = build_leaderboard(sources)
    assert board.sort == "digits/knn_top1" and board.descending and not board.errors
    assert _models(board.rows) == KNN_ORDER
    assert [r["rank"] for r in board.rows] == [1, 2, 3]
    assert board.columns == ["digits/knn_top1", "digits/knn_top5", "digits/linear_top1"]
    top = board.rows[0]
    assert top == {"rank": 1, "model": "b", "backbone": "vit_tiny_patch4_32", "objective": "simclr",
                   "twin_mode": "none", "mi_weight": 0.0, "epochs": 3.0, "steps": 48, "digits/knn_top1": 0.72,
                   "digits/knn_top5": 0.95, "digits/linear_top1": 0.75}
    assert board.rows[1]["mi_weight"] == 0.5                              # an MI branch run keeps its λ

    for fmt in ("md", "json", "html"):                                    # the CLI, each format, to a file
        out = tmp_path / f"board.{fmt}"
        result = _mimcl("leaderboard", *sources, "--format", fmt, "--output", out)
        assert result.returncode == 0, result.stderr
        text = out.read_text()
        models = {"md": _md_models, "json": lambda t: _models(json.loads(t)["rows"]),
                  "html": lambda t: _models(_html_data(t)["rows"])}[fmt](text)
        assert models == KNN_ORDER, fmt
    assert sorted(p.name for p in tmp_path.iterdir()) == ["board.html", "board.json", "board.md"]  # no temp files
    md = (tmp_path / "board.md").read_text()
    assert "| 1 | b | vit_tiny_patch4_32 | simclr | none | 0 | 3 | 48 | 0.7200 | 0.9500 | 0.7500 |" in md
    assert "Ranked by `digits/knn_top1` (highest first)." in md
    assert json.loads((tmp_path / "board.json").read_text()) == json.loads(to_json(board))
    stdout = _mimcl("leaderboard", *sources)                               # default: markdown on stdout
    assert stdout.returncode == 0 and stdout.stdout == to_markdown(board)


@pytest.mark.parametrize("sort, ascending, expected", [
    ("linear_top1", False, LINEAR_ORDER),
    ("digits/linear_top1", True, LINEAR_ORDER[::-1]),
    ("digits/knn_top1", True, KNN_ORDER[::-1]),
    ("model", False, ["a", "b", "c"]),
    ("twin_mode", False, ["a", "b", "c"]),                                # mi < none < random
])
def test_sort_column_and_direction(folders, sort, ascending, expected):
    board = build_leaderboard([str(p) for p in folders.values()], sort=sort, descending=False if ascending else None)
    assert _models(board.rows) == expected
    assert _md_models(to_markdown(board)) == expected


def test_unknown_sort_column_is_a_clear_error(folders):
    with pytest.raises(LeaderboardError, match="unknown sort column 'f1'.*digits/knn_top1"):
        build_leaderboard([str(folders["a"])], sort="f1")
    result = _mimcl("leaderboard", folders["a"], "--sort", "f1")
    assert result.returncode == 2 and "unknown sort column" in result.stderr


def _break_value(card: str) -> str:
    return card.replace("value: 0.55", "value: n/a", 1)


def _break_results_key(card: str) -> str:
    return card.replace("  results:\n", "  resultz:\n", 1)


def _drop_model_index(card: str) -> str:
    start = card.index("model-index:")
    return card[:start] + card[card.index("\n---", start) + 1:]


def _break_yaml(card: str) -> str:
    return card.replace("library_name: timm", "library_name: [timm", 1)


BROKEN_CARDS = {
    "metric value not a number": (_break_value, "has value 'n/a', not a finite number"),
    "model-index without results": (_break_results_key, "could not be parsed: Invalid `model_index`"),
    "no model-index": (_drop_model_index, "no model-index results"),
    "YAML does not parse": (_break_yaml, "could not be parsed"),
    "no README.md": (None, "has no README.md model card"),
}


@pytest.mark.parametrize("kind", sorted(BROKEN_CARDS))
def test_broken_card_is_reported_for_that_model_and_the_rest_ranked(folders, tmp_path, kind):
    breaker, message = BROKEN_CARDS[kind]
    broken = tmp_path / "broken"
    shutil.copytree(folders["a"], broken)
    card = broken / "README.md"
    if breaker is None:
        card.unlink()
    else:
        card.write_text(breaker(card.read_text()))
    sources = [str(folders["b"]), str(broken), str(folders["c"]), str(folders["a"])]
    board = build_leaderboard(sources)
    assert _models(board.rows) == KNN_ORDER
    assert [e["model"] for e in board.errors] == ["broken"]
    assert message in board.errors[0]["error"]
    out = tmp_path / "board.md"
    result = _mimcl("leaderboard", *sources, "--output", out)
    assert result.returncode == 0, result.stderr
    assert f"not ranked: broken: " in result.stderr and message in result.stderr
    assert _md_models(out.read_text()) == KNN_ORDER
    assert "Not ranked (card could not be read):" in out.read_text() and "- `broken`:" in out.read_text()
    assert _html_data(to_html(board))["errors"][0]["model"] == "broken"


def test_missing_values_rank_last_and_new_datasets_get_columns(folders, tmp_path):
    other = _make_encoder(tmp_path / "cifar-only" / "encoder", "mi", 0.99, 0.99, dataset="uoft-cs/cifar10")
    board = build_leaderboard([*map(str, folders.values()), str(other)])
    assert _models(board.rows) == [*KNN_ORDER, "cifar-only"]        # no digits score: last, not first
    first_cifar = build_leaderboard([str(other), *map(str, folders.values())])   # "the first dataset" is cifar
    assert first_cifar.sort == "uoft-cs/cifar10/knn_top1"
    assert _models(first_cifar.rows) == ["cifar-only", "a", "b", "c"]        # the rest tie on None: by name
    assert board.columns[-3:] == ["uoft-cs/cifar10/knn_top1", "uoft-cs/cifar10/knn_top5",
                                  "uoft-cs/cifar10/linear_top1"]
    assert board.rows[-1]["digits/knn_top1"] is None and board.rows[-1]["uoft-cs/cifar10/knn_top1"] == 0.99
    assert "| 4 | cifar-only |" in to_markdown(board) and "| – |" in to_markdown(board)


def test_card_from_elsewhere_without_mimcl_block_still_ranks(folders, tmp_path):
    plain = tmp_path / "plain"
    shutil.copytree(folders["c"], plain)
    card = (plain / "README.md").read_text()
    start = card.index("mimcl_hub:\n")
    end = card.index("model-index:")
    (plain / "README.md").write_text(card[:start] + card[end:])
    row = build_leaderboard([str(plain)]).rows[0]
    assert row["backbone"] == "vit_tiny_patch16_224"             # config.json's timm architecture
    assert row["objective"] == "simclr"                          # from the card's tags
    assert row["twin_mode"] is None and row["epochs"] is None and row["digits/knn_top1"] == 0.61


@pytest.mark.parametrize("source, message", [
    ("does/not/exist", "not an encoder folder, a Hub repo id"),
    ("../escape", "not an encoder folder, a Hub repo id"),
    ("org/na me", "not an encoder folder, a Hub repo id"),
    ("author:", "author: needs a value"),
    ("author:x,author:y", "given twice"),
])
def test_bad_sources_fail_before_any_request(source, message):
    with pytest.raises(LeaderboardError, match=re.escape(message)):
        build_leaderboard([source], endpoint="http://127.0.0.1:9")   # nothing listens there: no request is made
    result = _mimcl("leaderboard", source)
    assert result.returncode == 2 and message in result.stderr


def test_metric_key_reads_mimcl_and_foreign_results():
    from huggingface_hub import EvalResult

    common = dict(task_type="image-classification", dataset_type="d", dataset_name="d")
    assert metric_key(EvalResult(metric_type="accuracy", metric_value=1, metric_name="kNN top-1 accuracy",
                                 **common)) == "knn_top1"
    assert metric_key(EvalResult(metric_type="top_5_accuracy", metric_value=1, metric_name="kNN top-5 accuracy",
                                 **common)) == "knn_top5"
    # the Hub groups a card's metrics by dataset, so the linear probe may come back under the kNN task name
    assert metric_key(EvalResult(task_name="kNN classification", metric_type="accuracy", metric_value=1,
                                 metric_name="Linear probe top-1 accuracy", **common)) == "linear_top1"
    assert metric_key(EvalResult(metric_type="accuracy", metric_value=1, **common)) == "accuracy"
    assert metric_key(EvalResult(metric_type="Mean IoU", metric_value=1, **common)) == "mean_iou"


def test_markdown_and_html_escape_model_names(folders, tmp_path):
    hostile = tmp_path / "x|y<img src=x onerror=alert(1)>"
    shutil.copytree(folders["a"], hostile)
    board = build_leaderboard([str(hostile)])
    assert "| x\\|y<img src=x onerror=alert(1)> |" in to_markdown(board)
    page = to_html(board)
    assert "<img src=x" not in page                                # only inside JSON, as \u003c
    assert _html_data(page)["rows"][0]["model"] == hostile.name
    write_leaderboard(board, tmp_path / "hostile.html")
    page_check = _browser_check(tmp_path / "hostile.html", script="""
        () => ({imgs: document.querySelectorAll("img").length,
                cell: document.querySelector("#rows tr td:nth-child(2)").textContent})""")
    if page_check is not None:
        assert page_check == {"imgs": 0, "cell": hostile.name}


# --------------------------------------------------------------------------------------------- headless Chromium
def _browser():
    """Playwright driving Debian's chromium; skipped only where neither is installed (CI installs both and sets
    MIMCL_REQUIRE_BROWSER=1, which turns the skip into a failure)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sync_playwright = None
    if sync_playwright is None or not os.path.exists(CHROMIUM):
        if os.environ.get("MIMCL_REQUIRE_BROWSER") == "1":
            pytest.fail(f"MIMCL_REQUIRE_BROWSER=1 but playwright / {CHROMIUM} is missing")
        pytest.skip(f"needs the playwright package and Debian chromium at {CHROMIUM}")
    return sync_playwright


_CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _open(p, url):
    browser = p.chromium.launch(executable_path=CHROMIUM, args=_CHROMIUM_ARGS)
    page = browser.new_page(viewport={"width": 1280, "height": 600})
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(url)
    return browser, page, errors


def _browser_check(path: Path, script: str):
    sync_playwright = _browser()
    with sync_playwright() as p:
        browser, page, errors = _open(p, path.as_uri())
        try:
            out = page.evaluate(script)
        finally:
            browser.close()
    assert not errors, errors
    return out


def _shown(page) -> list:
    return page.locator("#rows tr").evaluate_all("rows => rows.map(r => r.dataset.model)")


def test_html_page_loads_sorts_filters_in_chromium(folders, tmp_path):
    sync_playwright = _browser()
    broken = tmp_path / "broken"
    shutil.copytree(folders["a"], broken)
    (broken / "README.md").write_text(_break_value((broken / "README.md").read_text()))
    path = tmp_path / "board.html"
    result = _mimcl("leaderboard", *[str(p) for p in folders.values()], broken, "--output", path)
    assert result.returncode == 0, result.stderr
    with sync_playwright() as p:
        browser, page, errors = _open(p, path.as_uri())
        try:
            assert page.title() == "mimcl_hub encoder leaderboard"
            assert _shown(page) == KNN_ORDER                                   # loads, ranked
            knn = page.locator("th[data-key='digits/knn_top1']")
            assert knn.get_attribute("aria-sort") == "descending"
            knn.click()                                                        # click: ascending
            assert _shown(page) == KNN_ORDER[::-1] and knn.get_attribute("aria-sort") == "ascending"
            page.locator("th[data-key='digits/linear_top1']").click()          # another metric: highest first
            assert _shown(page) == LINEAR_ORDER
            page.locator("th[data-key='model']").click()                       # text column: A→Z
            assert _shown(page) == ["a", "b", "c"]
            page.fill("#filter", "random")                                     # filter by text in any cell
            assert _shown(page) == ["c"]
            assert page.locator("#count").text_content() == "1 of 3 models"
            page.fill("#filter", "nothing-matches")
            assert _shown(page) == [] and page.locator("#empty").is_visible()
            page.fill("#filter", "")
            page.select_option("#twin_mode", "mi")                             # filter by twin mode
            assert _shown(page) == ["a"]
            page.select_option("#twin_mode", "")
            assert page.locator("#errors li").all_text_contents() == [
                "Not ranked: broken: model-index metric 'digits/knn_top1' has value 'n/a', not a finite number"]
            page.locator("th[data-key='digits/knn_top1']").click()
            shot = tmp_path / "leaderboard.png"
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    assert not errors, errors
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 5000


# --------------------------------------------------------------------------------------------- the Hub
@pytest.fixture(scope="module")
def hub():
    with HubServer(token=TOKEN, user="tester", orgs=("mimcl-org",)) as server:
        yield server


def _run(hub, home, script: str, token=TOKEN):
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], capture_output=True, text=True,
                            timeout=180, env=client_env(hub, home, token))
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


@pytest.fixture(scope="module")
def hub_models(hub, folders, tmp_path_factory):
    """The three encoders pushed to mimcl-org/, a model of another author, and a broken card in mimcl-org/."""
    home = tmp_path_factory.mktemp("hf_home")
    broken = tmp_path_factory.mktemp("broken") / "enc"
    shutil.copytree(folders["a"], broken)
    (broken / "README.md").write_text(_break_results_key((broken / "README.md").read_text()))
    pushes = {f"mimcl-org/vit-{n}": str(folders[n]) for n in ("a", "b", "c")}
    pushes["tester/elsewhere"] = str(folders["b"])
    pushes["mimcl-org/vit-broken"] = str(broken)
    _run(hub, home, f"""
        from mimcl_hub.hub import push_encoder
        for repo, folder in {pushes!r}.items():
            push_encoder(folder, repo)
    """)
    return home


@pytest.mark.parametrize("sources", [
    ["author:mimcl-org"],
    ["tag:test-board,author:mimcl-org"],
    ["mimcl-org/vit-c", "mimcl-org/vit-a", "mimcl-org/vit-b", "mimcl-org/vit-broken"],
])
def test_hub_sources_ranked_with_the_broken_card_reported(hub, hub_models, sources, tmp_path):
    out = tmp_path / "board.json"
    result = subprocess.run([sys.executable, "-m", "mimcl_hub.cli", "leaderboard", *sources, "--output", str(out)],
                            capture_output=True, text=True, timeout=180, env=client_env(hub, tmp_path / "home", TOKEN))
    assert result.returncode == 0, result.stderr
    board = json.loads(out.read_text())
    assert _models(board["rows"]) == [f"mimcl-org/vit-{n}" for n in KNN_ORDER]
    assert [(e["model"], e["error"].split(":")[0]) for e in board["errors"]] == [
        ("mimcl-org/vit-broken", "the model card could not be parsed")]
    assert board["rows"][0]["backbone"] == "vit_tiny_patch4_32" and board["rows"][0]["twin_mode"] == "none"


def test_tag_query_reaches_other_authors(hub, hub_models, tmp_path):
    result = subprocess.run([sys.executable, "-m", "mimcl_hub.cli", "leaderboard", "tag:test-board", "--format", "json"],
                            capture_output=True, text=True, timeout=180, env=client_env(hub, tmp_path, TOKEN))
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)["rows"]
    assert sorted(_models(rows)) == ["mimcl-org/vit-a", "mimcl-org/vit-b", "mimcl-org/vit-c", "tester/elsewhere"]
    assert _models(rows)[:2] in (["mimcl-org/vit-b", "tester/elsewhere"], ["tester/elsewhere", "mimcl-org/vit-b"])


class _StaticSite:
    """A second origin serving one folder (as a static Space is served from its own host)."""

    def __init__(self, folder: Path):
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_QuietHandler, directory=str(folder)))
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def test_push_dataset_and_space_then_the_space_shows_the_dataset(hub, hub_models, folders, tmp_path):
    env = client_env(hub, tmp_path / "home", TOKEN)
    result = subprocess.run([sys.executable, "-m", "mimcl_hub.cli", "leaderboard", "author:mimcl-org",
                             "--push-dataset", "mimcl-org/results", "--push-space", "mimcl-org/board",
                             "--title", "Test board"], capture_output=True, text=True, timeout=180, env=env)
    assert result.returncode == 0, result.stderr
    dataset = hub.repo("mimcl-org/results", repo_type="dataset")
    space = hub.repo("mimcl-org/board", repo_type="space")
    assert dataset is not None and space is not None
    assert len(dataset.commits) == 2 and len(space.commits) == 2          # the initial commit + ONE publish each
    files = hub.files("mimcl-org/results", repo_type="dataset")
    assert {"README.md", "leaderboard.json", "data/leaderboard.parquet"} <= set(files)
    assert _models(json.loads(files["leaderboard.json"])["rows"]) == [f"mimcl-org/vit-{n}" for n in KNN_ORDER]

    # the datasets library reads the published rows from the Hub endpoint
    out = _run(hub, tmp_path / "home2", """
        import json
        from datasets import load_dataset
        ds = load_dataset("mimcl-org/results", split="train")
        print(json.dumps({"columns": ds.column_names, "models": list(ds["model"]), "knn": list(ds["digits/knn_top1"])}))
    """, token=None)
    loaded = json.loads(out.strip().splitlines()[-1])
    assert loaded["models"] == [f"mimcl-org/vit-{n}" for n in KNN_ORDER]
    assert loaded["knn"] == [SCORES[n][1] for n in KNN_ORDER]
    assert loaded["columns"][:3] == ["rank", "model", "backbone"]

    space_files = hub.files("mimcl-org/board", repo_type="space")
    from huggingface_hub import SpaceCard

    card = SpaceCard(space_files["README.md"].decode())
    assert card.data.sdk == "static" and card.data.app_file == "index.html" and card.data.title == "Test board"
    assert card.data.datasets == ["mimcl-org/results"]
    page = space_files["index.html"].decode()
    assert _models(_html_data(page)["rows"]) == [f"mimcl-org/vit-{n}" for n in KNN_ORDER]

    # a new model lands in the dataset only; the deployed Space page shows it on its next load
    _make_encoder(tmp_path / "d" / "encoder", "mi", 0.95, 0.5)
    _run(hub, tmp_path / "home", f"""
        from mimcl_hub.hub import push_encoder
        push_encoder({str(tmp_path / 'd' / 'encoder')!r}, "mimcl-org/vit-d")
    """)
    result = subprocess.run([sys.executable, "-m", "mimcl_hub.cli", "leaderboard", "author:mimcl-org",
                             "--push-dataset", "mimcl-org/results"], capture_output=True, text=True, timeout=180,
                            env=env)
    assert result.returncode == 0, result.stderr
    assert len(space.commits) == 2                                           # the Space was not redeployed

    sync_playwright = _browser()
    site = tmp_path / "space"
    site.mkdir()
    (site / "index.html").write_bytes(space_files["index.html"])
    with _StaticSite(site) as origin, sync_playwright() as p:
        browser, page_, errors = _open(p, f"{origin}/index.html")
        try:
            page_.wait_for_function("document.querySelectorAll('#rows tr').length === 4", timeout=15000)
            assert _shown(page_) == ["mimcl-org/vit-d", *[f"mimcl-org/vit-{n}" for n in KNN_ORDER]]
            assert "Rows from mimcl-org/results." in page_.locator("#meta").text_content()
            assert page_.title() == "Test board"
            page_.screenshot(path=str(tmp_path / "space.png"), full_page=True)
        finally:
            browser.close()
    assert not errors, errors
    assert (tmp_path / "space.png").stat().st_size > 5000


def test_push_needs_a_valid_token(hub, hub_models, tmp_path):
    result = subprocess.run([sys.executable, "-m", "mimcl_hub.cli", "leaderboard", "mimcl-org/vit-a",
                             "--push-dataset", "mimcl-org/denied"], capture_output=True, text=True, timeout=180,
                            env=client_env(hub, tmp_path, "hf_wrong_token_0000"))
    assert result.returncode == 2
    assert "hf_…0000" in result.stderr and "mimcl-org/denied" in result.stderr
    assert hub.repo("mimcl-org/denied", repo_type="dataset") is None


# --------------------------------------------------------------------------------------------- hostile cards
def _table_lines(md: str) -> list:
    return [line for line in md.splitlines() if line.startswith("|")]


def _cells(line: str) -> int:
    """Cells of a markdown table line: ``|`` not escaped by a backslash."""
    return len(re.findall(r"(?<!\\)\|", line)) - 1


def test_a_hostile_dataset_type_cannot_break_the_markdown(folders, tmp_path):
    """issue 19 item 12: a card's ``dataset.type`` containing ``|`` and a newline broke the markdown header and
    injected fake rows. Headers and cells are escaped: one header line, one line per model, every line with the
    same number of cells."""
    evil = "evil|x\n| 1 | fake-model | resnet | simclr | mi | 1 | 1 | 1 |"
    hostile = _make_encoder(tmp_path / "hostile" / "encoder", "mi", 0.5, 0.5, dataset=evil)
    board = build_leaderboard([*map(str, folders.values()), str(hostile)])
    assert not board.errors and f"{evil}/knn_top1" in board.columns
    md = to_markdown(board)
    lines = _table_lines(md)
    assert len(lines) == 2 + 4                                             # header, rule, four models: no fake row
    assert len({_cells(line) for line in lines}) == 1
    assert not any("fake-model" in line for line in lines[1:])
    assert lines[0].count("evil\\|x \\| 1 \\| fake-model") == 3             # escaped, in the header only
    assert _md_models(md) == [*KNN_ORDER, "hostile"]
    assert json.loads(to_json(board))["columns"][3] == f"{evil}/knn_top1"   # JSON keeps the name as it is


@pytest.mark.parametrize("line, field", [("  epochs: 3.0\n", "  epochs: .nan\n"),
                                         ("  twin_mode: mi\n", "  twin_mode: .nan\n")])
def test_a_nan_in_one_card_makes_only_that_model_an_error(folders, tmp_path, line, field):
    """issue 19 item 12: a NaN in one card's ``mimcl_hub:`` block made the whole JSON and HTML output fail (exit 2),
    though one bad model must never stop the ranking of the others. A non-finite (or wrongly typed) value in the
    block makes that model an error row naming the field; every format still ranks the others."""
    bad = tmp_path / "nan-model"
    shutil.copytree(folders["a"], bad)
    card = (bad / "README.md").read_text()
    assert line in card
    (bad / "README.md").write_text(card.replace(line, field, 1))
    sources = [*map(str, folders.values()), str(bad)]
    name = field.split(":")[0].strip()
    for fmt in ("md", "json", "html"):
        out = tmp_path / f"board.{fmt}"
        result = _mimcl("leaderboard", *sources, "--output", out)
        assert result.returncode == 0, result.stderr
        text = out.read_text()
        data = {"md": None, "json": json.loads(text) if fmt == "json" else None,
                "html": _html_data(text) if fmt == "html" else None}[fmt]
        if data is None:
            assert _md_models(text) == KNN_ORDER and "- `nan-model`:" in text
        else:
            assert _models(data["rows"]) == KNN_ORDER
            assert [e["model"] for e in data["errors"]] == ["nan-model"] and name in data["errors"][0]["error"]
    assert f"not ranked: nan-model: the model card's mimcl_hub: block is invalid: {name} must be" in result.stderr


def test_output_naming_an_existing_folder_fails_before_any_work(folders, tmp_path):
    """issue 19 item 12: an existing folder given as ``--output`` raised ``IsADirectoryError`` after the work. It is
    a clear error first: the Hub query below is never sent (nothing listens on port 9)."""
    folder = tmp_path / "out"
    folder.mkdir()
    for args in (["--format", "json"], []):
        result = _mimcl("leaderboard", "author:mimcl-org", "--output", folder, *args,
                        env=dict(os.environ, HF_ENDPOINT="http://127.0.0.1:9"))
        assert result.returncode == 2
        assert f"--output {folder} is an existing folder: give a file name" in result.stderr
        assert "Traceback" not in result.stderr and "listing models" not in result.stderr
    assert list(folder.iterdir()) == []
    board = build_leaderboard([str(folders["a"])])
    with pytest.raises(LeaderboardError, match="is an existing folder"):
        write_leaderboard(board, folder)
    assert list(folder.iterdir()) == []


def test_old_digits_cards_and_new_sklearn_digits_cards_share_one_column(folders, tmp_path):
    """Cards written before the ``SOURCE:NAME`` naming say ``dataset.type: digits``; new ones ``sklearn:digits``
    (``mimcl_hub.hub.card.model_index_dataset``). Both rank in the one ``digits/knn_top1`` column."""
    from huggingface_hub import ModelCard

    from mimcl_hub.hub import EvalEntry, RunCard

    old = tmp_path / "old" / "encoder"
    save_encoder(create_backbone("vit_tiny_patch4_32", img_size=16), old, RunCard(
        objective="simclr", twin_mode="mi", mi_weight=0.5, model_id="old",
        results=[EvalEntry("digits", "knn_top1", 0.99, "scikit-learn digits", config="k=20,T=0.07")]))
    assert [r.dataset_type for r in ModelCard.load(old / "README.md").data.eval_results] == ["digits"]
    new_types = {r.dataset_type for r in ModelCard.load(folders["a"] / "README.md").data.eval_results}
    assert new_types == {"sklearn:digits"}
    board = build_leaderboard([*map(str, folders.values()), str(old)])
    assert not board.errors and board.columns == ["digits/knn_top1", "digits/knn_top5", "digits/linear_top1"]
    assert _models(board.rows) == ["old", *KNN_ORDER] and board.rows[0]["digits/knn_top1"] == 0.99
