"""Bulk tracking payloads: items, batches, order, the token only in the body, answers and shortfalls; and the
delivery policy (ADR 014) against a fake Matomo that answers as Matomo does (one transaction per request)."""

from __future__ import annotations

import json
import random
from collections import Counter
from urllib.parse import parse_qsl, urlencode

import pytest

from trafficinator_locust.core.bulk import (
    Fate,
    HitFate,
    RetryPolicy,
    Verdict,
    batches,
    build_payload,
    deliver,
    describe,
    encode_item,
    in_time_order,
    item_kind,
    judge,
    kinds_of,
    next_step,
    no_answer,
    parse_answer,
    parse_refusal,
    refusal_message,
)
from trafficinator_locust.core.errors import BulkError

TOKEN = "bulk-secret-token-9f8e7d"


def test_an_item_is_the_urlencoded_query_with_a_question_mark():
    params = {
        "idsite": "3",
        "rec": "1",
        "url": "https://shop.example/a b?c=d&e",
        "ua": "Mozilla/5.0 (X11; Linux) ü",
        "cdt": "2025-03-14 09:26:53",
    }
    item = encode_item(params)
    assert item == "?" + urlencode(params)
    assert dict(parse_qsl(item[1:])) == params


def test_a_token_inside_an_item_is_refused():
    with pytest.raises(ValueError, match="token_auth"):
        encode_item({"idsite": "1", "token_auth": TOKEN})
    with pytest.raises(ValueError, match="token_auth"):
        build_payload([f"?idsite=1&token_auth={TOKEN}"], None)


def test_payload_carries_the_items_in_order_and_the_token_once_at_the_top():
    items = [encode_item({"idsite": "1", "rec": "1", "pv_id": f"{n:06d}"}) for n in range(5)]
    body = build_payload(items, TOKEN)
    data = json.loads(body)
    assert data == {"requests": items, "token_auth": TOKEN}
    assert body.count(TOKEN.encode()) == 1
    assert all("token_auth" not in item for item in data["requests"])
    assert json.loads(build_payload(items, None)) == {"requests": items}
    with pytest.raises(ValueError):
        build_payload([], TOKEN)


def test_batches_keep_the_order_and_split_at_the_size():
    chunks = list(batches(range(123), 50))
    assert [len(c) for c in chunks] == [50, 50, 23]
    assert [x for c in chunks for x in c] == list(range(123))
    assert list(batches([], 50)) == []
    assert list(batches(range(3), 1)) == [[0], [1], [2]]
    with pytest.raises(ValueError):
        list(batches(range(3), 0))


def test_each_visitors_hits_stay_together_in_time_order_across_batches():
    visits = [[("a", 30), ("a", 10), ("a", 20)], [("b", 5)], [("c", 2), ("c", 1)]]
    flat = list(in_time_order(visits, time_of=lambda hit: hit[1]))
    assert flat == [("a", 10), ("a", 20), ("a", 30), ("b", 5), ("c", 1), ("c", 2)]
    split = list(batches(flat, 2))
    assert split == [[("a", 10), ("a", 20)], [("a", 30), ("b", 5)], [("c", 1), ("c", 2)]]
    for visitor in "abc":
        times = [t for chunk in split for v, t in chunk if v == visitor]
        assert times == sorted(times)


def test_a_complete_answer_is_accepted():
    answer = parse_answer(200, b'{"status":"success","tracked":50,"invalid":0}', 50)
    assert (answer.sent, answer.tracked, answer.invalid, answer.complete) == (50, 50, 0, True)


def test_a_shortfall_is_an_error_with_the_counts():
    with pytest.raises(BulkError) as caught:
        parse_answer(200, b'{"status":"success","tracked":47,"invalid":3,"invalid_indices":[4,9,11]}', 50)
    error = caught.value
    assert (
        "sent 50" in str(error)
        and "tracked 47" in str(error)
        and "invalid 3" in str(error)
        and "[4, 9, 11]" in str(error)
    )
    assert error.answer is not None and (error.answer.tracked, error.answer.invalid, error.answer.invalid_indices) == (
        47,
        3,
        (4, 9, 11),
    )
    with pytest.raises(BulkError, match="tracked 49"):
        parse_answer(200, b'{"status":"success","tracked":49,"invalid":0}', 50)


