"""The one exception type for bad user input (kept import-free: the .pth hook loads it)."""


class UserError(Exception):
    """A problem with the user's input (path, field, value). Printed as one line, no traceback."""
