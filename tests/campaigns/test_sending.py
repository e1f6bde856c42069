"""The sending pipeline: schedule, materialize, policy, send through a mail backend, retries, recovery, A/B."""

from __future__ import annotations

import datetime as dt

import pytest
from anymail.exceptions import AnymailAPIError
from django.core import mail
from django.db.models import F

from campaigns.content.models import Campaign, CampaignSegment, CampaignStatus, EmailLayout, Variant
from campaigns.models import Delivery, DeliveryStatus, MessageStats
from campaigns.segments.models import Segment
from campaigns.sending import actions, results
from campaigns.sending.models import Recipient, RecipientStatus
from campaigns.sending.tasks import send_chunk_task
from preferences import actions as preference_actions
from subscribers.actions import ConsentEvidence
from subscribers.models import ConsentMethod, Subscriber
from tests.campaigns.conftest import CLOCK as _CLOCK

NOON = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)
FOOTER = '<p><a href="{{ unsubscribe_url }}">Unsubscribe</a> <a href="{{ preferences_url }}">Preferences</a></p>'


@pytest.fixture(autouse=True)
def daytime(settings):
    settings.QUIET_HOURS = ""
    settings.OWN_TRACKING = False
    settings.SEND_CHUNK_SIZE = 3





@pytest.fixture
def campaign(db, topic, clock):
    campaign = Campaign.objects.create(name="Winter sale", topic=topic, from_name="Shop",
                                       from_email="shop@example.com")
    everyone = Segment.objects.create(name="Everyone", rules={"match": "all", "rules": []})
    CampaignSegment.objects.create(campaign=campaign, segment=everyone)
    Variant.objects.create(campaign=campaign, label="A", subject='Hi {{ first_name|default:"there" }}',
                           html='<p>Sale for {{ first_name|default:"you" }}</p>' + FOOTER)
    return campaign


def run(campaign, django_capture_on_commit_callbacks, now=NOON):
    """Schedule (if draft) and dispatch at ``now`` until nothing more is queued, running queued tasks at once."""
    _CLOCK["now"] = now
    campaign.refresh_from_db()
    with django_capture_on_commit_callbacks(execute=True):
        if campaign.status == CampaignStatus.DRAFT:
            actions.schedule_campaign(campaign, now=now)
    for _ in range(20):
        with django_capture_on_commit_callbacks(execute=True):
            queued = actions.dispatch_campaigns(now=now)
        if not queued:
            break
    campaign.refresh_from_db()
    return campaign


def statuses(campaign):
    return dict(Recipient.objects.filter(campaign=campaign).values_list("subscriber__first_name", "status"))


def test_a_campaign_that_is_not_ready_cannot_be_scheduled(db, topic):
    bare = EmailLayout.objects.create(name="Bare", html="<html><body>{{ content }}</body></html>")
    campaign = Campaign.objects.create(name="Not ready", layout=bare)
    Variant.objects.create(campaign=campaign, subject="Hi {{ first_name }}", html="<p>No footer</p>")
    with pytest.raises(actions.CampaignNotReady) as caught:
        actions.schedule_campaign(campaign)
    problems = " ".join(caught.value.problems)
    assert "Choose the topic" in problems and "at least one segment" in problems
    assert "unsubscribe link is missing" in problems and "has no fallback" in problems
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.DRAFT


def test_send_to_the_eligible_audience_through_the_gate(campaign, audience_member, make_subscriber,
                                                        django_capture_on_commit_callbacks):
    ann, ben, cara = (audience_member(first_name=n) for n in ("Ann", "Ben", "Cara"))
    audience_member(first_name="Dora", in_topic=False)
    make_subscriber(first_name="Eve")  # no consent, no topic
    make_subscriber(first_name="Finn", status="pending")
    campaign = run(campaign, django_capture_on_commit_callbacks)

    assert campaign.status == CampaignStatus.SENT and campaign.finished_at is not None
    assert sorted(m.to[0] for m in mail.outbox) == sorted([ann.email, ben.email, cara.email])
    message = next(m for m in mail.outbox if m.to == [ann.email])
    assert message.subject == "Hi Ann" and "Sale for Ann" in message.alternatives[0][0]
    assert message.extra_headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert message.extra_headers["List-Unsubscribe"].startswith("<http")
    assert message.from_email == "Shop <shop@example.com>"
    assert statuses(campaign) == {"Ann": "sent", "Ben": "sent", "Cara": "sent", "Dora": "skipped",
                                  "Eve": "skipped", "Finn": "skipped"}
    variant = campaign.variants.get()
    key = actions.message_key(campaign.pk, variant.pk)
    delivery = Delivery.objects.get(message_key=key, subscriber=ann)
    assert delivery.status == DeliveryStatus.SENT and delivery.sent_at == NOON
    assert delivery.why["campaign"] == "Winter sale" and delivery.why["topic"] == "Offers"
    assert delivery.why["segment"] == "Everyone" and delivery.why["consent"]["notice"] == "v1"
    skipped = Delivery.objects.get(message_key=key, subscriber__first_name="Dora")
    assert skipped.status == DeliveryStatus.SKIPPED and "not subscribed to this topic" in skipped.reason
    assert "double opt-in" in Recipient.objects.get(campaign=campaign, subscriber__first_name="Finn").reason
    assert MessageStats.objects.get(message_key=key).sent == 3


