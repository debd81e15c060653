"""pytest glue: a ``Skip`` raised by a shared (pytest + MicroPython) test is a skip."""

import pytest

from tests.spec._compat import Skip


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item):  # type: ignore[no-untyped-def]
    outcome = yield
    exc = outcome.excinfo
    if exc is not None and isinstance(exc[1], Skip):
        outcome.force_exception(pytest.skip.Exception(str(exc[1]), _use_item_location=True))
