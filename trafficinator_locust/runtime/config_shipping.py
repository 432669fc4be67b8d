"""The traffic config on its way from the master to its workers.

Locust ships the locustfile to workers started with ``-f -``, but not the YAML beside it, the URL
lists that YAML names, or the environment variables that hold the tokens. So the master puts its
resolved :class:`~trafficinator_locust.core.config.Config` into its parsed options under one key that is
not a registered argument (so it never shows in the web UI's form); Locust sends every custom option
to every worker in each spawn message, and a worker rebuilds its user classes from it when the test
starts (see ``Plugin._on_test_start``).

Each shipment has a *generation*: 0 is the config the master started with, which a worker started
with its own YAML must match (the hello check); a higher one was staged later (the web UI's targets
API) and every worker adopts it at the next test start.

The config is pickled: a worker started with ``-f -`` already runs Python code sent by its master,
so unpickling adds no trust. Tokens travel on the master-worker channel, as they must (workers send
them); nothing here logs or displays the payload.
"""

from __future__ import annotations

import base64
import pickle
import zlib
from typing import Any, NamedTuple

from trafficinator_locust.core.config import Config

PAYLOAD_OPTION = "trafficinator_shipped_config"


class Shipment(NamedTuple):
    generation: int
    config: Config


def pack(config: Config, generation: int) -> str:
    """Text safe for Locust's msgpack messages."""
    return base64.b64encode(zlib.compress(pickle.dumps((generation, config)))).decode("ascii")


def unpack(text: str) -> Shipment:
    generation, config = pickle.loads(zlib.decompress(base64.b64decode(text)))
    return Shipment(int(generation), config)


def ship(options: Any, config: Config, generation: int) -> None:
    """Put ``config`` into the master's parsed options, which go to workers with every spawn message."""
    if options is not None:
        setattr(options, PAYLOAD_OPTION, pack(config, generation))


def received(options: Any) -> Shipment | None:
    """The shipment a worker's parsed options carry (set from the master's spawn message), if any."""
    text = getattr(options, PAYLOAD_OPTION, None) if options is not None else None
    return unpack(text) if text else None
