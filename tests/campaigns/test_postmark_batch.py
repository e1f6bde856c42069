"""Postmark's batch API backend: one call per 500 messages, each message exactly as Anymail posts it alone."""

from __future__ import annotations

import datetime as dt

import pytest
from anymail.backends.postmark import EmailBackend as AnymailPostmark
from anymail.exceptions import AnymailAPIError, AnymailRecipientsRefused
from anymail.message import AnymailMessage
from django.core.mail import get_connection

from campaigns.content.models import Campaign, CampaignSegment, Variant
from campaigns.models import Delivery, DeliveryStatus
from campaigns.segments.models import Segment
from campaigns.sending import actions, sender
from campaigns.sending.models import Recipient, RecipientStatus
from campaigns.sending.postmark import EmailBackend
from preferences.models import TopicSubscription
from subscribers.models import ConsentRecord
from tests.mock_esp import MockESP, anymail_settings

BATCH = "campaigns.sending.postmark.EmailBackend"
SINGLE = "anymail.backends.postmark.EmailBackend"
GONE = "gone@example.com"


def message(n: int, *, to: str | None = None, light: bool = False) -> AnymailMessage:
    """Return a message using the Anymail features campaigns and journeys use (and attachments and cc)."""
    email = AnymailMessage(subject=f"Winter sale {n}", body=f"Hello reader {n}", from_email="Shop <shop@example.com>",
                           to=[to or f"Reader {n} <reader{n}@example.com>"])
    email.metadata = {"delivery_id": str(n)}
    if light:
        return email
    email.cc = [f"copy{n}@example.com"]
    email.reply_to = ["help@example.com"]
    email.extra_headers = {"List-Unsubscribe": f"<https://example.com/u/{n}>",
                           "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}
    email.attach_alternative(f"<p>Hello <b>reader {n}</b> – 40% off</p>", "text/html")
    email.attach(f"coupon-{n}.txt", f"CODE-{n}", "text/plain")
    email.tags = [f"campaign-{n % 3}"]
    email.track_opens, email.track_clicks = True, False
    return email


@pytest.fixture
def esp(settings):
    with MockESP(keep=True, refuse={GONE}) as esp:
        settings.ANYMAIL = anymail_settings(esp.url)
        settings.EMAIL_BACKEND = BATCH
        settings.SEND_CONCURRENCY = 4
        yield esp


def test_a_batch_is_one_call_carrying_what_anymail_posts_for_each_message_alone(esp):
    alone = [message(n) for n in range(4)]
    for email in alone:
        assert get_connection(SINGLE).send_messages([email]) == 1
    assert [path for path, _ in esp.posts] == ["/email"] * 4
    one_by_one = [body for _, body in esp.posts]
    esp.posts.clear()

    batch = [message(n) for n in range(4)]
    assert get_connection(BATCH).send_messages(batch) == 4

    assert [path for path, _ in esp.posts] == ["/email/batch"]
    assert esp.posts[0][1] == one_by_one
    parent = AnymailPostmark()
    assert esp.posts[0][1] == [parent.build_message_payload(m, parent.send_defaults).data for m in batch]
    assert one_by_one[0]["Attachments"][0]["Name"] == "coupon-0.txt" and one_by_one[0]["Tag"] == "campaign-0"
    for single, batched in zip(alone, batch, strict=True):
        # The same status as a single send: each recipient (to and cc) sent, under the message's own id.
        assert batched.anymail_status.status == single.anymail_status.status == {"sent"}
        assert set(batched.anymail_status.recipients) == set(single.anymail_status.recipients)
        assert isinstance(batched.anymail_status.message_id, str) and batched.anymail_error is None
        assert batched.anymail_status.esp_response.status_code == 200
        assert batched.anymail_status.esp_response.json()["MessageID"] == batched.anymail_status.message_id
    assert len({m.anymail_status.message_id for m in batch}) == 4
    assert esp.batch_calls == 1 and esp.received == 8


def test_an_inactive_recipient_is_rejected_and_only_that_message(esp):
    messages = [message(0, light=True), message(1, to=GONE, light=True), message(2, light=True)]
    outcomes = sender.send_all(messages)

    assert [o.kind for o in outcomes] == [sender.ACCEPTED, sender.REJECTED, sender.ACCEPTED]
    assert [o.message_id for o in outcomes] == [messages[0].anymail_status.message_id, "",
                                                messages[2].anymail_status.message_id]
    assert outcomes[0].message_id and outcomes[2].message_id
    assert messages[1].anymail_status.status == {"rejected"} and messages[1].anymail_status.message_id is None
    assert isinstance(messages[1].anymail_error, AnymailRecipientsRefused)
    assert "rejected" in outcomes[1].detail
    assert esp.batch_calls == 1 and set(esp.accepted) == {"0", "2"}


def test_an_http_failure_leaves_every_message_of_the_call_to_retry(settings):
    settings.EMAIL_BACKEND, settings.SEND_CONCURRENCY = BATCH, 4
    with MockESP(fail_first=2) as esp:
        settings.ANYMAIL = anymail_settings(esp.url)
        with pytest.raises(AnymailAPIError) as failed:
            get_connection(BATCH).send_messages([message(n, light=True) for n in range(3)])
        assert failed.value.status_code == 500

        outcomes = sender.send_all([message(n, light=True) for n in range(3)])
        assert {o.kind for o in outcomes} == {sender.TRANSIENT} and "500" in outcomes[0].detail

        outcomes = sender.send_all([message(n, light=True) for n in range(3)])  # the outage is over
        assert {o.kind for o in outcomes} == {sender.ACCEPTED}
        assert esp.failed_calls == 2 and esp.accepted == {"0": 1, "1": 1, "2": 1}


def test_more_than_500_messages_take_several_calls_in_order(esp):
    messages = [message(n, light=True) for n in range(1201)]
    assert get_connection(BATCH).send_messages(messages) == 1201
    assert [len(body) for _, body in esp.posts] == [500, 500, 201]
    assert [m["Metadata"]["delivery_id"] for _, body in esp.posts for m in body] == [str(n) for n in range(1201)]
    # Each message holds its own answer: the id the ESP gave the message sent to its address.
    for email in messages[::100]:
        assert set(email.anymail_status.recipients) == {email.to[0].split("<")[1].rstrip(">")}
    esp.posts.clear()

    again = [message(n, light=True) for n in range(1201)]
    outcomes = sender.send_all(again)  # the sender hands the backend 500 at a time, from the pool
    assert sorted(len(body) for _, body in esp.posts) == [201, 500, 500]  # calls in flight together
    assert [o.message_id for o in outcomes] == [m.anymail_status.message_id for m in again]
    assert {o.kind for o in outcomes} == {sender.ACCEPTED} and esp.duplicates == 1201


def test_a_batch_stays_under_postmarks_size_limit(esp):
    backend = get_connection(BATCH)
    messages = [message(n) for n in range(5)]
    one = len(AnymailPostmark().build_message_payload(messages[0], {}).serialize_data())
    backend.max_batch_bytes = 2 * one + 10  # room for two messages, not three
    assert backend.send_messages(messages) == 5
    assert [len(body) for _, body in esp.posts] == [2, 2, 1]


def test_a_failed_call_after_an_accepted_one_does_not_raise_so_nothing_is_sent_twice(esp, monkeypatch):
    original = EmailBackend._post_batch
    calls = []

    def second_fails(self, group):
        calls.append(len(group))
        if len(calls) == 2:
            raise AnymailAPIError("Service Unavailable", status_code=503)
        return original(self, group)

    monkeypatch.setattr(EmailBackend, "_post_batch", second_fails)
    messages = [message(n, light=True) for n in range(1200)]
    assert get_connection(BATCH).send_messages(messages) == 500
    assert all(m.anymail_error is None and m.anymail_status.status == {"sent"} for m in messages[:500])
    assert all(isinstance(m.anymail_error, AnymailAPIError) for m in messages[500:])
    assert calls == [500, 500]  # the third group was not tried
    kinds = [sender._outcome(m, sent=True).kind for m in messages]
    assert kinds == [sender.ACCEPTED] * 500 + [sender.TRANSIENT] * 700


def test_one_message_and_template_messages_take_anymails_own_calls(esp):
    assert get_connection(BATCH).send_messages([message(1)]) == 1
    templated = message(2, light=True)
    templated.template_id, templated.merge_global_data, templated.body = "welcome", {"name": "Ann"}, ""
    templated.subject = ""
    assert get_connection(BATCH).send_messages([message(3), templated, message(4)]) == 3
    assert [path for path, _ in esp.posts] == ["/email", "/email/withTemplate/", "/email/batch"]
    assert esp.posts[1][1]["TemplateAlias"] == "welcome" and len(esp.posts[2][1]) == 2


def test_the_backend_counts_as_postmark_for_names_concurrency_and_crash_recovery(esp):
    assert sender.anymail_module(BATCH) == "anymail.backends.postmark"
    assert actions.esp_name() == "postmark"
    assert sender.concurrent_backend() and sender.batch_size() == 500
    esp.accepted["42"] = 1
    assert sender.esp_accepted([41, 42]) == {42}


def test_anymails_own_backends_and_local_capture_are_unchanged(settings):
    settings.EMAIL_BACKEND = SINGLE
    assert sender.batch_size() == 1 and sender.concurrent_backend() and actions.esp_name() == "postmark"
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    assert sender.batch_size() == 1 and not sender.concurrent_backend() and actions.esp_name() == "local"


def test_a_campaign_chunk_goes_out_in_one_batch_call(esp, topic, make_subscriber, settings,
                                                     django_capture_on_commit_callbacks):
    settings.QUIET_HOURS, settings.OWN_TRACKING = "", False
    people = []
    for n, address in enumerate([f"reader{n}@example.com" for n in range(6)] + [GONE]):
        person = make_subscriber(email=address, first_name=f"Reader{n}", timezone="UTC")
        ConsentRecord.objects.create(subscriber=person, purpose="email_marketing", granted=True, method="form",
                                     occurred_at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
        TopicSubscription.objects.create(subscriber=person, topic=topic)
        people.append(person)
    campaign = Campaign.objects.create(name="Batch sale", topic=topic, from_name="Shop",
                                       from_email="shop@example.com")
    everyone = Segment.objects.create(name="Everyone", rules={"match": "all", "rules": []})
    CampaignSegment.objects.create(campaign=campaign, segment=everyone)
    Variant.objects.create(campaign=campaign, label="A", subject='Hi {{ first_name|default:"there" }}',
                           html='<p>Sale for {{ first_name|default:"you" }}</p>'
                                '<a href="{{ unsubscribe_url }}">Unsubscribe</a>'
                                '<a href="{{ preferences_url }}">Preferences</a>')
    with django_capture_on_commit_callbacks(execute=False):
        actions.schedule_campaign(campaign)
        actions.start_campaign(campaign)
        ids = list(Recipient.objects.filter(campaign=campaign).values_list("pk", flat=True))
        result = actions.send_chunk(campaign.pk, min(ids), max(ids))

    assert (result.sent, result.failed, result.retrying) == (6, 1, 0)
    assert [path for path, _ in esp.posts] == ["/email/batch"] and len(esp.posts[0][1]) == 7
    first = esp.posts[0][1][0]
    assert first["Subject"] == "Hi Reader0" and first["Metadata"]["delivery_id"]
    assert first["Tag"] == f"campaign-{campaign.pk}"
    assert {h["Name"] for h in first["Headers"]} >= {"List-Unsubscribe", "List-Unsubscribe-Post"}
    sent = Delivery.objects.filter(status=DeliveryStatus.SENT)
    assert sent.count() == 6 and set(sent.values_list("esp_name", flat=True)) == {"postmark"}
    assert {int(k) for k in esp.accepted} == set(sent.values_list("pk", flat=True))
    assert sent.exclude(esp_message_id="").count() == 6
    assert Delivery.objects.get(subscriber=people[-1]).status == DeliveryStatus.REJECTED
    assert Recipient.objects.get(subscriber=people[-1]).status == RecipientStatus.FAILED


ADDRESSES = ["reader@example.com", "First.Last+tag@Mail.Example.co.uk", "o'brien@example.ie", "Shop <shop@example.com>",
             '"Shop, Inc." <shop@example.com>', "a@b.com, c@d.com", "", "jürgen@example.de", "x@localhost",
             "user.@example.com", "ünïcode@bücher.example", "Zoë <zoe@example.com>"]


@pytest.mark.parametrize("value", [*ADDRESSES, ADDRESSES[:2], [], None])
def test_quick_address_parsing_gives_what_anymail_parses(value):
    from anymail.exceptions import AnymailInvalidAddress
    from anymail.utils import parse_address_list

    from campaigns.sending.postmark import parse_addresses

    try:
        expected = [(a.display_name, a.addr_spec, a.address) for a in parse_address_list(value, field="to")]
    except AnymailInvalidAddress as error:
        with pytest.raises(AnymailInvalidAddress) as raised:
            parse_addresses(value, "to")
        assert str(raised.value) == str(error)
        return
    for _ in range(2):  # the second time from what was kept
        assert [(a.display_name, a.addr_spec, a.address) for a in parse_addresses(value, "to")] == expected


@pytest.mark.parametrize("answer", [
    {"To": "reader1@example.com", "MessageID": "m-1", "ErrorCode": 0, "Message": "OK"},
    {"To": "READER1@example.com", "MessageID": "m-2", "ErrorCode": 0, "Message": "OK"},
    {"To": "reader1@example.com", "MessageID": "m-3", "ErrorCode": 0,
     "Message": "Message accepted, but delivery may be delayed."},
    {"To": "reader1@example.com", "MessageID": "m-4", "ErrorCode": 0,
     "Message": "Message OK, but will not deliver to these inactive addresses: reader1@example.com. "
                "Inactive recipients are ones that have generated a hard bounce or a spam complaint."},
    {"To": "Reader <reader1@example.com>", "MessageID": "m-5", "ErrorCode": 0, "Message": "OK"},
    {"MessageID": "m-6", "ErrorCode": 0, "Message": "OK"},
])
def test_the_usual_answer_is_read_as_anymail_reads_it(answer, settings):
    import requests

    from campaigns.sending.postmark import _answer_as_response, _plainly_sent

    settings.ANYMAIL = {"POSTMARK_SERVER_TOKEN": "test"}
    backend = EmailBackend()
    email = message(1, to="reader1@example.com", light=True)
    payload = backend.build_message_payload(email, backend.send_defaults)
    batch = _answer_as_response(requests.Response(), {})
    expected = backend.parse_recipient_status(_answer_as_response(batch, answer), payload, email)
    quick = _plainly_sent(payload, answer)
    if quick is not None:
        assert list(quick) == list(expected)
        assert [(s.message_id, s.status) for s in quick.values()] == [(s.message_id, s.status)
                                                                      for s in expected.values()]
    else:
        assert answer["MessageID"] in {"m-3", "m-4", "m-5", "m-6"}  # the unusual ones take Anymail's path
    assert (quick is not None) == (answer["MessageID"] in {"m-1", "m-2"})
