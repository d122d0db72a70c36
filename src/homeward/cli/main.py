"""The `homeward` command line (placeholder until the CLI issue lands)."""

import typer

app = typer.Typer(help="Homeward: partner and staff command line", no_args_is_help=True)


@app.command()
def version() -> None:
    """Print the version."""
    typer.echo("homeward 0.1.0")