@pytest.mark.parametrize(
    "status, body, match",
    [
        (
            400,
            json.dumps({"status": "error", "message": f"token {TOKEN} has no write access"}).encode(),
            "HTTP 400: token \\*\\*\\* has no write access",
        ),
        (500, b"<html>Internal error</html>", "HTTP 500"),
        (200, b"GIF89a", "not Matomo's bulk JSON"),
        (200, b'{"status":"error","message":"bad request"}', "bad request"),
        (200, b'{"status":"success","tracked":"many"}', "not numbers"),
    ],
)
def test_a_failed_request_is_an_error_without_the_token(status, body, match):
    with pytest.raises(BulkError, match=match) as caught:
        parse_answer(status, body, 10, token=TOKEN)
    assert TOKEN not in str(caught.value)
    assert caught.value.answer is None and caught.value.status == status


# --- the delivery policy (ADR 014) ------------------------------------------------------------------


def _items(count: int, goal_at: tuple[int, ...] = ()) -> list[str]:
    """Bulk items: pageviews, with goal conversions at ``goal_at``."""
    return [
        encode_item({"idsite": "1", "rec": "1", "idgoal": "1", "n": str(n)})
        if n in goal_at
        else encode_item({"idsite": "1", "rec": "1", "url": f"https://shop.example/p{n}", "n": str(n)})
        for n in range(count)
    ]


class FakeMatomo:
    """Answers bulk requests as Matomo does: one transaction per request.

    ``poison`` items throw (the batch is rolled back, 500 with ``tracked`` = items processed before);
    ``invalid`` items are skipped and listed (the rest is committed); ``fail(call)`` makes a request
    fail like a deadlock (500, tracked 0, nothing stored); ``status(call)`` answers with another status.
    """

    def __init__(self, poison=(), invalid=(), fail=lambda call: False, status=lambda call: None, indices=True):
        self.poison, self.invalid, self.fail, self.status, self.indices = (
            set(poison),
            set(invalid),
            fail,
            status,
            indices,
        )
        self.stored: Counter[str] = Counter()
        self.calls = 0
        self.order: list[str] = []
        self.sizes: list[int] = []

    def answer(self, items: list[str]) -> tuple[int, bytes]:
        self.calls += 1
        self.sizes.append(len(items))
        forced = self.status(self.calls)
        if forced is not None:
            return forced, b"<html>busy</html>"
        if self.fail(self.calls):
            return 500, b'{"status":"error","tracked":0,"invalid":0}'
        for position, item in enumerate(items):
            if item in self.poison:
                body = {"status": "error", "tracked": position, "message": "Request was meant for a plugin"}
                return 500, json.dumps(body).encode()
        skipped = [position for position, item in enumerate(items) if item in self.invalid]
        for item in items:
            if item not in self.invalid:
                self.stored[item] += 1
                self.order.append(item)
        answer = {"status": "success", "tracked": len(items) - len(skipped), "invalid": len(skipped)}
        if self.indices:
            answer["invalid_indices"] = skipped
        return 200, json.dumps(answer).encode()


DEFAULT = RetryPolicy()


def _run(items, matomo, policy=DEFAULT, stop_after_sleeps=None):
    """One batch through ``deliver`` against ``matomo``; returns the delivery, the sleeps and the texts."""
    sleeps: list[float] = []
    texts: list[str | None] = []

    def send_one(send, record):
        status, body = matomo.answer(items[send.start : send.end])
        texts.append(describe(record(judge(status, body, send.size, TOKEN)), items))

    def sleep(seconds):
        sleeps.append(seconds)
        return stop_after_sleeps is not None and len(sleeps) >= stop_after_sleeps

    delivery = deliver(len(items), send_one, policy, sleep=sleep, draw=lambda: 0.5)
    return delivery, sleeps, texts


