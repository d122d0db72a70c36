"""`python -m homeward.cli` is the `homeward` command."""

from .main import app

app(prog_name="homeward")
