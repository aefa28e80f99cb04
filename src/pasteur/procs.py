"""What the server's child processes inherit.

Every ``PASTEUR_<NAME>`` variable is a flag of the server (``cli.EnvDefaults``),
secrets among them: ``PASTEUR_REMOTE_TOKEN``, ``PASTEUR_SSH_SEED``,
``PASTEUR_AUTH``, ``PASTEUR_ACCOUNT_SEED``, ``PASTEUR_CERT_SEED``,
``PASTEUR_DNS_KEY``. No child reads them: the committer and the expiry scan
take their arguments, the sync worker gets its token and seed on its stdin,
and git needs none. So every child (committer, sync worker, expiry scan,
``git repack``/``prune``/``reflog``) is started with ``env=child_env()``: the
server's environment without them. The rest stays (``PATH``, ``HOME``, the
locale, ``SSL_CERT_FILE``, proxies, ``PYTHONPATH``): git, libgit2 and Python
use it.
"""

from __future__ import annotations

import os

ENV_PREFIX = "PASTEUR_"


def child_env() -> dict[str, str]:
    """The environment of a child process: the server's, without ``PASTEUR_*``."""
    return {name: value for name, value in os.environ.items() if not name.startswith(ENV_PREFIX)}
