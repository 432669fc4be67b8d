"""Reading requests: GET, form POST and bulk JSON carry the same hits; PHP's precedence; malformed bulk."""

import json
import urllib.parse

import pytest
from receiver_client import CID_A, CID_B, TOKEN, UA, ReceiverClient, old_cdt

from trafficinator_locust.core import protocol as p


def test_query_string_wins_over_form_body(receiver):
    response = receiver.client.post(
        "/dev/matomo.php?idsite=1", data={"idsite": "99", "rec": "1"}, headers={"User-Agent": UA}
    )
    assert response.status_code == 200 and receiver.site()["hits"] == 1


HITS = [
    {"cid": CID_A, "url": "https://example.org/", "action_name": "Home"},
    {"cid": CID_A, "e_c": "Video", "e_a": "Play"},
    {"cid": CID_B, "search": "shoes", "search_count": "0"},
    {"cid": CID_B, "link": "https://other.example/"},
    {"cid": "nothex"},
    {"uid": "user@example.org", "download": "https://example.org/a.pdf"},
    {"uid": "user@example.org", "idgoal": "1", "revenue": "3.50"},
    {"cid": CID_A, "rec": None},
]


def with_defaults(params: dict) -> dict:
    merged = {"idsite": "1", "rec": "1", **params}
    return {k: v for k, v in merged.items() if v is not None}


def test_get_form_post_and_bulk_record_the_same():
    by_get, by_post, by_bulk = ReceiverClient(), ReceiverClient(), ReceiverClient()
    get_statuses = [by_get.get_hit(**hit).status_code for hit in HITS]
    post_statuses = [by_post.hit(**hit).status_code for hit in HITS]
    as_strings = ["?" + urllib.parse.urlencode(with_defaults(hit)) for hit in HITS[:4]]
    as_objects = [with_defaults(hit) for hit in HITS[4:]]
    answer = by_bulk.bulk({"requests": as_strings + as_objects}).json
    assert get_statuses == post_statuses == [200, 200, 200, 200, 400, 200, 200, 200]
    assert answer == {"status": "success", "tracked": 7, "invalid": 1}
    assert by_get.stats() == by_post.stats() == by_bulk.stats()
    site = by_get.site()
    # the uid's first hit has the fingerprint of B's visit in progress and takes it over (Matomo does)
    assert (site["visits"], site["hits"], site["ignored"]) == (2, 6, {p.NO_REC: 1})
    assert site["actions"]["event"] == 1 and site["actions"]["goal"] == 1


def test_bulk_counts_tracked_and_invalid_and_applies_the_top_level_token(receiver):
    answer = receiver.bulk(
        {
            "token_auth": TOKEN,
            "requests": [
                "?idsite=1&rec=1&cid=" + CID_A,
                "?idsite=1&rec=1&cip=198.51.100.7",  # allowed by the top-level token
                {"idsite": 1, "rec": 1, "cdt": old_cdt(30)},  # allowed by the top-level token
                "?idsite=1&rec=1&cid=short",
                "?idsite=77&rec=1",
                "?idsite=1",  # no rec: ignored, counted as tracked
            ],
        }
    )
    assert answer.status_code == 200
    assert answer.json == {"status": "success", "tracked": 4, "invalid": 2, "invalid_indices": [3, 4]}
    stats = receiver.stats()
    assert stats["sites"]["1"]["hits"] == 3 and stats["sites"]["1"]["invalid"] == {p.BAD_CID: 1}
    assert stats["invalid"] == {p.UNKNOWN_SITE: 1}


def test_bulk_items_without_token_are_checked_one_by_one(receiver):
    answer = receiver.bulk({"requests": ["?idsite=1&rec=1&cip=198.51.100.7", "?idsite=1&rec=1"]}).json
    assert answer == {"status": "success", "tracked": 1, "invalid": 1}


@pytest.mark.parametrize(
    "body",
    [
        "{not json",
        json.dumps({"token_auth": TOKEN}),
        json.dumps({"requests": "?idsite=1&rec=1"}),
        json.dumps({"requests": ["?idsite=1&rec=1", 42]}),
        json.dumps({"requests": [], "token_auth": 5}),
        "[1, 2]",
    ],
)
def test_malformed_bulk_fails_the_whole_batch(receiver, body):
    response = receiver.bulk(body, raw=True)
    assert response.status_code == 400 and response.json["status"] == "error"
    assert receiver.site()["hits"] == 0
