"""``nmf-lab-push`` and ``nmf-lab-pull``: copy runs, sweeps and models whole between a local store and the team's
tracking server (or any two MLflow stores), once and only once (:mod:`nmf_lab.tracking.transfer`).

    nmf-lab-push --to http://mlflow.team:5000 --experiment toy          # the local store -> the server
    nmf-lab-push --to http://mlflow.team:5000 89a4f61d1a83...           # one run (a sweep's parent: and its jobs)
    nmf-lab-pull --from http://mlflow.team:5000 --experiment toy        # the server -> the local store

A progress bar while copying (on a terminal), then a table: each run, its id in both stores, whether it was copied
or skipped, and its link in the target's UI.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from typing import NoReturn

from tqdm import tqdm

from nmf_lab.presentation.describe import text_table, ui_links
from nmf_lab.tracking.store import TrackingUnavailable
from nmf_lab.tracking.transfer import (
    COPIED,
    FAILED_CHECK,
    REPLACED,
    SKIPPED,
    CopyStopped,
    NothingToCopy,
    copy_runs,
    store_label,
)

NAME_WIDTH = 48
"""Run names longer than this are cut in the table (a sweep's parent is named after its whole command line)."""


PUSH = (
    "Copy runs whole (params, tags, metric histories, dataset inputs, artifacts, logged and registered models; a "
    "sweep's parent with its jobs) from a store, by default the local one, to another, e.g. the team's server. "
    "Runs already there unchanged are skipped; every copy is checked against its source."
)
PULL = (
    "Copy runs whole from a store, e.g. a colleague's sweep on the team's server, into another, by default the "
    "local one, to analyse them offline. The same copy as nmf-lab-push: runs already there unchanged are skipped, "
    "every copy is checked against its source."
)


def push_main(argv: Sequence[str] | None = None) -> None:
    """``nmf-lab-push``: copy runs from a store (default: the local one) to another, e.g. the team's server."""
    parser = arguments("nmf-lab-push", PUSH, required="--to")
    share("nmf-lab-push", parser.parse_args(argv))


def pull_main(argv: Sequence[str] | None = None) -> None:
    """``nmf-lab-pull``: copy runs from a store, e.g. a colleague's on the team's server, into another (default:
    the local one) to analyse them offline."""
    parser = arguments("nmf-lab-pull", PULL, required="--from")
    share("nmf-lab-pull", parser.parse_args(argv))


def arguments(prog: str, description: str | None, *, required: str) -> argparse.ArgumentParser:
    local = "the local store: $MLFLOW_TRACKING_URI unless it is a server, else sqlite:///mlruns/mlflow.db"
    parser = argparse.ArgumentParser(
        prog=prog,
        description=description,
        usage=f"{prog} {'--to URI [--from URI]' if required == '--to' else '--from URI [--to URI]'} "
        "(--experiment NAME ... | RUN_ID ...)",
        epilog="A server's credentials: $MLFLOW_TRACKING_USERNAME and $MLFLOW_TRACKING_PASSWORD.",
    )
    parser.add_argument(
        "--to",
        dest="target",
        metavar="URI",
        required=required == "--to",
        help="the store to copy into" + ("" if required == "--to" else f" (default: {local})"),
    )
    parser.add_argument(
        "--from",
        dest="source",
        metavar="URI",
        required=required == "--from",
        help="the store to copy from" + ("" if required == "--from" else f" (default: {local})"),
    )
    parser.add_argument(
        "--experiment",
        action="append",
        default=[],
        metavar="NAME",
        help="copy every run of this experiment (repeatable)",
    )
    parser.add_argument("run_ids", nargs="*", metavar="RUN_ID", help="copy this run (a sweep's parent: and its jobs)")
    return parser


def share(prog: str, args: argparse.Namespace) -> None:
    if not args.experiment and not args.run_ids:
        stop(prog, "name what to copy: --experiment NAME (repeatable) or run ids")
    bar = tqdm(total=0, unit="run", disable=None, dynamic_ncols=True, leave=False, file=sys.stderr)

    def planned(n: int) -> None:
        bar.reset(total=n)

    def progress(name: str, step: str | None) -> None:
        if step is None:
            bar.update()
        else:
            bar.set_description_str(shorten(name, 30))
            bar.set_postfix_str(step)

    started = time.perf_counter()
    try:
        transfer, outcomes = copy_runs(
            args.source,
            args.target,
            experiments=args.experiment,
            run_ids=args.run_ids,
            progress=progress,
            planned=planned,
        )
    except (TrackingUnavailable, NothingToCopy, CopyStopped) as error:
        bar.close()
        stop(prog, str(error))
    except KeyboardInterrupt:
        bar.close()
        stop(prog, "interrupted: the run being copied is marked 'in progress' and the next push replaces it")
    bar.close()
    seconds = time.perf_counter() - started
    print(
        report(outcomes, store_label(transfer.source.tracking_uri), store_label(transfer.target.tracking_uri), seconds)
    )
    if any(outcome.action == FAILED_CHECK for outcome in outcomes):
        stop(prog, "some copies differ from their source (see the table); they stay 'in progress', push again")


def report(outcomes, source: str, target: str, seconds: float) -> str:
    """The closing summary: counts, then the table of runs with their links in the target's UI."""
    links = ui_links(target)
    counts = {
        action: sum(outcome.action == action for outcome in outcomes)
        for action in (COPIED, REPLACED, SKIPPED, FAILED_CHECK)
    }
    said = ", ".join(f"{n} {action}" for action, n in counts.items() if n)
    header = ["run", "source id", "target id", "action", "in the target's UI"]
    rows = [
        [
            ("  " if outcome.parent_source_id in {o.source_id for o in outcomes} else "")
            + shorten(outcome.name, NAME_WIDTH),
            outcome.source_id,
            outcome.target_id,
            outcome.action + (f" ({outcome.detail})" if outcome.detail else ""),
            links.run(outcome.experiment_id, outcome.target_id) if outcome.target_id else "",
        ]
        for outcome in outcomes
    ]
    lines = [
        f"{len(outcomes)} runs from {source} to {target} in {seconds:.1f} s: {said}",
        "each checked against its source: params, tags, metric histories, artifacts and their sizes, models",
        "",
        text_table(header, rows),
    ]
    if links.command:
        lines += ["", f"start the UI: {links.command}"]
    return "\n".join(lines)


def shorten(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def stop(prog: str, message: str) -> NoReturn:
    """One line on stderr, exit status 1 (as ``nmf-lab`` stops on a user's error)."""
    if os.environ.get("HYDRA_FULL_ERROR") == "1":
        import traceback

        traceback.print_exc()
    raise SystemExit(f"{prog}: {message}")
