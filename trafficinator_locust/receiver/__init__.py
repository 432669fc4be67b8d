"""The embedded Matomo-compatible receiver (``trafficinator sink``), for demos, tests and benchmarks.

Proving the generator right needs a Matomo that answers like Matomo (statuses, silent drops, bulk
answers, visit grouping, a Reporting API subset) without a PHP stack, and that keeps up with Locust
on one core. It serves several Matomo instances from one loopback port, told apart by URL path
prefix, and counts what it stored. What a hit is and when it is rejected comes from
:mod:`trafficinator_locust.core.protocol`, the definition shared with the generator; this package
adds the stateful parts. It imports only ``core`` (and gevent and the standard library).

- :mod:`.instances`: the instances, sites and tokens served, learned from a config's targets
- :mod:`.app`: :class:`~.app.ReceiverApp`, the WSGI application that routes each path
- :mod:`.tracker`: the tracker endpoint (one hit or a bulk batch), the ``loss`` and ``lose`` options
- :mod:`.capacity`: the ``capacity`` option, a FIFO queue per instance in front of the tracker
- :mod:`.visits`: Matomo's visit grouping, visitor lookup and returning visitors;
  :mod:`.devices`: OS, browser and device from the user agent, the fingerprint (config id);
  :mod:`.attribution`: the referrer of a visit; :mod:`.goals`: goal conversions and ecommerce;
  :mod:`.actions`: pageviews, downloads, outlinks, searches and events per day;
  :mod:`.store`: what was stored, the stats JSON
- :mod:`.reporting`: the Reporting API subset (bulk requests too); :mod:`.reports`: the figures of
  its day reports; :mod:`.wsgi`: reading requests, writing answers
- :mod:`.server`: ``serve`` in-process and ``run`` for the command; :mod:`.process`: the receiver
  as a child process (start, wait until it listens, stats, stop)

Every rule it enforces, with the Matomo source file behind it and its test: ``docs/receiver.md``.
Nothing is imported here, so ``receiver.process`` costs no gevent import.
"""
