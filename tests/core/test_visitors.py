"""The visitor book: returning visits reuse visitors Matomo stored, and no visitor is in two visits at once."""

from __future__ import annotations

import random

import pytest

from trafficinator_locust.core.visitors import VisitorBook, VisitorTicket


def test_a_fresh_book_gives_new_visitors_until_one_visit_was_stored():
    book, rng = VisitorBook(returning=1.0, pool_size=10), random.Random(1)
    first = book.check_out(rng)
    second = book.check_out(rng)
    assert (first, second) == (VisitorTicket(0, 0), VisitorTicket(1, 0)), "nobody is free to return yet"
    book.check_in(first, stored=True)
    assert book.check_out(rng) == VisitorTicket(0, 1), "visitor 0 had one stored visit"


def test_a_visit_matomo_did_not_store_makes_nobody_returning():
    book, rng = VisitorBook(returning=1.0, pool_size=10), random.Random(2)
    ticket = book.check_out(rng)
    book.check_in(ticket, stored=False)
    assert len(book) == 0 and not book.check_out(rng).returning


def test_no_visitor_is_ever_in_two_visits_at_once_and_visit_counts_add_up():
    book, rng = VisitorBook(returning=0.6, pool_size=50), random.Random(3)
    in_visit: dict[int, VisitorTicket] = {}
    stored_visits: dict[int, int] = {}
    for _ in range(20_000):
        if in_visit and (len(in_visit) >= 40 or rng.random() < 0.5):
            ticket = in_visit.pop(rng.choice(list(in_visit)))
            stored = rng.random() < 0.95
            if stored:
                stored_visits[ticket.index] = stored_visits.get(ticket.index, 0) + 1
            book.check_in(ticket, stored)
        else:
            ticket = book.check_out(rng)
            assert ticket.index not in in_visit, "a visitor already in a visit was checked out again"
            assert ticket.visits_before == stored_visits.get(ticket.index, 0)
            in_visit[ticket.index] = ticket
    assert len(book) <= 50 and book.checked_out == len(in_visit)


@pytest.mark.parametrize("share", [0.1, 0.3, 0.7])
def test_the_returning_share_is_the_configured_one_once_the_pool_holds_free_visitors(share: float):
    book, rng = VisitorBook(returning=share, pool_size=2000), random.Random(4)
    tickets = []
    for _ in range(30_000):
        ticket = book.check_out(rng)
        book.check_in(ticket, stored=True)
        tickets.append(ticket)
    warm = tickets[1000:]
    assert sum(t.returning for t in warm) / len(warm) == pytest.approx(share, abs=0.01)


def test_the_pool_keeps_the_most_recent_visitors_and_a_restart_continues_it():
    book, rng = VisitorBook(returning=0.0, pool_size=3), random.Random(5)
    for _ in range(5):
        book.check_in(book.check_out(rng), stored=True)
    assert book.to_state() == {"next_index": 5, "pool": [[2, 1], [3, 1], [4, 1]]}
    again = VisitorBook(returning=1.0, pool_size=3)
    again.restore(book.to_state())
    ticket = again.check_out(rng)
    assert ticket.index in (2, 3, 4) and ticket.visits_before == 1
    again.check_in(ticket, stored=True)
    assert again.check_out(random.Random(0)).index in (2, 3, 4)
    again.returning = 0.0
    assert again.check_out(rng).index == 5, "new visitors continue after the restored ones"


def test_books_of_different_processes_never_share_a_visitor():
    rng = random.Random(6)
    first, second = VisitorBook(0.5, 100, first_index=0), VisitorBook(0.5, 100, first_index=10**9)
    seen = [set(), set()]
    for _ in range(2000):
        for book, indices in zip((first, second), seen):
            ticket = book.check_out(rng)
            indices.add(ticket.index)
            book.check_in(ticket, stored=True)
    assert not seen[0] & seen[1]


def test_bad_settings_and_a_late_restore_are_refused():
    with pytest.raises(ValueError):
        VisitorBook(returning=1.5, pool_size=10)
    with pytest.raises(ValueError):
        VisitorBook(returning=0.3, pool_size=0)
    book = VisitorBook(returning=0.3, pool_size=10)
    book.check_out(random.Random(7))
    with pytest.raises(RuntimeError):
        book.restore({"next_index": 3, "pool": []})