def test_running_again_sends_nothing_twice(campaign, audience_member, django_capture_on_commit_callbacks):
    for name in ("Ann", "Ben", "Cara", "Dan"):
        audience_member(first_name=name)
    campaign = run(campaign, django_capture_on_commit_callbacks)
    assert len(mail.outbox) == 4
    first, last = Recipient.objects.filter(campaign=campaign).order_by("pk").values_list("pk", flat=True)[::3]
    Recipient.objects.filter(campaign=campaign).update(status=RecipientStatus.PENDING)  # as if never recorded
    actions.send_chunk(campaign.pk, first, last + 10, now=NOON)
    actions.start_campaign(campaign, now=NOON)
    assert len(mail.outbox) == 4
    assert Delivery.objects.filter(sent_at__isnull=False).count() == 4


def test_quiet_hours_defer_and_the_message_goes_in_the_morning(campaign, audience_member, settings,
                                                             django_capture_on_commit_callbacks):
    settings.QUIET_HOURS = "21-8"
    audience_member(first_name="Ann", timezone="Europe/Riga")
    night = dt.datetime(2026, 12, 1, 20, 30, tzinfo=dt.UTC)  # 22:30 in Riga
    campaign = run(campaign, django_capture_on_commit_callbacks, now=night)
    recipient = Recipient.objects.get(campaign=campaign)
    assert (recipient.status, recipient.due_at) == (RecipientStatus.PENDING, dt.datetime(2026, 12, 2, 6, tzinfo=dt.UTC))
    assert "night where they live" in recipient.reason and not mail.outbox
    run(campaign, django_capture_on_commit_callbacks, now=dt.datetime(2026, 12, 2, 6, 1, tzinfo=dt.UTC))
    assert len(mail.outbox) == 1


def test_an_unsubscribe_mid_send_stops_mail_to_that_person(campaign, audience_member,
                                                         django_capture_on_commit_callbacks):
    people = [audience_member(first_name=n) for n in ("Ann", "Ben", "Cara", "Dan", "Eli")]
    with django_capture_on_commit_callbacks(execute=False):
        actions.schedule_campaign(campaign, now=NOON)
    actions.start_campaign(campaign, now=NOON)
    preference_actions.unsubscribe(Subscriber.objects.get(pk=people[4].pk),
                                   evidence=ConsentEvidence(method=ConsentMethod.PREFERENCE_CENTER))
    campaign = run(campaign, django_capture_on_commit_callbacks)
    assert people[4].email not in [m.to[0] for m in mail.outbox] and len(mail.outbox) == 4
    assert statuses(campaign)["Eli"] == "skipped"


def test_someone_without_a_value_the_content_needs_is_not_sent_hi_comma(campaign, audience_member,
                                                                         django_capture_on_commit_callbacks):
    """Schedule proved everyone had a first name; a person who joins before the send has none: no "Hi ,"."""
    variant = campaign.variants.get()
    variant.subject = "Hi {{ first_name }}, the sale is on"
    variant.save()
    people = [audience_member(first_name=n) for n in ("Ann", "Ben")]
    with django_capture_on_commit_callbacks(execute=False):
        actions.schedule_campaign(campaign, now=NOON)  # everyone has a first name now: no error
    nameless = audience_member(first_name="")  # joins the audience after the check
    campaign = run(campaign, django_capture_on_commit_callbacks)
    assert sorted(m.subject for m in mail.outbox) == ["Hi Ann, the sale is on", "Hi Ben, the sale is on"]
    assert nameless.email not in [m.to[0] for m in mail.outbox]
    recipient = Recipient.objects.get(campaign=campaign, subscriber=nameless)
    assert recipient.status == RecipientStatus.FAILED
    assert recipient.reason == "Not sent: {{ first_name }} has no fallback and this person has no value for it."
    assert Delivery.objects.get(subscriber=nameless).status == DeliveryStatus.REJECTED
    assert {p.pk for p in people} == set(Recipient.objects.filter(campaign=campaign, status="sent")
                                         .values_list("subscriber_id", flat=True))


class FakeResponse:
    def __init__(self, status_code):
        self.status_code, self.reason, self.text = status_code, "ESP says no", "{}"

    def json(self):
        return {}


