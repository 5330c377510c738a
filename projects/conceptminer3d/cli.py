"""How the commands in ``tools/`` end: an error the user can fix is one line, a bug a traceback.

Every tool's ``__main__`` is ``run_tool(main)``. An error the user can fix (a path that is not
there, an output that exists, a malformed pickle, a bad config value, a model that is not on the
machine) prints ``error: <message>`` on stderr and exits with status 2. Anything else is a bug
and keeps its traceback. ``--debug`` (anywhere on the command line) or ``CONCEPTMINER3D_DEBUG=1``
shows the traceback for both.

Which errors count as the user's: the file-system ones (``FileNotFoundError``,
``FileExistsError``, ..., a full disk), the package's exception classes marked ``user_error = True`` (a model
not on the machine, an unreadable info pickle, FiftyOne unavailable), and a ``ValueError``
raised by the package's own code, which is how it answers bad input; a ``ValueError`` raised
inside numpy, torch or another library is a bug of ours. The marker, rather than importing those
classes, keeps this module free of imports: every tool loads it before anything else.
"""

from __future__ import annotations

import errno
import os
import sys
import traceback
from typing import Callable

__all__ = ['DEBUG_FLAG', 'DEBUG_ENV', 'is_user_error', 'run_tool']

DEBUG_FLAG = '--debug'
DEBUG_ENV = 'CONCEPTMINER3D_DEBUG'
EXIT_USER_ERROR = 2
_ALWAYS_USER = (FileNotFoundError, FileExistsError, NotADirectoryError, IsADirectoryError)
_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def _raised_by_package(err: BaseException) -> bool:
    frames = traceback.extract_tb(err.__traceback__)
    return bool(frames) and os.path.abspath(frames[-1].filename).startswith(_PACKAGE_DIR + os.sep)


def is_user_error(err: BaseException) -> bool:
    """Whether ``err`` is about the user's input (paths, files, configs, models), not a bug."""
    if isinstance(err, _ALWAYS_USER) or getattr(err, 'user_error', False):
        return True
    if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):  # a write outside our own writers
        return True
    return isinstance(err, ValueError) and _raised_by_package(err)


def run_tool(main: Callable[[], None]) -> None:
    """Run a tool's ``main``; end a user error with one ``error:`` line and status 2."""
    debug = DEBUG_FLAG in sys.argv[1:] or os.environ.get(DEBUG_ENV, '') not in ('', '0')
    if DEBUG_FLAG in sys.argv[1:]:
        sys.argv.remove(DEBUG_FLAG)
    try:
        main()
    except Exception as err:  # noqa: BLE001 -- classified below; bugs are re-raised untouched
        if debug or not is_user_error(err):
            raise
        message = ' '.join(str(err).split()) or type(err).__name__
        print(f'error: {message}', file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
