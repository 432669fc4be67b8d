"""Bulk tracking payloads: items, batches, order, the token only in the body, answers and shortfalls."""

from __future__ import annotations

import json
from urllib.parse import parse_qsl, urlencode

import pytest

from trafficinator_locust.core.bulk import batches, build_payload, encode_item, in_time_order, parse_answer
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
