"""Which visitor a visit is: a new one, or one who already visited this target and is not in a visit now.

Why: Matomo 5 decides "returning" from its own history of the visitor, the previous visit it
stored for that visitor id (``plugins/CoreHome/Columns/VisitorReturning.php``, ``VisitsCount``),
not from ``_idvc`` or ``new_visit``. And a visitor's hits join its most recent visit
(``core/Tracker/Visit.php``), so one visitor in two visits at once makes one merged visit. A
returning visit must therefore reuse a visitor whose earlier visit Matomo stored at that target,
and no visitor may be in two visits at the same time.

The pieces, from the inside out:

* a :class:`VisitorTicket` says who visits: ``index`` (the planner derives the person — ``cid``,
  device, language, country — from the index alone, so it is the same person on every visit) and
  ``visits_before`` (0 for a new visitor);
* a :class:`VisitorBook` per target holds ``next_index`` (the next new visitor), the *pool* of the
  most recent ``pool_size`` visitors whose visit was stored, with their visit counts, and the
  visitors checked out now;
* :meth:`VisitorBook.check_out` draws a returning visit with probability ``returning`` from the
  pool members that are free, else (or when none is free) a new visitor;
* :meth:`VisitorBook.check_in` gives the visitor back, into the pool when Matomo stored the visit.

The one invariant: a visitor index is checked out at most once at any time. Books of different
processes never share an index (each starts at its own ``first_index``), so the invariant holds
across workers too. A fresh site's first visits are necessarily new: the configured share of
returning visits is reached once the pool holds enough free visitors::

    book = VisitorBook(returning=0.3, pool_size=2000)
    ticket = book.check_out(rng)          # VisitorTicket(index=0, visits_before=0): new
    ...                                   # the visit is sent
    book.check_in(ticket, stored=True)    # visitor 0 may come back, as a returning visitor
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any, NamedTuple


class VisitorTicket(NamedTuple):
    """Who a visit is: visitor ``index`` of its target, who had ``visits_before`` stored visits there."""

    index: int
    visits_before: int = 0

    @property
    def returning(self) -> bool:
        return self.visits_before > 0


class VisitorBook:
    """One target's visitors in one process: see the module docstring."""

    def __init__(self, returning: float, pool_size: int, *, first_index: int = 0):
        if not 0 <= returning <= 1:
            raise ValueError("returning must be between 0 and 1")
        if pool_size < 1:
            raise ValueError("pool_size must be >= 1")
        self.returning = returning
        self.pool_size = pool_size
        self.next_index = first_index
        self._visits: dict[int, int] = {}  # pool member -> stored visits, oldest first (insertion order)
        self._free: list[int] = []  # pool members not in a visit now
        self._slot: dict[int, int] = {}  # pool member -> its position in _free
        self._out: set[int] = set()  # checked out now

    def __len__(self) -> int:
        return len(self._visits)

    @property
    def checked_out(self) -> int:
        return len(self._out)

    def check_out(self, rng: random.Random) -> VisitorTicket:
        """The next visit's visitor: returning (a free pool member) with probability ``returning``."""
        if self._free and rng.random() < self.returning:
            index = self._take(self._free[int(rng.random() * len(self._free))])
            ticket = VisitorTicket(index, self._visits[index])
        else:
            ticket = VisitorTicket(self.next_index, 0)
            self.next_index += 1
        self._out.add(ticket.index)
        return ticket

    def check_in(self, ticket: VisitorTicket, stored: bool) -> None:
        """The visit of ``ticket`` ended; ``stored`` when Matomo has it (its first hit was answered 2xx)."""
        self._out.discard(ticket.index)
        if stored:
            self._visits[ticket.index] = ticket.visits_before + 1
        if ticket.index in self._visits:
            self._give_back(ticket.index)
        while len(self._visits) > self.pool_size:
            self._evict_oldest_free()

    def to_state(self) -> dict[str, Any]:
        """What a restart needs: the next index and the pool (checked-out visitors come back free)."""
        return {"next_index": self.next_index, "pool": [[index, visits] for index, visits in self._visits.items()]}

    def restore(self, state: Mapping[str, Any]) -> None:
        """Continue from :meth:`to_state` of an earlier run (only before anything is checked out)."""
        if self._out:
            raise RuntimeError("restore a visitor book before checking visitors out")
        self.next_index = max(self.next_index, int(state.get("next_index", 0)))
        self._visits, self._free, self._slot = {}, [], {}
        for index, visits in state.get("pool", [])[-self.pool_size :]:
            self._visits[int(index)] = int(visits)
            self._give_back(int(index))

    # -- the free list: O(1) draw, take and give back

    def _give_back(self, index: int) -> None:
        if index not in self._slot:
            self._slot[index] = len(self._free)
            self._free.append(index)

    def _take(self, index: int) -> int:
        position = self._slot.pop(index)
        last = self._free.pop()
        if last != index:
            self._free[position] = last
            self._slot[last] = position
        return index

    def _evict_oldest_free(self) -> None:
        for index in self._visits:
            if index not in self._out:
                self._take(index)
                del self._visits[index]
                return
        raise AssertionError("a full pool with every member checked out")  # pool_size >= 1 and one was just freed
