"""The ``rfengine`` command line: the parser of every command, and ``main`` (exit codes)."""

from __future__ import annotations

import argparse
import errno
import os
import signal
import sys
import threading
from collections.abc import Sequence

from rfengine.cli.adaptive import add_plan_more
from rfengine.cli.aggregate import add_aggregate
from rfengine.cli.campaign import add_campaign, add_import
from rfengine.cli.common import UsageError
from rfengine.cli.labelstudio import add_import as add_import_labelstudio
from rfengine.cli.outputs import add_annotators, add_evaluate, add_export, add_render, add_report
from rfengine.cli.publish import add_publish
from rfengine.cli.sim import add_demo, add_simulate
from rfengine.errors import InputError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rfengine",
        description="Aggregate rich human feedback on text-to-image generation.",
    )
    from importlib.metadata import version

    parser.add_argument("--version", action="version", version=f"rfengine {version('rfengine')}")
    parser.add_argument(
        "--debug", action="store_true", help="show the traceback of any error (for bug reports)"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_aggregate(sub)
    add_import(sub)
    add_import_labelstudio(sub)
    add_simulate(sub)
    add_render(sub)
    add_report(sub)
    add_demo(sub)
    add_export(sub)
    add_evaluate(sub)
    add_annotators(sub)
    add_campaign(sub)
    add_plan_more(sub)
    add_publish(sub)
    _own_usage(parser)
    return parser


def _own_usage(parser: argparse.ArgumentParser) -> None:
    """Let every (sub)command's parser be the one that reports its unknown arguments, so
    that the usage printed is that command's, not the top level's."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                sub.set_defaults(command_parser=sub)
                _own_usage(sub)


def _os_error(exc: OSError) -> str:
    """One line for a failed file operation: what failed, and on which path."""
    where = exc.filename if exc.filename is not None else ""
    what = exc.strerror or str(exc)
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        what = f"{what} (the disk is full; free space or choose another --out)"
    return f"{where}: {what}" if where else what


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point. Exit codes: 0 done; 1 bad input or a file that cannot be read or
    written (one line naming it); 2 usage errors (argparse's message); 3 an internal
    error, i.e. a bug (one line, the traceback with ``--debug``); 130 interrupted; 143
    terminated (SIGTERM). A failure that a ``--resume`` can continue says so after its
    line; bad input removes the run's work folder."""
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        owner = getattr(args, "command_parser", parser)
        owner.error(f"unrecognized arguments: {' '.join(unknown)}")  # exits with 2
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminate) if main_thread else None
    try:
        return _run(parser, args)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _run(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    """The command, its failures turned into one line and an exit code."""
    try:
        return args.func(args)
    except UsageError as exc:
        getattr(args, "command_parser", parser).error(str(exc))  # exits with 2
    except (InputError, FileExistsError) as exc:
        if args.debug:
            raise
        return _fail(f"rfengine: error: {exc}", exc, 1)
    except OSError as exc:
        if args.debug:
            raise
        return _fail(f"rfengine: error: {_os_error(exc)}", exc, 1)
    except KeyboardInterrupt as exc:
        if isinstance(exc, Terminated):
            return _fail("rfengine: terminated", exc, 143)
        return _fail("rfengine: interrupted", exc, 130)
    except Exception as exc:
        if args.debug:
            raise
        line = (
            f"rfengine: internal error: {type(exc).__name__}: {exc} -- this is a bug, not "
            "bad input; rerun with --debug for the traceback and report it"
        )
        return _fail(line, exc, 3)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the process is, so that it ends as an interrupt does: Ray
    tasks cancelled, a Ray runtime it started stopped, nothing published."""


def _terminate(signum: int, frame: object) -> None:
    raise Terminated


def _fail(line: str, exc: BaseException, code: int) -> int:
    """The error's one line on stderr, then, only where a resume can help, the hint."""
    print(line, file=sys.stderr)
    hint = getattr(exc, "resume_hint", None)
    if hint:
        print(hint, file=sys.stderr)
    return code


def entry() -> None:
    """The ``rfengine`` command (and ``python -m rfengine.cli``): ``main``'s code as the exit
    status. An interrupted or terminated run exits at once, after its own
    clean-up (``ray.shutdown()`` is done by then): Ray's exit hooks otherwise sometimes
    crashed (SIGSEGV) or re-raised the SIGINT, and the status was not 130."""
    code = main()
    if code in (130, 143):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    entry()
