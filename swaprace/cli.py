"""The thin click layer: every command parses options, calls the library, prints the result.

Each command's docstring is its ``--help`` and carries an example. Library errors (:class:`SwapraceError`)
become one ``swaprace: error: ...`` line and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from swaprace import __version__
from swaprace.errors import SwapraceError


class SwapraceGroup(click.Group):
    """A click group that turns library errors into one line on stderr."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except SwapraceError as exc:
            click.echo(f"swaprace: error: {exc}", err=True)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("swaprace: interrupted", err=True)
            ctx.exit(130)
        except BrokenPipeError:
            sys.stderr.close()  # `swaprace ... | head`: the reader left, nothing more to say
            ctx.exit(1)


def echo_json(obj: Any) -> None:
    """Print one JSON object on stdout (the ``--json`` contract of every command)."""
    click.echo(json.dumps(obj, indent=2, sort_keys=True, default=str))


@click.group(cls=SwapraceGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="swaprace")
def main() -> None:
    """Watch the Linux swap-in path and flag swap-entry reuse inside do_swap_page's race window.

    \b
    Example:
        swaprace analyze capture.parquet
        swaprace doctor
    """


# === analyze (issue 2) ===================================================================================
# === end analyze =========================================================================================

# === doctor / record (issue 4: catalog, ftrace backend, recorder) ========================================
# === end doctor / record =================================================================================

# === watch (issue 4: bcc backend, in-kernel detection) ===================================================
# === end watch ===========================================================================================

# === vm (issue 3) ========================================================================================
# === end vm ==============================================================================================

# === stress (issue 5) ====================================================================================
# === end stress ==========================================================================================

# === report / plot (issue 6) =============================================================================
# === end report / plot ===================================================================================


if __name__ == "__main__":
    main()
