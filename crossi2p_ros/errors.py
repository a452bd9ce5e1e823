"""The project's one user-facing exception type.

Errors a user can cause (a bad file, a garbled calibration, an empty cloud)
raise :class:`CrossI2PError` with a message that names the input and the fix.
The CLI prints it as one line on stderr and exits with code 2.
"""


class CrossI2PError(Exception):
    """An error caused by user input; the message names the input and the fix."""
