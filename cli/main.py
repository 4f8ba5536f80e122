"""The ``ssltheory`` command: one Typer app; bad input becomes a one-line error with exit status 2."""

from __future__ import annotations

import sys
from importlib.metadata import PackageNotFoundError, version

import typer

from ssltheory.theory import outputs
from ssltheory.theory.checks import ConfigError, RunError

from . import collapse_cmd, experiment_cmds, forecast_cmd, practice_cmds, theory_cmds

app = typer.Typer(
    name="ssltheory",
    help="The theory of non-contrastive SSL (BYOL, SimSiam, DirectPred): simulate, train, measure, compare.",
    add_completion=False,
    pretty_exceptions_enable=False,
    no_args_is_help=True,
)


def _version(value: bool) -> None:
    if value:
        try:
            v = version("ssltheory")
        except PackageNotFoundError:  # running from a source tree that is not installed
            v = "unknown"
        print(f"ssltheory {v}")
        raise typer.Exit()


@app.callback()
def _root(
    show_version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                      help="print the version and exit"),
) -> None:
    """The theory of non-contrastive SSL (BYOL, SimSiam, DirectPred): simulate, train, measure, compare."""


for _name in outputs.COMMANDS:  # the theory's one list of commands (the recipes run the same entries)
    app.command(_name)(theory_cmds.COMMANDS[_name])
app.command("train")(practice_cmds.train)
app.command("probe")(practice_cmds.probe)
app.command("compare")(practice_cmds.compare)
app.command("experiment")(experiment_cmds.experiment)
app.command("report")(practice_cmds.report)
app.command("collapse")(collapse_cmd.collapse)
app.command("forecast")(forecast_cmd.forecast)


# typer >= 0.22 ships its own copy of click; older releases use click itself. Its usage errors share one
# base class, found through the public BadParameter, so both work.
UsageError: type[Exception] = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError")


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _values_of(opts: list[str], args: list[str]) -> list[str]:
    """Every value the command line gives an option spelled as one of ``opts`` (``--epochs 3`` or ``--epochs=3``), in
    order; the words after ``--`` are arguments, not options."""
    values = []
    for i, arg in enumerate(args):
        if arg == "--":
            break
        for opt in opts:
            if arg.startswith(opt + "="):
                values.append(arg[len(opt) + 1:])
            elif arg == opt and i + 1 < len(args):
                values.append(args[i + 1])
    return values


def _usage_message(error: Exception, args: list[str]) -> str:
    """One line for a usage error, naming the raw value the user typed when the parser's message does not.

    An option given twice (``--epochs 3 --epochs abc``) is parsed with its last value, so that is the one quoted; an
    option that collects every value (``multiple``) is quoted with all of them, the one that failed among them."""
    message = _one_line(error.format_message())
    param = getattr(error, "param", None)
    values = _values_of(list(getattr(param, "opts", None) or []) + list(getattr(param, "secondary_opts", None) or []),
                        args)
    if getattr(param, "multiple", False) and len(values) > 1:
        quoted = [repr(v) for v in values]
        return message if any(q in message for q in quoted) else f"{message} (got {', '.join(quoted)})"
    if not values or repr(values[-1]) in message:
        return message
    return f"{message} (got {values[-1]!r})"


INTERRUPTED = 130
"""Exit status after Ctrl-C (128 + SIGINT), as shells report it."""


def main(argv: list[str] | None = None) -> None:
    """Entry point of the console script: run the app, turning input errors into one line and exit code 2."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        args = ["--help"]
    practice_cmds.refresh(practice_cmds.train)  # the flags of every setting declared now
    command = typer.main.get_command(app)
    try:
        rv = command.main(args=args, prog_name="ssltheory", standalone_mode=False)
    except UsageError as e:  # unknown option, a non-number, a missing argument ...
        print(f"ssltheory: error: {_usage_message(e, args)}", file=sys.stderr)
        sys.exit(2)
    except ConfigError as e:
        print(f"ssltheory: error: {_one_line(str(e))}", file=sys.stderr)
        sys.exit(2)
    except RunError as e:  # a solver gave up, a training loss diverged
        print(f"ssltheory: error: {_one_line(str(e))}", file=sys.stderr)
        sys.exit(1)
    except (typer.Abort, KeyboardInterrupt):
        rv = INTERRUPTED
    if rv == INTERRUPTED:  # typer turns Ctrl-C into this exit code without a word
        print("ssltheory: interrupted (a training run keeps its last checkpoint: continue it with --resume RUN_DIR)",
              file=sys.stderr)
    sys.exit(rv if isinstance(rv, int) else 0)


if __name__ == "__main__":
    main()