class FlakyESP:
    """A mail backend that fails like an ESP: transient 503s while down, a permanent 400 for one address."""

    down = False
    refuse = ""
    calls: list[str] = []

    def __init__(self, *args, **kwargs):
        pass

    def open(self):
        return True

    def close(self):
        pass

    def send_messages(self, messages):
        for message in messages:
            if FlakyESP.down:
                raise AnymailAPIError("Service Unavailable", status_code=503, response=FakeResponse(503))
            if message.to[0] == FlakyESP.refuse:
                raise AnymailAPIError("Invalid 'To' address", status_code=422, response=FakeResponse(422))
            FlakyESP.calls.append(message.to[0])
        return len(messages)


@pytest.fixture
def flaky(settings):
    settings.EMAIL_BACKEND = f"{__name__}.FlakyESP"
    FlakyESP.down, FlakyESP.refuse, FlakyESP.calls = False, "", []
    return FlakyESP


def test_esp_outage_retries_then_pauses_and_resume_finishes_without_duplicates(
        campaign, audience_member, flaky, settings, django_capture_on_commit_callbacks):
    settings.SEND_PAUSE_AFTER_FAILED_CHUNKS = 2
    people = [audience_member(first_name=f"P{i}") for i in range(7)]
    flaky.down = True
    campaign = run(campaign, django_capture_on_commit_callbacks)
    assert campaign.status == CampaignStatus.PAUSED and "ESP failed 2 times in a row" in campaign.status_note
    waiting = Recipient.objects.filter(campaign=campaign, status=RecipientStatus.PENDING)
    assert waiting.count() == 7
    assert all(r.attempts <= 1 for r in waiting)
    flaky.down = False
    with django_capture_on_commit_callbacks(execute=True):
        assert actions.resume_campaign(campaign)
    later = NOON + dt.timedelta(minutes=30)
    campaign = run(campaign, django_capture_on_commit_callbacks, now=later)
    assert campaign.status == CampaignStatus.SENT
    assert sorted(flaky.calls) == sorted(p.email for p in people)
    assert set(Recipient.objects.filter(campaign=campaign).values_list("reason", flat=True)) == {""}  # no "will retry"


def test_a_permanent_esp_refusal_fails_that_recipient_only(campaign, audience_member, flaky,
                                                         django_capture_on_commit_callbacks):
    ann, ben = audience_member(first_name="Ann"), audience_member(first_name="Ben")
    flaky.refuse = ben.email
    campaign = run(campaign, django_capture_on_commit_callbacks)
    assert statuses(campaign) == {"Ann": "sent", "Ben": "failed"}
    assert Delivery.objects.get(subscriber=ben).status == DeliveryStatus.REJECTED
    assert flaky.calls == [ann.email]


def test_a_crashed_send_is_resolved_by_the_esps_events_before_any_resend(campaign, audience_member, settings,
                                                                       django_capture_on_commit_callbacks):
    ann, ben = audience_member(first_name="Ann"), audience_member(first_name="Ben")
    with django_capture_on_commit_callbacks(execute=False):
        actions.schedule_campaign(campaign, now=NOON)
    actions.start_campaign(campaign, now=NOON)
    ids = list(Recipient.objects.filter(campaign=campaign).values_list("pk", flat=True))
    with transaction_claim(campaign, ids):
        pass  # the worker handed both to the ESP, then died before recording anything
    assert set(Recipient.objects.values_list("status", flat=True)) == {RecipientStatus.SENDING}
    # The ESP's webhook reported Ann's message; Ben's never reached the ESP.
    Delivery.objects.filter(subscriber=ann).update(status=DeliveryStatus.DELIVERED, sent_at=NOON)
    assert actions.reconcile_sends(now=NOON + dt.timedelta(seconds=30)) == (0, 0)  # too early
    assert actions.reconcile_sends(now=NOON + dt.timedelta(seconds=settings.SEND_RECONCILE_SECONDS + 1)) == (1, 1)
    campaign = run(campaign, django_capture_on_commit_callbacks, now=NOON + dt.timedelta(minutes=15))
    assert [m.to[0] for m in mail.outbox] == [ben.email]
    assert campaign.status == CampaignStatus.SENT


class transaction_claim:
    """Run the claim-and-commit half of a chunk (the part before the ESP call), as a crashed worker did."""

    def __init__(self, campaign, ids):
        self.campaign, self.ids = campaign, ids

    def __enter__(self):
        from django.db import transaction

        from campaigns.sending.actions import ChunkResult, _apply_policy, _claim

        with transaction.atomic():
            claimed = _claim(self.campaign.pk, min(self.ids), max(self.ids), now=NOON)
            _apply_policy(self.campaign, claimed, now=NOON, result=ChunkResult())

    def __exit__(self, *exc):
        return False


