from __future__ import annotations


class StackError(RuntimeError):
    """A failure with what went wrong and what to do about it."""

    def __init__(self, message: str, *, hint: str | None = None, details: str | None = None) -> None:
        self.message = message
        self.hint = hint
        self.details = details
        super().__init__(self.render())

    def render(self) -> str:
        text = self.message
        if self.details:
            text += "\n" + "\n".join("    " + line for line in self.details.rstrip().splitlines())
        if self.hint:
            text += f"\n  -> {self.hint}"
        return text