@pytest.mark.parametrize(
    "status, body, fate",
    [
        (200, b'{"status":"success","tracked":3,"invalid":0}', Fate.STORED),
        (200, b'{"status":"error","tracked":1}', Fate.ROLLED_BACK),
        (500, b'{"status":"error","tracked":1,"invalid":0,"invalid_indices":[]}', Fate.ROLLED_BACK),
        (500, b'{"status":"error","tracked":0}', Fate.ROLLED_BACK),  # a deadlock (MariaDB 1213)
        (500, b"<html>Fatal error</html>", Fate.ROLLED_BACK),
        (503, b"Service Unavailable", Fate.NOT_PROCESSED),
        (502, b"Bad Gateway", Fate.NOT_PROCESSED),
        (429, b"", Fate.NOT_PROCESSED),
        (408, b"", Fate.NOT_PROCESSED),
        (413, b"too large", Fate.TOO_LARGE),
        (504, b"Gateway Timeout", Fate.UNKNOWN),
        (400, b'{"status":"error","message":"bulk body is not valid JSON"}', Fate.REJECTED),
        (403, b"Forbidden", Fate.REJECTED),
        (404, b"<html>Not found</html>", Fate.REJECTED),
        (301, b"", Fate.REJECTED),
        (200, b"GIF89a", Fate.REJECTED),
        (200, b'{"status":"success","tracked":"many"}', Fate.REJECTED),
    ],
)
def test_an_answer_is_judged_by_what_matomo_can_have_stored(status, body, fate):
    outcome = judge(status, body, 3, TOKEN)
    assert outcome.fate is fate and outcome.sent == 3 and outcome.status == status
    assert TOKEN not in outcome.reason


def test_reasons_are_masked_and_say_what_matomo_said():
    body = json.dumps({"status": "error", "tracked": 2, "message": f"bad token {TOKEN} for site 1"}).encode()
    outcome = judge(500, body, 5, TOKEN)
    assert outcome.fate is Fate.ROLLED_BACK and outcome.tracked == 0 and outcome.processed == 2  # stored nothing
    assert outcome.reason == "HTTP 500 status error, tracked 2: bad token *** for site 1"
    assert judge(403, f"token_auth={TOKEN}".encode(), 1).reason == "HTTP 403: token_auth=***"
    assert no_answer(4, reached=False, reason="connection refused").fate is Fate.NOT_PROCESSED
    assert no_answer(4, reached=True, reason="timed out").fate is Fate.UNKNOWN


def test_invalid_items_of_a_stored_answer_are_refused_by_index_or_by_count():
    listed = judge(200, b'{"status":"success","tracked":3,"invalid":2,"invalid_indices":[1,4]}', 5)
    assert listed.refused() == ((1, 4), 0)
    everything = judge(200, b'{"status":"success","tracked":0,"invalid":5}', 5)  # no indices: not a superuser
    assert everything.refused() == ((0, 1, 2, 3, 4), 0)
    some = judge(200, b'{"status":"success","tracked":3,"invalid":2}', 5)
    assert some.refused() == ((), 2)
    silent = judge(200, b'{"status":"success","tracked":4,"invalid":0}', 5)  # a lock wait timeout skipped one
    assert silent.refused() == ((), 1)
    assert judge(500, b'{"status":"error","tracked":3}', 5).refused() == ((), 0)


def test_next_step_retries_then_splits_or_refuses_and_halts_where_a_resend_cannot_help():
    policy = RetryPolicy(retries=2)

    def step(status, body=b"", size=4, tries=1, **kw):
        return next_step(judge(status, body, size), tries, policy, **kw)

    ok = b'{"status":"success","tracked":4,"invalid":0}'
    assert step(200, ok) is Verdict.DONE
    assert [step(500, tries=n) for n in (1, 2, 3)] == [Verdict.RETRY, Verdict.RETRY, Verdict.SPLIT]
    assert step(500, size=1, tries=3) is Verdict.REFUSED
    assert step(500, tries=1, split_from_batch=True) is Verdict.SPLIT  # a cut piece splits at once ...
    assert step(500, size=1, tries=1, split_from_batch=True) is Verdict.RETRY  # ... a single hit gets its tries
    assert [step(503, tries=n) for n in (1, 2, 3)] == [Verdict.RETRY, Verdict.RETRY, Verdict.HALT]
    assert step(413) is Verdict.SPLIT and step(413, size=1) is Verdict.REFUSED
    assert step(404) is Verdict.HALT and step(504) is Verdict.HALT


def test_backoff_doubles_with_jitter_and_a_cap():
    policy = RetryPolicy(retries=8, delay=1.0)
    assert [policy.backoff(n, 0.5) for n in (1, 2, 3, 4)] == [1.0, 2.0, 4.0, 8.0]
    assert policy.backoff(1, 0.0) == 0.5 and policy.backoff(1, 0.999999) == pytest.approx(1.5)
    assert policy.backoff(8, 0.5) == 30.0  # capped
    assert RetryPolicy(delay=0).backoff(3, 0.9) == 0