def test_ab_test_assigns_stable_groups_and_the_winner_goes_to_the_rest(campaign, audience_member,
                                                                      django_capture_on_commit_callbacks):
    from django.db.models import Count

    b = Variant.objects.create(campaign=campaign, label="B", subject="Last chance {{ first_name|default:'' }}",
                               html="<p>B</p>" + FOOTER)
    campaign.test_percent, campaign.holdout_percent, campaign.test_hours = 40, 10, 2
    campaign.save()
    for i in range(60):
        audience_member(first_name=f"P{i}")
    with django_capture_on_commit_callbacks(execute=False):
        actions.schedule_campaign(campaign, now=NOON)
    actions.start_campaign(campaign, now=NOON)
    assigned = {r.subscriber_id: (r.group, r.variant_id) for r in Recipient.objects.filter(campaign=campaign)}
    Recipient.objects.filter(campaign=campaign).delete()
    actions.materialize_recipients(campaign, now=NOON)
    again = {r.subscriber_id: (r.group, r.variant_id) for r in Recipient.objects.filter(campaign=campaign)}
    assert again == assigned  # stable: the same people land in the same group and variant
    groups = dict(Recipient.objects.filter(campaign=campaign).values_list("group").annotate(n=Count("pk")))
    assert sum(groups.values()) == 60 and set(groups) == {"test", "rest", "holdout"}
    assert {v for g, v in assigned.values() if g == "test"} == {campaign.variants.get(label="A").pk, b.pk}

    campaign = run(campaign, django_capture_on_commit_callbacks)
    assert campaign.status == CampaignStatus.TESTING and len(mail.outbox) == groups["test"]
    b_key = actions.message_key(campaign.pk, b.pk)
    Delivery.objects.filter(message_key=b_key).update(first_clicked_at=NOON)
    MessageStats.objects.filter(message_key=b_key).update(unique_clicks=F("sent"))
    campaign = run(campaign, django_capture_on_commit_callbacks, now=NOON + dt.timedelta(hours=3))
    assert campaign.winner == b and campaign.status == CampaignStatus.SENT
    rest = Recipient.objects.filter(campaign=campaign, group="rest")
    assert set(rest.values_list("variant_id", flat=True)) == {b.pk}
    assert set(rest.values_list("status", flat=True)) == {RecipientStatus.SENT}
    assert set(Recipient.objects.filter(campaign=campaign, group="holdout").values_list("status", flat=True)) == {
        RecipientStatus.HELD_OUT}
    assert len(mail.outbox) == 60 - groups["holdout"]
    best = {r.label: r for r in results.variant_results(campaign)}
    assert best["B"].click_rate > best["A"].click_rate == 0 and best["B"].probability_best > 0.9


@pytest.mark.parametrize("batch", [1, 50_000])
def test_local_time_schedule_sets_each_persons_due_time(campaign, audience_member, monkeypatch, batch):
    monkeypatch.setattr(actions, "MATERIALIZE_BATCH", batch)
    riga = audience_member(first_name="Riga", timezone="Europe/Riga")
    ny = audience_member(first_name="NY", timezone="America/New_York")
    campaign.schedule_mode, campaign.send_on, campaign.local_time = "local_time", dt.date(2026, 12, 3), dt.time(10)
    campaign.save()
    actions.schedule_campaign(campaign, now=NOON)
    assert actions.start_time(campaign, now=NOON) == dt.datetime(2026, 12, 2, 20, tzinfo=dt.UTC)
    actions.start_campaign(campaign, now=NOON)
    due = dict(Recipient.objects.values_list("subscriber_id", "due_at"))
    assert due[riga.pk] == dt.datetime(2026, 12, 3, 8, tzinfo=dt.UTC)
    assert due[ny.pk] == dt.datetime(2026, 12, 3, 15, tzinfo=dt.UTC)


def test_pause_and_cancel(campaign, audience_member, django_capture_on_commit_callbacks):
    for name in ("Ann", "Ben", "Cara", "Dan"):
        audience_member(first_name=name)
    with django_capture_on_commit_callbacks(execute=False):
        actions.schedule_campaign(campaign, now=NOON)
    actions.start_campaign(campaign, now=NOON)
    assert actions.pause_campaign(campaign)
    actions.dispatch_campaigns(now=NOON)
    assert not mail.outbox
    assert actions.cancel_campaign(campaign) == 4
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.CANCELLED and set(statuses(campaign).values()) == {"skipped"}


def test_probability_to_beat_matches_the_known_answer():
    # A ~ Beta(2, 1), B ~ Beta(1, 2): P(B > A) = 1/6 exactly.
    assert results.probability_b_beats_a(1, 1, 0, 1) == pytest.approx(1 / 6)
    assert results.probability_b_beats_a(10, 100, 10, 100) == pytest.approx(0.5, abs=1e-9)
    exact = results.probability_b_beats_a(30, 1000, 45, 1000)
    simulated = results.probability_best([
        results.VariantResult(1, "A", sent=1000, unique_clicks=30), results.VariantResult(2, "B", sent=1000,
                                                                                          unique_clicks=45)],
        "click_rate")
    assert simulated[1] == pytest.approx(exact, abs=0.01) and 0.9 < exact < 0.99


