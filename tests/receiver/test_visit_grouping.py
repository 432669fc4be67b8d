"""Matomo's visit grouping in the receiver: visitor id, fingerprint, 30 minutes, new_visit, the site's
local midnight, campaigns, pings, uid, cdt; and lookups that expire without losing visits."""

from datetime import datetime, timezone

from receiver_client import CID_A, CID_B, TOKEN, ReceiverClient, old_cdt

from trafficinator_locust.core import protocol as p


def test_same_fingerprint_with_different_cookie_ids_merges_into_one_visit(receiver):
    receiver.hit(_id="1111111111111111", url="https://example.org/a")
    receiver.hit(_id="2222222222222222", url="https://example.org/b")
    site = receiver.site()
    assert site["visits"] == 1 and site["unique_visitors"] == 1 and site["actions"]["pageview"] == 2


def test_different_cids_are_different_visits(receiver):
    receiver.hit(_id="1111111111111111", cid=CID_A)
    receiver.hit(_id="2222222222222222", cid=CID_B)
    receiver.hit(cid=CID_A)
    assert (receiver.site()["visits"], receiver.site()["unique_visitors"]) == (2, 2)


def test_different_ip_ua_or_language_are_different_visits(receiver):
    receiver.hit()
    receiver.hit(remote="10.0.0.2")
    receiver.hit(ua="Mozilla/5.0 (Macintosh) Safari/605")
    receiver.hit(lang="fr-FR")
    receiver.hit(headers={"Accept-Language": "de-DE"})
    assert receiver.site()["visits"] == 5


def test_cip_with_token_is_the_fingerprint_ip(receiver):
    receiver.hit(cip="198.51.100.1", token_auth=TOKEN)
    receiver.hit(cip="198.51.100.2", token_auth=TOKEN)
    receiver.hit(cip="198.51.100.1", token_auth=TOKEN)
    assert receiver.site()["visits"] == 2


def test_thirty_minutes_of_silence_start_a_new_visit(receiver):
    receiver.hit(cid=CID_A)
    receiver.clock.advance(29)
    receiver.hit(cid=CID_A)
    assert receiver.site()["visits"] == 1
    receiver.clock.advance(31)
    receiver.hit(cid=CID_A)
    assert (receiver.site()["visits"], receiver.site()["unique_visitors"]) == (2, 1)


def test_new_visit_1_forces_a_new_visit(receiver):
    receiver.hit(cid=CID_A)
    receiver.hit(cid=CID_A, new_visit="1")
    receiver.hit(cid=CID_A)
    assert receiver.site()["visits"] == 2


def test_site_local_midnight_splits_a_visit_in_its_time_zone():
    tokyo, utc = ReceiverClient(tz="Asia/Tokyo"), ReceiverClient(tz="UTC")
    for receiver in (tokyo, utc):
        receiver.clock.now = datetime(2026, 11, 25, 14, 50, tzinfo=timezone.utc).timestamp()  # 23:50 JST
        receiver.hit(cid=CID_A)
        receiver.clock.advance(20)  # 00:10 JST
        receiver.hit(cid=CID_A)
    assert tokyo.site()["visits"] == 2
    assert tokyo.site()["visits_by_day"] == {"2026-11-25": 1, "2026-11-26": 1}
    assert utc.site()["visits"] == 1 and utc.site()["visits_by_day"] == {"2026-11-25": 1}


def test_campaign_change_starts_a_new_visit(receiver):
    receiver.hit(cid=CID_A, url="https://example.org/?mtm_campaign=spring")
    receiver.hit(cid=CID_A, url="https://example.org/next")  # no campaign: same visit
    receiver.hit(cid=CID_A, _rcn="spring")  # same campaign: same visit
    assert receiver.site()["visits"] == 1
    receiver.hit(cid=CID_A, url="https://example.org/?pk_campaign=autumn")
    assert receiver.site()["visits"] == 2


def test_ping_never_creates_a_visit_but_extends_one(receiver):
    assert receiver.hit(cid=CID_A, ping="1").status_code == 200
    assert receiver.site()["visits"] == 0 and receiver.site()["ignored"] == {p.PING_WITHOUT_VISIT: 1}
    receiver.hit(cid=CID_A)
    receiver.clock.advance(20)
    receiver.hit(cid=CID_A, ping="1")
    receiver.clock.advance(20)  # 40 min after the page, 20 after the ping
    receiver.hit(cid=CID_A)
    receiver.clock.advance(31)
    receiver.hit(cid=CID_A, ping="1")  # the visit has ended: ignored
    site = receiver.site()
    assert site["visits"] == 1 and site["actions"]["ping"] == 1 and site["actions"]["pageview"] == 2
    assert site["ignored"] == {p.PING_WITHOUT_VISIT: 2}


def test_uid_is_a_visitor_id_lookup(receiver):
    receiver.hit(uid="alice", ua="Browser A")
    receiver.hit(uid="alice", ua="Browser B", remote="10.9.9.9")
    assert receiver.site()["visits"] == 1
    receiver.hit(uid="bob", ua="Browser A")
    assert (receiver.site()["visits"], receiver.site()["unique_visitors"]) == (2, 2)


def test_cdt_sets_the_hit_time(receiver):
    receiver.hit(cid=CID_A, cdt=old_cdt(3))
    receiver.hit(cid=CID_A, cdt=old_cdt(2))  # an hour later: a new visit
    receiver.hit(cid=CID_A, cdt=old_cdt(1.9))  # six minutes later: same visit
    assert receiver.site()["visits"] == 2


def test_many_short_visits_still_count_right(receiver):
    for n in range(3000):
        if n and n % 500 == 0:
            receiver.clock.advance(31)
        receiver.hit(cid=f"{n:016x}", send_image="0")
    site = receiver.site()
    assert site["visits"] == 3000 and site["unique_visitors"] == 3000
    receiver.hit(cid=f"{2999:016x}")  # still within 30 min of its last action
    assert receiver.site()["visits"] == 3000
