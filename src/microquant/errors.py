"""The single exception type for user-facing problems.

The CLI prints ``error: <message>`` on one line and exits non-zero for it; anything
else is a bug and keeps its traceback.
"""


class MicroquantError(Exception):
    """A problem with the user's input (file, model, data, option), reported in one line."""