def test_campaign_admin_schedules_shows_progress_and_results(admin_client, campaign, audience_member, clock,
                                                             django_capture_on_commit_callbacks):
    audience_member(first_name="Ann")
    page = admin_client.get(f"/admin/campaigns/campaign/{campaign.pk}/change/").content.decode()
    assert 'value="Schedule"' in page
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(f"/admin/campaigns/campaign/{campaign.pk}/control/schedule/", follow=True)
    assert "Scheduled" in response.content.decode()  # the send itself runs after the commit
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.SENT and len(mail.outbox) == 1
    page = admin_client.get(f"/admin/campaigns/campaign/{campaign.pk}/change/").content.decode()
    assert "100%" in page and "Conversions" in page and "Everyone" in page
    data = admin_client.get(f"/admin/campaigns/campaign/{campaign.pk}/progress.json").json()
    assert data["by_status"] == {"sent": 1} and data["status"] == "sent"
    assert admin_client.get(f"/admin/campaigns/campaign/{campaign.pk}/control/schedule/").status_code == 405


def test_campaign_admin_refuses_to_schedule_with_the_reasons(admin_client, db, topic):
    campaign = Campaign.objects.create(name="Nothing yet", topic=topic)
    response = admin_client.post(f"/admin/campaigns/campaign/{campaign.pk}/control/schedule/", follow=True)
    page = response.content.decode()
    assert "Choose at least one segment to send to." in page and "the campaign has no content yet" in page
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.DRAFT


def test_after_a_crash_the_esp_is_asked_what_it_accepted(campaign, audience_member, settings,
                                                         django_capture_on_commit_callbacks):
    from tests.mock_esp import MockESP, anymail_settings

    ann, ben = audience_member(first_name="Ann"), audience_member(first_name="Ben")
    with django_capture_on_commit_callbacks(execute=False):
        actions.schedule_campaign(campaign, now=NOON)
    actions.start_campaign(campaign, now=NOON)
    ids = list(Recipient.objects.filter(campaign=campaign).values_list("pk", flat=True))
    with transaction_claim(campaign, ids):
        pass  # handed to the ESP, then the worker died
    settings.EMAIL_BACKEND = "anymail.backends.postmark.EmailBackend"
    with MockESP() as esp:
        settings.ANYMAIL = anymail_settings(esp.url)
        ann_delivery = Delivery.objects.get(subscriber=ann)
        esp.accepted[str(ann_delivery.pk)] = 1  # the ESP got Ann's message before the crash; no event came
        later = NOON + dt.timedelta(seconds=settings.SEND_RECONCILE_SECONDS + 1)
        assert actions.reconcile_sends(now=later) == (1, 1)
        ann_delivery.refresh_from_db()
        assert ann_delivery.status == DeliveryStatus.SENT
        run(campaign, django_capture_on_commit_callbacks, now=later + dt.timedelta(minutes=1))
        assert esp.accepted == {str(ann_delivery.pk): 1, str(Delivery.objects.get(subscriber=ben).pk): 1}
        assert esp.duplicates == 0
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.SENT


def test_dynamic_blocks_read_the_segment_snapshot_taken_at_start(campaign, audience_member,
                                                                 django_capture_on_commit_callbacks):
    vip = Segment.objects.create(name="VIP", rules={"match": "all", "rules": [
        {"field": "tags", "op": "has", "value": "vip"}]})
    variant = campaign.variants.get()
    variant.html = '{% ifsegment "VIP" %}<p>Hello VIP</p>{% else %}<p>Hello friend</p>{% endifsegment %}' + FOOTER
    variant.save()
    ann = audience_member(first_name="Ann", tags=["vip"])
    ben = audience_member(first_name="Ben")
    with django_capture_on_commit_callbacks(execute=False):
        actions.schedule_campaign(campaign, now=NOON)
    actions.start_campaign(campaign, now=NOON)
    vip.refresh_from_db()
    assert vip.refreshed_at is not None and vip.memberships.count() == 1
    Subscriber.objects.filter(pk=ben.pk).update(tags=["vip"])  # joins after the campaign started
    run(campaign, django_capture_on_commit_callbacks)
    html = {m.to[0]: m.alternatives[0][0] for m in mail.outbox}
    assert "Hello VIP" in html[ann.email] and "Hello friend" in html[ben.email]


def test_a_chunk_reads_the_sending_preferences_once_for_the_gate_and_the_content(
        campaign, audience_member, django_capture_on_commit_callbacks):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    evidence = ConsentEvidence(method=ConsentMethod.PREFERENCE_CENTER)
    audience_member(first_name="Ann")
    paused = audience_member(first_name="Ben")
    preference_actions.pause_emails(paused, days=30, evidence=evidence)
    with CaptureQueriesContext(connection) as queries:
        campaign = run(campaign, django_capture_on_commit_callbacks)
    column = '"preferences_subscriberpreferences"."frequency"'
    reads = [q["sql"] for q in queries.captured_queries if column in q["sql"]]
    assert len(reads) == 1
    assert statuses(campaign) == {"Ann": RecipientStatus.SENT, "Ben": RecipientStatus.PENDING}
    assert len(mail.outbox) == 1 and mail.outbox[0].to == [Subscriber.objects.get(first_name="Ann").email]