def test_a_batch_matomo_rolled_back_is_resent_and_stored_exactly_once():
    items = _items(20)
    matomo = FakeMatomo(fail=lambda call: call <= 2)  # two deadlocks, then through
    delivery, sleeps, texts = _run(items, matomo)
    assert delivery.fates == [HitFate.DELIVERED] * 20 and delivery.tracked == 20 and delivery.halted is None
    assert matomo.stored == Counter(items) and matomo.calls == 3 and sleeps == [1.0, 2.0]
    assert texts[0] == "HTTP 500 status error, tracked 0; nothing stored, resent in 1.0 s (try 2)"
    assert texts[-1] is None  # the request that stored it is a success


def test_a_hit_matomo_refuses_is_isolated_refused_and_the_others_are_delivered_once_in_order():
    items = _items(50, goal_at=(23,))
    matomo = FakeMatomo(poison={items[23]})
    delivery, _, texts = _run(items, matomo)
    assert delivery.positions(HitFate.REFUSED) == [23] and delivery.halted is None
    assert matomo.stored == Counter(items[:23] + items[24:])  # all others, each once
    assert matomo.order == items[:23] + items[24:]  # in batch order: visitors' hits stay in time order
    # Bounded: the batch's 4 tries, then a cut after the 23 hits Matomo processed before the failure, halving
    # down to the hit, its own 4 tries, and the pieces after it.
    assert matomo.sizes[:6] == [50, 50, 50, 50, 23, 27], matomo.sizes
    assert matomo.calls <= 4 + 2 * 6 + 4, matomo.calls
    refusal = [text for text in texts if text and text.startswith("refused")]
    assert refusal == [
        "refused 1 hit (goal 1): HTTP 500 status error, tracked 0: Request was meant for a plugin (alone, 4 tries)"
    ]
    assert delivery.settled == 50


def test_a_refused_first_hit_is_refused_once_matomo_takes_the_rest():
    items = _items(8, goal_at=(0,))
    matomo = FakeMatomo(poison={items[0]})  # every answer says tracked 0: no sign Matomo works, at first
    delivery, _, _ = _run(items, matomo)
    assert delivery.positions(HitFate.REFUSED) == [0] and matomo.stored == Counter(items[1:])
    assert delivery.halted is None and delivery.settled == 8


def test_refused_hits_after_processed_ones_are_refused_also_side_by_side():
    items = _items(12, goal_at=(5, 6, 7))
    matomo = FakeMatomo(poison={items[5], items[6], items[7]})  # tracked 5 says Matomo works
    delivery, _, _ = _run(items, matomo)
    assert delivery.halted is None and delivery.positions(HitFate.REFUSED) == [5, 6, 7]
    assert matomo.stored == Counter(items[:5] + items[8:])


def test_two_refused_hits_and_a_single_hit_batch():
    items = _items(30, goal_at=(3, 17))
    matomo = FakeMatomo(poison={items[3], items[17]})
    delivery, _, _ = _run(items, matomo)
    assert delivery.positions(HitFate.REFUSED) == [3, 17]
    assert matomo.stored == Counter(i for n, i in enumerate(items) if n not in (3, 17))
    single = _items(1, goal_at=(0,))
    matomo = FakeMatomo(poison=set(single))
    delivery, sleeps, _ = _run(single, matomo, RetryPolicy(retries=2))
    assert delivery.fates == [HitFate.REFUSED] and matomo.calls == 3 and sleeps == [1.0, 2.0]  # bounded


def test_when_everything_fails_the_delivery_halts_without_refusing_anyone():
    items = _items(50)
    matomo = FakeMatomo(fail=lambda call: True)  # Matomo's database is down
    delivery, _, texts = _run(items, matomo)
    assert delivery.halted is not None and "Matomo's failure" in delivery.halted
    assert delivery.positions(HitFate.PENDING) == list(range(50)) and delivery.settled == 0
    assert not matomo.stored and matomo.calls < 25, matomo.calls
    assert texts[-1] and texts[-1].endswith("; the batch stops here")


def test_invalid_items_are_refused_by_kind_and_never_resent():
    items = _items(10, goal_at=(4,))
    matomo = FakeMatomo(invalid={items[2], items[4]})
    delivery, _, texts = _run(items, matomo)
    assert matomo.calls == 1 and delivery.positions(HitFate.REFUSED) == [2, 4] and delivery.tracked == 8
    assert texts == [
        "refused 2 hits (goal 1, pageview 1): skipped by Matomo as invalid (unknown site or invalid parameter)"
    ]
    unlisted = FakeMatomo(invalid={items[2]}, indices=False)  # a token that is not a superuser's
    delivery, _, texts = _run(items, unlisted)
    assert unlisted.calls == 1 and delivery.unattributed == 1 and not delivery.positions(HitFate.REFUSED)
    assert texts == ["refused 1 hit (unknown 1): Matomo tracked 9 of 10 hits and did not say which it refused"]


