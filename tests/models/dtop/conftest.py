import pytest


@pytest.fixture(autouse=True)
def _single_thread(one_thread):
    """Every DToP model test runs on one torch thread (tests/conftest.py's ``one_thread``)."""
    yield
