"""The sandbox behaviours against coreapp: the in-process chatd + CoreApp harness of ``tests/coreapp``."""

from tests.coreapp.conftest import make_core, sandbox  # noqa: F401  (fixtures)
