"""pytest glue for the shared test modules: ``tests.spec._compat.Skip`` is a pytest skip.

The shared modules cannot import pytest (they also run under MicroPython), so
a ``Skip`` raised by a test, or at import by a module, is converted here.
"""

from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest

from tests.spec._compat import Skip


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, Any, None]:
    outcome = yield
    exc = outcome.excinfo
    if exc is not None and isinstance(exc[1], Skip):
        outcome.force_exception(pytest.skip.Exception(str(exc[1]), _use_item_location=True))


class _Module(pytest.Module):
    """A test module whose import may raise ``Skip`` (the whole module is skipped)."""

    def _getobj(self) -> Any:
        try:
            return super()._getobj()
        except Skip as e:
            pytest.skip("%s: %s" % (self.path.name, e), allow_module_level=True)


def pytest_pycollect_makemodule(module_path: Path, parent: pytest.Collector) -> pytest.Module:
    return _Module.from_parent(parent, path=module_path)
