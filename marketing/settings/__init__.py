"""Assemble settings from one module per concern.

Values come from the environment (see ``env.py`` and the README's
configuration table); defaults give the embedded one-command setup.
"""

from .app import *  # noqa: F403
from .base import *  # noqa: F403
from .database import *  # noqa: F403
from .email import *  # noqa: F403
from .security import *  # noqa: F403
from .tasks import *  # noqa: F403
