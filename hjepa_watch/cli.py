"""The ``hjepa-watch`` command line: parse, build, call one thing, map errors to exit codes.

Exit codes (DESIGN.md §4): 0 success, 1 a check failed, 2 usage error or unreadable input.
Errors are one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence

from hjepa_watch import __version__
from hjepa_watch.events.discovery import LogdirError
from hjepa_watch.events.tailer import Notice

EXIT_OK, EXIT_CHECK_FAILED, EXIT_USAGE = 0, 1, 2


def json_line(obj: dict) -> str:
    """One JSON object per line; NaN and ±Inf as the JSON text tokens NaN/Infinity."""
    return json.dumps(obj, allow_nan=True, separators=(", ", ": "))


def _print_notice(notice: Notice) -> None:
    if notice.kind == "new_run":
        return  # news for a live dashboard, noise for a replay
    print(f"hjepa-watch: {notice.kind}: {notice.message}", file=sys.stderr)


def _cmd_replay(args: argparse.Namespace) -> int:
    from hjepa_watch.replay import replay

    summary = replay(args.logdir, on_notice=_print_notice)
    out = summary.to_json()
    if math.isnan(out["seconds"]):
        out["seconds"] = 0.0
    print(json_line(out))
    return EXIT_OK


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="hjepa-watch",
        description="Watch H-JEPA training runs: tail TensorBoard event files, evaluate alert rules, notify.",
    )
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    r = sub.add_parser("replay", help="read existing logs once, as if live, and print a summary")
    r.add_argument("logdir", nargs="+", metavar="LOGDIR")
    r.add_argument("--json", action="store_true", help="JSON lines output (the default for now)")
    r.set_defaults(func=_cmd_replay)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse has printed its one-line usage error
        return EXIT_USAGE if e.code else EXIT_OK
    if not getattr(args, "func", None):
        parser.print_usage(sys.stderr)
        return EXIT_USAGE
    try:
        return args.func(args)
    except LogdirError as e:
        print(f"hjepa-watch: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
