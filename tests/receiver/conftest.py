from gevent import monkey

# The receiver serves on gevent; the tests' blocking clients must cooperate with it in one process.
monkey.patch_all()

import pytest  # noqa: E402
from receiver_client import ReceiverClient  # noqa: E402


@pytest.fixture
def receiver() -> ReceiverClient:
    """A fresh in-process receiver (see :class:`receiver_client.ReceiverClient`)."""
    return ReceiverClient()
