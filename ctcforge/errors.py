"""The one error type a user sees: the CLI prints it as a single line, without a traceback."""


class CtcforgeError(Exception):
    """A problem with the user's input or environment, phrased so it names the fix."""