def test_a_finished_chunk_queues_one_more_after_the_last_queued_and_beat_fills_the_rest(
        campaign, audience_member, settings, django_capture_on_commit_callbacks):
    from campaigns.sending.models import SendChunk

    settings.SEND_CHUNK_SIZE, settings.SEND_QUEUE_AHEAD = 2, 2
    for n in range(7):
        audience_member(first_name=f"P{n}")
    _CLOCK["now"] = NOON
    with django_capture_on_commit_callbacks() as tasks:  # the tasks are not run: only what is queued is looked at
        actions.schedule_campaign(campaign, now=NOON)
        actions.start_campaign(campaign, now=NOON)
        campaign.refresh_from_db()
        assert actions.queue_due(campaign, now=NOON) == 2  # Beat: the queue filled to 2 chunks ahead
        ids = list(Recipient.objects.filter(campaign=campaign).order_by("pk").values_list("pk", flat=True))

        def queued():
            return sorted(pk for first, last in SendChunk.objects.filter(campaign=campaign)
                          .values_list("first_id", "last_id") for pk in ids if first <= pk <= last)

        def done(first, last):
            SendChunk.objects.filter(campaign=campaign, first_id=first, last_id=last).delete()

        assert queued() == ids[:4]
        assert Recipient.objects.filter(campaign=campaign, status=RecipientStatus.PENDING).count() == 7  # unwritten
        # The first chunk is done; one of its people was deferred (due again at an earlier id than the queue).
        Recipient.objects.filter(pk=ids[1]).update(status=RecipientStatus.SENT)
        done(ids[0], ids[1])
        assert actions.queue_due(campaign, now=NOON, top_up=True) == 1
        assert queued() == ids[2:6]  # one chunk, after the last one queued
        assert actions.queue_due(campaign, now=NOON, top_up=True) == 1
        assert queued() == ids[2:7]  # the last one (a chunk of one)
        Recipient.objects.filter(pk__in=ids[2:4]).update(status=RecipientStatus.SENT)
        done(ids[2], ids[3])
        assert actions.queue_due(campaign, now=NOON, top_up=True) == 0  # nothing due after the last queued
        Recipient.objects.filter(pk=ids[6]).update(status=RecipientStatus.SENT)
        done(ids[6], ids[6])
        assert actions.queue_due(campaign, now=NOON) == 1  # Beat's full pass finds the deferred one, and only it
        assert queued() == [ids[0], *ids[4:6]]
    assert sum(1 for task in tasks if getattr(task, "func", None) == send_chunk_task.delay) == 5


def test_a_lost_chunk_is_dropped_after_a_while_and_its_recipients_queued_again(
        campaign, audience_member, settings, django_capture_on_commit_callbacks):
    from campaigns.sending.models import SendChunk

    for n in range(3):
        audience_member(first_name=f"P{n}")
    _CLOCK["now"] = NOON
    with django_capture_on_commit_callbacks():  # the tasks never run: the broker lost them
        actions.schedule_campaign(campaign, now=NOON)
        actions.start_campaign(campaign, now=NOON)
        campaign.refresh_from_db()
        assert actions.queue_due(campaign, now=NOON) == 1
        assert actions.queue_due(campaign, now=NOON + dt.timedelta(minutes=5)) == 0  # still covered by its chunk
        later = NOON + actions.STALE_QUEUE + dt.timedelta(minutes=1)
        assert actions.queue_due(campaign, now=later) == 1
    assert list(SendChunk.objects.filter(campaign=campaign).values_list("queued_at", flat=True)) == [later]


def test_recipients_a_chunk_could_not_claim_are_queued_again(
        campaign, audience_member, monkeypatch, django_capture_on_commit_callbacks):
    from campaigns.sending.models import SendChunk

    audience_member(first_name="Ann")
    _CLOCK["now"] = NOON
    with django_capture_on_commit_callbacks():
        actions.schedule_campaign(campaign, now=NOON)
        actions.start_campaign(campaign, now=NOON)
        campaign.refresh_from_db()
        assert actions.queue_due(campaign, now=NOON) == 1
    recipient = Recipient.objects.get(campaign=campaign)
    # Another transaction held the row locked: the claim (SKIP LOCKED) got nothing.
    monkeypatch.setattr(actions, "_send_chunk", lambda *args, **kwargs: None)
    first = SendChunk.objects.get()
    with django_capture_on_commit_callbacks() as tasks:
        actions.send_chunk(campaign.pk, recipient.pk, recipient.pk, now=NOON)
    # The chunk is done; its top-up found the recipient still waiting and queued it again.
    again = SendChunk.objects.get()
    assert again.pk != first.pk and (again.first_id, again.last_id) == (recipient.pk, recipient.pk)
    assert [task.args for task in tasks] == [(campaign.pk, recipient.pk, recipient.pk)]
    assert Recipient.objects.get(pk=recipient.pk).status == RecipientStatus.PENDING


