"""The one exception type for bad user input (kept import-free: the .pth hook loads it)."""


class UserError(Exception):
    """A problem with the user's input (path, field, value). Printed as one line, no traceback."""


def disk_full_message(e: BaseException) -> str | None:
    """One line for an OSError "no space left on device" (None for any other error): which file
    could not be written and how much space its filesystem has left."""
    import errno
    import os
    import shutil

    if not isinstance(e, OSError) or e.errno not in (errno.ENOSPC, errno.EDQUOT):
        return None
    where = e.filename or ""
    probe = os.path.dirname(os.path.abspath(where)) if where else os.getcwd()
    while probe and not os.path.isdir(probe):
        probe = os.path.dirname(probe)
    try:
        free = f"{shutil.disk_usage(probe).free / 2 ** 20:.0f} MiB free on {probe}"
    except OSError:
        free = "free space unknown"
    target = f" writing {where}" if where else ""
    return f"no space left on device{target} ({free}); free some space or choose another output directory, then rerun"


def run_main(main) -> None:
    """Run a script's ``main()`` the way every s3prl-dd command ends: a UserError prints one line
    on stderr (the script's name, then the message) and exits with status 2, no traceback; any
    other exception keeps its traceback, because that one is our bug, not the user's input."""
    import os
    import sys

    try:
        code = main()
    except UserError as e:
        print(f"{os.path.basename(sys.argv[0])}: error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    raise SystemExit(code)
