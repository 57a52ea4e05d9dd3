"""The one error type of ctcforge and of the repos it stamps.

Library code raises it for a problem with the user's input, data or environment, phrased
so that one line names the fix; only a script's `main()` and the `ctcforge` command turn
it into that line and an exit code, so every function can be called, and tested, as a
function. A clip that cannot be used is not an error: it is skipped and counted.
"""


class CtcforgeError(Exception):
    """A problem the user can fix; its message is one line that says how."""
