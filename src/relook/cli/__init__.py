"""relook command line: thin sub-commands over the library. Errors end with one line and exit 2.

One module per command group: ``stages`` (the top-level config-driven stages, ``query``, ``demo``), ``store``,
``rrt`` (``train rrt``, ``visualize rrt-matches``), ``classic``, ``ot`` (``visualize ot``, ``ot-sweep``),
``dtop`` (``train dtop``, ``dtop-whitening``), ``epipolar`` (``geometry``, ``visualize epipolar-attention``),
``global_head`` (``train global``), ``datasets``; ``common`` holds what they share. This module assembles
the app and holds ``main``, the entry point (``relook`` and ``python -m relook.cli``)."""

from __future__ import annotations

import contextlib
import errno

import typer

from relook.cli import benchmark, classic, datasets, dtop, epipolar, global_head, ot, rrt, stages, store, systems
from relook.cli.common import subgroup
from relook.errors import RelookError
from relook.runlock import release_all

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Instance-level image retrieval that looks again at its shortlist.",
)
app.add_typer(store.app, name="store")
rrt.register(app)  # relook train rrt, visualize rrt-matches
app.add_typer(classic.app, name="classic")
ot.register(app)  # relook visualize ot
_train = subgroup(app, "train", "Train models (RRT, DToP).")
_train.registered_commands += dtop.app.registered_commands  # dtop, whitening
epipolar.register(app)  # geometry pseudo-gt, visualize epipolar-attention
global_head.register(app)  # relook train global
app.add_typer(datasets.app, name="datasets")
app.registered_commands += stages.app.registered_commands  # extract ... report, query, demo
app.registered_commands += systems.app.registered_commands  # pair, merge
benchmark.register(app)  # relook benchmark


def _print_version(value: bool) -> None:
    if value:
        from relook import __version__

        typer.echo(f"relook {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", is_eager=True, callback=_print_version, help="print relook's version and exit"
    ),
) -> None:
    """Instance-level image retrieval that looks again at its shortlist."""


def _click_classes(name: str) -> tuple[type, ...]:
    """The exception class ``name`` of typer's bundled click and of click itself (whichever exist)."""
    import importlib

    found = []
    for module in ("typer._click.exceptions", "click.exceptions"):
        with contextlib.suppress(ImportError, AttributeError):
            found.append(getattr(importlib.import_module(module), name))
    return tuple(found)


def _usage_line(e: Exception) -> str:
    """A click/typer usage error as one line: the message and where to find the usage."""
    message = " ".join(e.format_message().split())  # type: ignore[attr-defined]
    ctx = getattr(e, "ctx", None)
    where = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
    return f"error: {message}{where}"


class _Interrupted:
    """SIGINT handler for ``main``: remembers the interruption, then interrupts as Python's default does."""

    def __init__(self) -> None:
        self.seen = False

    def __call__(self, signum, frame) -> None:
        self.seen = True
        raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the app. A ``RelookError`` or a usage error (unknown option or command, a bad
    option value) becomes one line ``error: ...`` on stderr and exit code 2 (1 for a ``ResourceError`` or
    a full disk: the environment's fault); Ctrl-C prints ``interrupted``
    and exits 130 (typer turns an interruption into a plain return code, so a handler records it)."""
    import signal
    import threading

    interrupted = _Interrupted()
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGINT, interrupted)
    try:
        code = app(args=argv, prog_name="relook", standalone_mode=False)
    except RelookError as e:
        typer.echo(f"error: {' '.join(str(e).split())}", err=True)
        return e.exit_code
    except OSError as e:  # the file system refused (no permission, a file where a folder must be, disk full)
        full = e.errno in (errno.ENOSPC, errno.EDQUOT)  # the environment's fault: exit 1
        if not (e.filename or full):
            raise
        typer.echo(f"error: {e.filename or 'writing'}: {e.strerror or type(e).__name__}", err=True)
        return 1 if full else 2
    except (typer.Abort, KeyboardInterrupt):
        interrupted.seen = True
        code = 130
    except Exception as e:
        if isinstance(e, _click_classes("NoArgsIsHelpError")):  # `relook`, or a group alone: its help
            e.show()  # type: ignore[attr-defined]
            return 2
        if isinstance(e, _click_classes("ClickException")):  # usage errors, bad option values
            typer.echo(_usage_line(e), err=True)
            return 2
        raise
    finally:
        release_all()  # the run folders this command locked
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
    if interrupted.seen or code == 130:  # typer returns 130 for a KeyboardInterrupt raised in a command
        typer.echo("interrupted", err=True)
        return 130
    return code if isinstance(code, int) else 0
