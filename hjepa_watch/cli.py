"""The ``hjepa-watch`` command line: parse, build, call one thing, map errors to exit codes.

Exit codes (DESIGN.md §4): 0 success, 1 a check failed, 2 usage error or unreadable input.
Errors are one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from hjepa_watch import __version__
from hjepa_watch.config import ConfigError
from hjepa_watch.events.discovery import LogdirError
from hjepa_watch.events.tailer import Notice
from hjepa_watch.notify.channels import ChannelError
from hjepa_watch.output import json_line
from hjepa_watch.rules.loader import RuleLoadError
from hjepa_watch.state import StateError

EXIT_OK, EXIT_CHECK_FAILED, EXIT_USAGE = 0, 1, 2


def _print_notice(notice: Notice) -> None:
    if notice.kind == "new_run":
        return  # news for a live dashboard, noise for a replay
    print(f"hjepa-watch: {notice.kind}: {notice.message}", file=sys.stderr)


def _load_rules(paths: list[str] | None):
    """The rules of ``--rules``, or the bundled default pack."""
    from hjepa_watch.rules.loader import load_rules
    from hjepa_watch.rules.pack import default_pack

    return load_rules(paths or [default_pack()])


def _cmd_replay(args: argparse.Namespace) -> int:
    from hjepa_watch.output import human_line
    from hjepa_watch.replay import replay

    rules = [] if args.no_rules else _load_rules(args.rules)
    transitions, summary = replay(args.logdir, rules, on_notice=_print_notice)
    for t in transitions:
        print(json_line(t.to_json()) if args.json else human_line(t))
    out = summary.to_json()
    if args.json:
        print(json_line(out))
    else:
        counts = ", ".join(
            _plural(out[k], word) for k, word in [("runs", "run"), ("files", "file"), ("scalars", "scalar")]
        )
        print(
            f"{counts}, {_plural(out['corrupt_records'], 'corrupt record')}, "
            f"{_plural(out['alerts_fired'], 'alert')} fired in {out['seconds']:.2f} s"
        )
    return EXIT_OK


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _cmd_check_rules(args: argparse.Namespace) -> int:
    from hjepa_watch.rules.loader import load_rules

    rules = load_rules(args.paths)
    print(f"{len(rules)} rules OK")
    return EXIT_OK


def _cmd_test_rules(args: argparse.Namespace) -> int:
    import time

    from hjepa_watch.rules.loader import expand_paths
    from hjepa_watch.ruletest import run_files, write_junit

    def show(r) -> None:
        print(f"{'FAIL' if r.failures else 'ok  '}  {r.file}: {r.name}")
        for f in r.failures:
            print(f)

    results = run_files(expand_paths(args.paths), time.perf_counter, show)
    if args.junit:
        write_junit(results, args.junit)
    failed = sum(bool(r.failures) for r in results)
    print(f"{len(results) - failed} passed, {failed} failed")
    return EXIT_CHECK_FAILED if failed else EXIT_OK


def _cmd_history(args: argparse.Namespace) -> int:
    from hjepa_watch.output import history_table
    from hjepa_watch.state import StateDB, default_state_path

    db = StateDB(args.state or default_state_path(), readonly=True)
    rows = db.history(limit=args.limit)
    db.close()
    if args.json:
        for r in rows:
            print(json_line(r))
    else:
        history_table(rows, sys.stdout)
    return EXIT_OK


def _cmd_watch(args: argparse.Namespace) -> int:
    import signal
    import threading

    from hjepa_watch.config import load_settings
    from hjepa_watch.daemon import Daemon
    from hjepa_watch.output import make_output
    from hjepa_watch.state import StateDB, default_state_path

    settings = load_settings(
        {
            "logdirs": args.logdir,
            "rules": args.rules,
            "notify": args.notify,
            "state": args.state,
            "poll_interval": args.poll_interval,
            "dashboard": False if args.no_dashboard else None,
            "json_output": True if args.json else None,
            "inotify": False if args.no_inotify else None,
        },
        args.config,
    )
    if not settings.logdirs:
        print("hjepa-watch: error: no LOGDIR given (argument, HJEPA_WATCH_LOGDIRS or config file)", file=sys.stderr)
        return EXIT_USAGE
    from hjepa_watch.notify.channels import check_private, make_channels
    from hjepa_watch.notify.outbox import Sender

    rules = _load_rules(settings.rules)
    channels = make_channels(list(settings.notify), settings.channels, settings.apprise_config)
    known = {c.name for c in channels}
    for route in settings.routes:
        unknown = [c for c in route.channels if c not in known]
        if unknown:
            raise ConfigError(f"bad setting 'routes': unknown channels {unknown}; known: {sorted(known)}")
    state_path = settings.state or default_state_path()
    state = StateDB(state_path)
    output = make_output(settings, sys.stdout, sys.stderr)
    config_file = args.config or os.environ.get("HJEPA_WATCH_CONFIG")
    if config_file and (settings.channels or settings.notify):  # secrets in a shared file: say so
        warning = check_private(config_file)
        if warning:
            output.notice(Notice("secrets", config_file, warning))
    sender = None
    if channels:
        sender = Sender(
            state_path,
            channels,
            group_wait=settings.group_wait,
            on_notice=lambda m: output.notice(Notice("notify", "", m)),
        )
    stop, reload = threading.Event(), threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGHUP, lambda *_: reload.set())
    daemon = Daemon(
        settings.logdirs,
        rules,
        lambda: _load_rules(settings.rules),
        state,
        output,
        poll_interval=settings.poll_interval,
        corrupt_grace=settings.corrupt_grace,
        channels=[c.name for c in channels],
        send_resolved=settings.send_resolved,
        routes=settings.routes,
        repeat_interval=settings.repeat_interval,
        sender=sender,
        use_inotify=settings.inotify,
    )
    try:
        daemon.run(stop, reload)
    finally:
        state.close()
    return EXIT_OK


SUBCOMMANDS = ("replay", "check-rules", "test-rules", "history", "notify-test", "silence")


def _cmd_notify_test(args: argparse.Namespace) -> int:
    import time

    from hjepa_watch.notify.outbox import notify_test

    failed = 0
    for name, outcome in notify_test(args.urls, time.time()):
        if outcome.ok:
            print(f"ok      {name}")
        else:
            failed += 1
            print(f"{'failed' if outcome.permanent else 'failed (transient)'}  {name}: {outcome.error}")
    return EXIT_CHECK_FAILED if failed else EXIT_OK


def _cmd_silence(args: argparse.Namespace) -> int:
    import datetime as dt

    from hjepa_watch.rules.schema import parse_duration
    from hjepa_watch.state import StateDB, default_state_path

    db = StateDB(args.state or default_state_path())
    try:
        if args.action == "add":
            try:
                seconds = parse_duration(args.duration)
            except ValueError as e:
                print(f"hjepa-watch: error: --for: {e}", file=sys.stderr)
                return EXIT_USAGE
            sid = db.add_silence(args.run, args.rule, seconds, args.comment or "")
            print(f"silence {sid}: run {args.run!r}, rule {args.rule!r}, for {args.duration}")
        elif args.action == "list":
            rows = db.silences(active_only=not args.all)
            for s in rows:
                until = dt.datetime.fromtimestamp(s["expires_at"], dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
                print(f"{s['id']:>4}  run {s['run']!r}  rule {s['rule']!r}  until {until}  {s['comment'] or ''}")
            if not rows:
                print("no active silences")
        else:
            if not db.expire_silence(args.id):
                print(f"hjepa-watch: error: no active silence {args.id}", file=sys.stderr)
                return EXIT_USAGE
            print(f"silence {args.id} expired")
    finally:
        db.close()
    return EXIT_OK


def _watch_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="hjepa-watch",
        usage="hjepa-watch LOGDIR [LOGDIR...] [options]  |  hjepa-watch {" + ",".join(SUBCOMMANDS) + "} ...",
        description="Watch H-JEPA training runs: tail TensorBoard event files, evaluate alert rules, notify.",
        epilog="Commands: " + ", ".join(SUBCOMMANDS) + " (hjepa-watch COMMAND --help).",
    )
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    p.add_argument("logdir", nargs="*", metavar="LOGDIR", help="log directories to watch")
    p.add_argument("--rules", action="append", metavar="PATH", help="rule file or directory (repeatable)")
    p.add_argument("--notify", action="append", metavar="URL", help="apprise URL to notify (repeatable)")
    p.add_argument("--config", metavar="FILE", help="YAML config file (also $HJEPA_WATCH_CONFIG)")
    p.add_argument("--state", metavar="PATH", help="state database (default: the user's state directory)")
    p.add_argument("--poll-interval", type=float, metavar="SECONDS", help="seconds between full polls (default 2)")
    p.add_argument("--no-dashboard", action="store_true", help="print lines instead of the live dashboard")
    p.add_argument("--json", action="store_true", help="print transitions as JSON lines (DESIGN.md §4)")
    p.add_argument("--no-inotify", action="store_true", help="poll only (inotify misses writes from other NFS hosts)")
    p.set_defaults(func=_cmd_watch, command="watch")
    return p


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="hjepa-watch",
        description="Watch H-JEPA training runs: tail TensorBoard event files, evaluate alert rules, notify.",
    )
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    r = sub.add_parser("replay", help="read existing logs once, as if live, and print a summary")
    r.add_argument("logdir", nargs="+", metavar="LOGDIR")
    r.add_argument("--rules", action="append", metavar="PATH", help="rule file or directory (repeatable)")
    r.add_argument("--json", action="store_true", help="one JSON object per line (DESIGN.md §4)")
    r.add_argument("--no-rules", action="store_true", help="read and summarise only (no rule evaluation)")
    r.set_defaults(func=_cmd_replay)
    c = sub.add_parser("check-rules", help="validate rule files: exit 0 valid, 1 invalid")
    c.add_argument("paths", nargs="+", metavar="PATH")
    c.set_defaults(func=_cmd_check_rules)
    t = sub.add_parser("test-rules", help="run rule unit tests: exit 1 on any failure")
    t.add_argument("paths", nargs="+", metavar="PATH", help="test files or directories of them")
    t.add_argument("--junit", metavar="FILE", help="also write a JUnit XML report")
    t.set_defaults(func=_cmd_test_rules)
    h = sub.add_parser("history", help="past alerts from the state database")
    h.add_argument("--state", metavar="PATH", help="state database (default: the user's state directory)")
    h.add_argument("--json", action="store_true", help="one JSON object per line")
    h.add_argument("--limit", type=int, metavar="N", help="only the newest N")
    h.set_defaults(func=_cmd_history)
    n = sub.add_parser("notify-test", help="send a sample alert (with a chart) through each URL")
    n.add_argument("urls", nargs="+", metavar="URL")
    n.set_defaults(func=_cmd_notify_test)
    s = sub.add_parser("silence", help="mute notifications of matching alerts for a while")
    s.add_argument("--state", metavar="PATH", help="state database (default: the user's state directory)")
    ssub = s.add_subparsers(dest="action", required=True)
    here = argparse.ArgumentParser(add_help=False)
    here.add_argument("--state", default=argparse.SUPPRESS, metavar="PATH", help="state database")
    sa = ssub.add_parser("add", help="add a silence", parents=[here])
    sa.add_argument("--run", default="*", help="run-name glob (default *)")
    sa.add_argument("--rule", default="*", help="rule-name glob (default *)")
    sa.add_argument("--for", dest="duration", required=True, help="how long, e.g. 2h")
    sa.add_argument("--comment", help="why")
    sl = ssub.add_parser("list", help="list active silences", parents=[here])
    sl.add_argument("--all", action="store_true", help="expired ones too")
    se = ssub.add_parser("expire", help="end a silence now", parents=[here])
    se.add_argument("id", type=int)
    s.set_defaults(func=_cmd_silence)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _parser() if argv and argv[0] in SUBCOMMANDS else _watch_parser()
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
    except (ConfigError, StateError, ChannelError) as e:
        print(f"hjepa-watch: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except RuleLoadError as e:
        for err in e.errors:
            print(err, file=sys.stderr)
        n = len(e.errors)
        print(f"hjepa-watch: {n} error{'s' * (n != 1)}", file=sys.stderr)
        # Invalid rules are a failed check for check-rules, a usage error elsewhere.
        return EXIT_CHECK_FAILED if args.command in ("check-rules", "test-rules") else EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except Exception as e:  # a bug of ours: one line, the traceback only on request
        if os.environ.get("HJEPA_WATCH_DEBUG"):
            raise
        print(
            f"hjepa-watch: internal error: {type(e).__name__}: {e} (HJEPA_WATCH_DEBUG=1 shows where)", file=sys.stderr
        )
        return 70