def test_why_names_each_persons_latest_marketing_grant(audience_member):
    from subscribers.models import ConsentRecord

    ann, ben = audience_member(first_name="Ann"), audience_member(first_name="Ben")
    ConsentRecord.objects.create(subscriber=ann, purpose="email_marketing", granted=True, method="preference_center",
                                 occurred_at=NOON - dt.timedelta(days=2), notice_version="v2")
    ConsentRecord.objects.create(subscriber=ann, purpose="email_marketing", granted=False, method="form",
                                 occurred_at=NOON - dt.timedelta(days=1), notice_version="v3")  # a withdrawal
    grants = actions.consent_grants([ann.pk, ben.pk])
    assert grants[ann.pk]["notice"] == "v2" and grants[ann.pk]["method"] == "preference_center"
    assert grants[ben.pk]["notice"] == "v1" and grants[ben.pk]["method"] == "form"


def test_a_large_audience_is_written_in_batches_and_sending_starts_after_the_first(
        campaign, audience_member, monkeypatch, settings, django_capture_on_commit_callbacks):
    from campaigns.sending.models import SendChunk

    monkeypatch.setattr(actions, "MATERIALIZE_BATCH", 2)
    settings.SEND_CHUNK_SIZE = 2
    people = [audience_member(first_name=f"P{n}") for n in range(5)]
    _CLOCK["now"] = NOON
    seen = []
    real_queue_due = actions.queue_due

    def queue_due(campaign, **kwargs):
        stored = Campaign.objects.get(pk=campaign.pk)
        seen.append((Recipient.objects.filter(campaign=campaign).count(), stored.materializing_since is not None,
                     actions.finish_if_done(stored)))
        return real_queue_due(campaign, **kwargs)

    monkeypatch.setattr(actions, "queue_due", queue_due)
    with django_capture_on_commit_callbacks() as tasks:
        actions.schedule_campaign(campaign, now=NOON)
        assert actions.start_campaign(campaign, now=NOON) == 5
    # Queued after the first and second batches (not after the last: dispatch does that), never finished early.
    assert seen == [(2, True, False), (4, True, False)]
    assert SendChunk.objects.filter(campaign=campaign).count() == 2
    campaign.refresh_from_db()
    assert campaign.materializing_since is None and campaign.status == CampaignStatus.SENDING
    with django_capture_on_commit_callbacks(execute=True):
        for task in tasks:
            task()  # the workers take the chunks
    assert len(mail.outbox) == 5  # the two chunks, and the one after them that a finished chunk queued
    campaign = run(campaign, django_capture_on_commit_callbacks)
    assert campaign.status == CampaignStatus.SENT
    assert sorted(m.to[0] for m in mail.outbox) == sorted(p.email for p in people)


def test_batches_a_dead_worker_left_unwritten_are_written_by_beat(campaign, audience_member, monkeypatch,
                                                                 django_capture_on_commit_callbacks):
    monkeypatch.setattr(actions, "MATERIALIZE_BATCH", 2)
    people = [audience_member(first_name=f"P{n}") for n in range(5)]

    def die_after_the_first_batch(last):
        raise SystemExit("worker killed")

    with django_capture_on_commit_callbacks(execute=False):
        actions.schedule_campaign(campaign, now=NOON)
    monkeypatch.setattr(actions, "queue_due", lambda *args, **kwargs: 0)
    with pytest.raises(SystemExit):
        actions.materialize_recipients(campaign, now=NOON, batch_written=die_after_the_first_batch)
    Campaign.objects.filter(pk=campaign.pk).update(status=CampaignStatus.SENDING, started_at=NOON,
                                                   materializing_since=NOON)
    monkeypatch.undo()
    campaign = run(campaign, django_capture_on_commit_callbacks, now=NOON + dt.timedelta(minutes=5))
    assert campaign.status == CampaignStatus.SENDING and len(mail.outbox) == 2  # not finished: still writing
    campaign = run(campaign, django_capture_on_commit_callbacks, now=NOON + dt.timedelta(minutes=15))
    assert campaign.status == CampaignStatus.SENT and campaign.materializing_since is None
    assert sorted(m.to[0] for m in mail.outbox) == sorted(p.email for p in people)
    assert Recipient.objects.filter(campaign=campaign).count() == 5


