"""SIGTERM ends a headless shape run gracefully: summary, report and exit code written, like Ctrl-C.

Why: Locust installs its SIGTERM handler only after ``start_automatic_run`` returns, and a headless
run with a load shape (the plugin's default for paced runs without ``-u``, on a local runner or a
master) blocks in ``shape_greenlet.join()`` until the shape ends. A SIGTERM then (every container
stop, a CI job's timeout) took the default action: exit 143, no report, no table, no check code.

So the plugin installs its own handler at ``init``, before Locust blocks. While the shape runs
headless (only then is Locust's handler missing), it ends the shape: Locust's join returns, it stops
the runner (users stop within ``--stop-timeout``), installs its own handler and shuts down as after a
finished shape: ``quitting`` fires, the plugin prints the table, writes the report and sets the exit
code. A SIGTERM before the test started (a master waiting for ``--expect-workers``) quits the runner
and exits 143 (128 + SIGTERM), the code it had before. After the shape, Locust's handler does the
work and this one does nothing (gevent runs every watcher of a signal).

Example::

    install_stop_signal(environment)   # in the plugin's init listener, non-worker processes only
"""

from __future__ import annotations

from locust.env import Environment
from locust.runners import STATE_INIT

import gevent

import logging
import signal

from trafficinator_locust.runtime.options import option

logger = logging.getLogger("trafficinator")

EXIT_TERMINATED = 128 + signal.SIGTERM


def install_stop_signal(environment: Environment) -> None:
    """Handle SIGTERM while a headless run blocks Locust before its own handler (see the module docstring)."""
    if not option(environment.parsed_options, "headless", False):
        return  # with the web UI Locust's handler is installed before any test starts

    def on_sigterm() -> None:
        runner = environment.runner
        if runner is None:
            return
        shape = getattr(runner, "shape_greenlet", None)
        if shape is not None and not shape.dead:
            logger.info("Got SIGTERM: ending the run (summary, report and checks follow)")
            ending = getattr(environment.shape_class, "end", None)
            if callable(ending):
                ending("SIGTERM")  # the plugin's shape ends at its next tick, as when the budgets are spent
            else:
                shape.kill(block=False)  # Locust's join returns, then it stops and shuts down as usual
        elif shape is None and runner.state == STATE_INIT:
            logger.info("Got SIGTERM before the test started: quitting")
            runner.quit()
            gevent.get_hub().parent.throw(SystemExit(EXIT_TERMINATED))

    gevent.signal_handler(signal.SIGTERM, on_sigterm)