@pytest.mark.parametrize(
    "status, fate, sends",
    [(503, HitFate.PENDING, 4), (404, HitFate.PENDING, 1), (504, HitFate.UNCONFIRMED, 1)],
)
def test_unavailable_refused_as_a_whole_or_unanswered_halts(status, fate, sends):
    items = _items(6)
    matomo = FakeMatomo(status=lambda call: status)
    delivery, _, _ = _run(items, matomo)
    assert delivery.halted and delivery.fates == [fate] * 6 and matomo.calls == sends and not matomo.stored


def test_too_large_splits_at_once():
    items = _items(8)
    matomo = FakeMatomo(status=lambda call: 413 if call == 1 else None)
    delivery, sleeps, _ = _run(items, matomo)
    assert delivery.fates == [HitFate.DELIVERED] * 8 and matomo.calls == 3 and sleeps == []


def test_stopped_while_waiting_leaves_the_settled_prefix():
    items = _items(40, goal_at=(30,))
    matomo = FakeMatomo(poison={items[30]})
    delivery, _, _ = _run(items, matomo, stop_after_sleeps=4)
    assert delivery.stopped and not delivery.done
    assert delivery.settled == 30 and matomo.stored == Counter(items[:30])  # the cursor may move this far


def test_random_deadlocks_and_refused_hits_every_other_hit_stored_exactly_once():
    rng = random.Random(12)
    halted = 0
    for trial in range(400):
        size = rng.randint(1, 60)
        goals = tuple(n for n in range(size) if rng.random() < 0.03)
        items = _items(size, goal_at=goals)
        matomo = FakeMatomo(poison={items[n] for n in goals}, fail=lambda call: rng.random() < 0.1)
        delivery, _, _ = _run(items, matomo, RetryPolicy(retries=3, delay=0))
        good = [item for n, item in enumerate(items) if n not in goals]
        assert max(matomo.stored.values(), default=1) == 1 and not set(matomo.stored) - set(good), trial  # never twice
        assert matomo.order == [item for item in good if item in matomo.stored], trial  # in order
        if delivery.halted is None:
            assert matomo.stored == Counter(good) and delivery.positions(HitFate.REFUSED) == list(goals), trial
        else:  # only when refused hits open the batch three in a row: nothing marked refused that was not
            halted += 1
            assert goals[:3] == (0, 1, 2) and delivery.settled == 0 and not matomo.stored, trial
    assert halted <= 1


def test_three_refused_hits_opening_a_batch_look_like_matomos_failure():
    items = _items(10, goal_at=(0, 1, 2))
    matomo = FakeMatomo(poison={items[0], items[1], items[2]})
    delivery, _, _ = _run(items, matomo)
    assert delivery.halted and "Matomo's failure" in delivery.halted and not matomo.stored
    assert delivery.fates == [HitFate.PENDING] * 10  # not refused: a later run tries them again
    items = _items(10, goal_at=(0, 1))
    matomo = FakeMatomo(poison={items[0], items[1]})
    delivery, _, _ = _run(items, matomo)
    assert delivery.halted is None and delivery.positions(HitFate.REFUSED) == [0, 1]


def test_a_refusal_text_is_read_back_also_from_lockers_distributed_form():
    text = refusal_message({"pageview": 1, "goal": 2}, "HTTP 500: it's broken")
    assert text == "refused 3 hits (goal 2, pageview 1): HTTP 500: it's broken"
    assert parse_refusal(text) == ({"goal": 2, "pageview": 1}, "HTTP 500: it's broken")
    assert parse_refusal(repr(text)) == ({"goal": 2, "pageview": 1}, "HTTP 500: it's broken")
    assert parse_refusal("refused 1 hit (goal 1): x") == ({"goal": 1}, "x")
    assert parse_refusal("HTTP 500: nothing stored, resent") is None


def test_item_kinds():
    items = _items(3, goal_at=(1,))
    assert [item_kind(item) for item in items] == ["pageview", "goal", "pageview"]
    assert kinds_of(items, [0, 1], unattributed=2) == {"pageview": 1, "goal": 1, "unknown": 2}