def test_cancelling_or_picking_a_winner_while_recipients_are_written(campaign, audience_member, monkeypatch,
                                                                     django_capture_on_commit_callbacks):
    from django.db.models import Count

    monkeypatch.setattr(actions, "MATERIALIZE_BATCH", 4)
    for n in range(12):
        audience_member(first_name=f"P{n}")
    b = Variant.objects.create(campaign=campaign, label="B", subject="B", html="<p>B</p>" + FOOTER)
    campaign.test_percent = 50
    campaign.save()
    with django_capture_on_commit_callbacks(execute=False):
        actions.schedule_campaign(campaign, now=NOON)
    calls = []

    def after_batch(campaign, **kwargs):  # staff act right after the first batch
        calls.append(1)
        if len(calls) == 1:
            actions.choose_winner(campaign, variant=b, now=NOON)
        return 0

    monkeypatch.setattr(actions, "queue_due", after_batch)
    actions.start_campaign(campaign, now=NOON)
    rest = Recipient.objects.filter(campaign=campaign, group="rest")
    assert rest.exists() and set(rest.values_list("variant_id", flat=True)) == {b.pk}  # later batches too
    assert Recipient.objects.filter(campaign=campaign).count() == 12

    other = Campaign.objects.create(name="Other", topic=campaign.topic, from_email="shop@example.com")
    CampaignSegment.objects.create(campaign=other, segment=campaign.audience.get().segment)
    Variant.objects.create(campaign=other, label="A", subject="A", html="<p>A</p>" + FOOTER)
    with django_capture_on_commit_callbacks(execute=False):
        actions.schedule_campaign(other, now=NOON)

    def cancel_after_first(campaign, **kwargs):
        actions.cancel_campaign(campaign)
        return 0

    monkeypatch.setattr(actions, "queue_due", cancel_after_first)
    actions.start_campaign(other, now=NOON)
    other.refresh_from_db()
    statuses = dict(Recipient.objects.filter(campaign=other).values_list("status").annotate(n=Count("pk")))
    assert other.status == CampaignStatus.CANCELLED and other.materializing_since is None
    assert statuses == {"skipped": 4}  # the first batch; the rest were never written


def test_a_chunk_claims_at_most_its_size_and_leaves_its_range_free_even_when_it_fails(
        campaign, audience_member, settings, monkeypatch, django_capture_on_commit_callbacks):
    from campaigns.sending.models import SendChunk

    for n in range(5):
        audience_member(first_name=f"P{n}")
    with django_capture_on_commit_callbacks(execute=False):
        actions.schedule_campaign(campaign, now=NOON)
        actions.start_campaign(campaign, now=NOON)
    ids = list(Recipient.objects.filter(campaign=campaign).order_by("pk").values_list("pk", flat=True))
    settings.SEND_CHUNK_SIZE = 2
    with django_capture_on_commit_callbacks(execute=False):
        claimed = actions._claim(campaign.pk, ids[0], ids[-1], now=NOON)
    assert [row[0] for row in claimed] == ids[:2]
    SendChunk.objects.create(campaign=campaign, first_id=ids[2], last_id=ids[4], size=3, queued_at=NOON)

    def broken(*args, **kwargs):
        raise RuntimeError("database went away")

    monkeypatch.setattr(actions, "_send_chunk", broken)
    with pytest.raises(RuntimeError):
        actions.send_chunk(campaign.pk, ids[2], ids[4], now=NOON)
    assert not SendChunk.objects.exists()


def test_recovery_leaves_a_recipient_that_a_slow_chunk_recorded_meanwhile(campaign, audience_member, monkeypatch,
                                                                         django_capture_on_commit_callbacks):
    ann = audience_member(first_name="Ann")
    with django_capture_on_commit_callbacks(execute=False):
        actions.schedule_campaign(campaign, now=NOON)
    actions.start_campaign(campaign, now=NOON)
    ids = list(Recipient.objects.filter(campaign=campaign).values_list("pk", flat=True))
    with transaction_claim(campaign, ids):
        pass
    stalled = Recipient.objects.filter(status=RecipientStatus.SENDING)
    real = stalled.values_list

    class Slow:  # the chunk records its answer right after recovery read the stalled rows
        def values_list(self, *fields):
            rows = list(real(*fields))
            Recipient.objects.filter(pk__in=ids).update(status=RecipientStatus.FAILED, reason="refused")
            return rows

    actions._find_deliveries(Slow())
    assert Recipient.objects.get(subscriber=ann).status == RecipientStatus.FAILED


def test_a_paused_campaign_gets_no_chunks_until_it_is_resumed(campaign, audience_member,
                                                               django_capture_on_commit_callbacks):
    for n in range(2):
        audience_member(first_name=f"P{n}")
    with django_capture_on_commit_callbacks(execute=False):
        actions.schedule_campaign(campaign, now=NOON)
        actions.start_campaign(campaign, now=NOON)
        assert actions.pause_campaign(campaign)
        assert actions.queue_due(campaign, now=NOON) == 0
        assert actions.resume_campaign(campaign)
        assert actions.queue_due(campaign, now=NOON) == 1
