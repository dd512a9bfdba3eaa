"""The one exception type the CLI turns into a single error line and a non-zero exit."""


class SwapraceError(Exception):
    """A problem the user can act on (bad input, missing symbol, not root, no swap...).

    The CLI prints ``swaprace: error: <message>`` and exits with ``exit_code``; never a traceback.
    """

    exit_code = 1

    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = exit_code


def first_line(exc: BaseException) -> str:
    """The first line of ``exc``'s message (its type name when the message is empty), for one-line errors."""
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]
