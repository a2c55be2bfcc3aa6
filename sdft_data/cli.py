"""`sdft-data`: thin click commands over the sdft_data library.

Every user error is a click.ClickException: one line, non-zero exit, no traceback.
"""

from __future__ import annotations

import functools
import sys

import click

from . import __version__


class UserError(click.ClickException):
    """One clear line for the user, exit code 1."""


def user_errors(fn):
    """Turn the library's ValueError/FileNotFoundError (bad input) into one clean line."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (ValueError, FileNotFoundError, PermissionError) as e:
            raise UserError(str(e).splitlines()[0] if str(e) else type(e).__name__) from None

    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="sdft-data")
def main():
    """Distill a task dataset with its seed model (SDFT), check and diff it, publish it.

    \b
    sdft-data recipes
    sdft-data tiny-model models/tiny
    sdft-data distill --recipe gsm8k --source openai/gsm8k --model models/tiny --out runs/gsm8k --limit 50
    """


@main.command()
def recipes():
    """List the built-in recipes (and `custom`).

    \b
    sdft-data recipes
    """
    from .recipes import get_recipe, recipe_names

    for name in recipe_names():
        r = get_recipe(name)
        config = f" ({r.config})" if r.config else ""
        click.echo(f"{name:<14} v{r.version}  {r.source}{config}  check={r.check}  {r.description}")
    click.echo(f"{'custom':<14} v1  any Hub id or local file, with --prompt-column/--response-column")


@main.command("tiny-model")
@click.argument("out_dir", type=click.Path(file_okay=False))
@click.option("--hidden-size", default=64, show_default=True)
@click.option("--layers", default=2, show_default=True)
@click.option("--seed", default=0, show_default=True)
@user_errors
def tiny_model(out_dir, hidden_size, layers, seed):
    """Build a tiny random Llama chat model (offline, seconds) into OUT_DIR.

    Its text is noise, but everything around it is real: tokenizer, chat
    template, batching, save and load. The default model of `make demo` and the tests.

    \b
    sdft-data tiny-model models/tiny
    """
    from .tiny import build_tiny_model

    path = build_tiny_model(out_dir, hidden_size=hidden_size, num_layers=layers, seed=seed)
    click.echo(f"tiny model written to {path}")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
