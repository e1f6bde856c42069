"""Campaign admin input: test-send addresses, mistyped URLs, impossible numbers and a send time in the past."""

from __future__ import annotations

import datetime as dt

import pytest
from django.contrib.auth.models import Group, User
from django.core import mail

from campaigns.content.models import Campaign, CampaignSegment, CampaignStatus, ScheduleMode, Variant
from campaigns.segments.models import Segment
from subscribers.roles import MARKETER
from tests.campaigns.conftest import NOON

FOOTER = '<p><a href="{{ unsubscribe_url }}">Unsubscribe</a> <a href="{{ preferences_url }}">Preferences</a></p>'
SHARES_MESSAGE = "The test share can be at most 90% and the hold-out at most 50%."
THROTTLE_MESSAGE = "Enter 1 or more messages a minute, or leave the box empty for no limit."


@pytest.fixture
def marketer(client, db):
    """Log the client in as a staff member in the Marketer group (adds, changes, schedules; never deletes)."""
    user = User.objects.create_user(username="marketer", password="pw", is_staff=True, email="me@example.com")
    user.groups.add(Group.objects.get(name=MARKETER))
    client.force_login(user)
    return client


@pytest.fixture
def campaign(db, topic):
    campaign = Campaign.objects.create(name="Winter sale", topic=topic, from_name="Shop",
                                       from_email="shop@example.com")
    CampaignSegment.objects.create(campaign=campaign, segment=Segment.objects.get(name="Leads"))
    Variant.objects.create(campaign=campaign, label="A", subject='Hi {{ first_name|default:"there" }}',
                           html='<p>Sale for {{ first_name|default:"you" }}</p>' + FOOTER)
    return campaign


def add_form(topic, **overrides) -> dict[str, str]:
    """Return the add form's POST data for a valid draft with one variant; ``overrides`` change fields."""
    data = {
        "name": "Spring sale", "topic": str(topic.pk), "from_name": "Shop", "from_email": "", "reply_to": "",
        "layout": "", "sensitive_justification": "", "schedule_mode": ScheduleMode.NOW, "send_at_0": "",
        "send_at_1": "", "send_on": "", "local_time": "", "throttle_per_minute": "", "test_percent": "0",
        "test_hours": "4", "winner_metric": "click_rate", "winner_auto": "on", "holdout_percent": "0",
        "conversion_window_days": "5",
        "audience-TOTAL_FORMS": "0", "audience-INITIAL_FORMS": "0",
        "variants-TOTAL_FORMS": "1", "variants-INITIAL_FORMS": "0", "variants-MIN_NUM_FORMS": "1",
        "variants-0-label": "A", "variants-0-subject": "Hi", "variants-0-preheader": "",
        "variants-0-from_name": "", "variants-0-html": "<p>Spring is here</p>" + FOOTER, "variants-0-text": "",
    }
    data.update(overrides)
    return data


def errors_of(response) -> str:
    """Return the page of a refused save (the form shown again), failing if it was saved instead."""
    assert response.status_code == 200, "the form was accepted"
    return response.content.decode()


# --- 1. Test send -------------------------------------------------------------------------


def test_test_send_refuses_an_address_that_is_not_an_email_and_sends_nothing(marketer, campaign):
    preview = f"/admin/campaigns/campaign/{campaign.pk}/preview/"
    response = marketer.post(preview, {"to": "not-an-email"}, follow=True)
    page = response.content.decode()
    assert "“not-an-email” is not an email address" in page and "Nothing was sent" in page
    assert "Sent a test" not in page and mail.outbox == []


def test_test_send_checks_every_address_and_names_each_bad_one(marketer, campaign):
    preview = f"/admin/campaigns/campaign/{campaign.pk}/preview/"
    page = marketer.post(preview, {"to": "me@example.com, ann@, bob at example.com; you@example.com"},
                         follow=True).content.decode()
    assert "“ann@” is not an email address" in page and "“bob at example.com” is not an email address" in page
    assert mail.outbox == []
    # What was typed stays in the box, so the marketer corrects it rather than typing it all again.
    assert "bob at example.com" in marketer.get(preview, {"to": "me@example.com, bob at example.com"}) \
        .content.decode()
    page = marketer.post(preview, {"to": "me@example.com; you@example.com"}, follow=True).content.decode()
    assert "Sent a test to 2 addresses." in page
    [message] = mail.outbox
    assert message.to == ["me@example.com", "you@example.com"]


# --- 2. Mistyped URLs ---------------------------------------------------------------------


@pytest.mark.parametrize("tail", ["progress/", "abc/change/", "99999999999999999999/change/"])
def test_a_mistyped_campaign_url_is_a_missing_campaign_not_a_server_error(marketer, campaign, tail):
    path = f"/admin/campaigns/campaign/{campaign.pk}/{tail}" if tail == "progress/" \
        else f"/admin/campaigns/campaign/{tail}"
    response = marketer.get(path, follow=True)  # the test client raises a view's exception: a 500 fails here
    assert response.redirect_chain[-1] == ("/admin/", 302)
    assert "doesn’t exist" in response.content.decode()


def test_the_campaign_screens_answer_a_bad_id_with_not_found(marketer, campaign):
    assert marketer.get("/admin/campaigns/campaign/99999999999999999999/preview/").status_code == 404
    assert marketer.get("/admin/campaigns/campaign/99999999999999999999/progress.json").status_code == 404
    control = f"/admin/campaigns/campaign/{campaign.pk}/control/winner/"
    assert marketer.post(control, {"variant": "abc"}).status_code == 404
    assert marketer.post(control, {"variant": "99999999999999999999"}).status_code == 404
    assert marketer.post(control, {}).status_code == 404
    page = marketer.get(f"/admin/campaigns/campaign/{campaign.pk}/preview/", {"subscriber": "²"}).content.decode()
    assert "No subscriber “²”." in page


# --- 3. Impossible numbers ---------------------------------------------------------------------


@pytest.mark.parametrize(("test_percent", "holdout_percent", "message"), [
    ("150", "120", SHARES_MESSAGE),
    ("95", "0", SHARES_MESSAGE),
    ("0", "60", SHARES_MESSAGE),
    ("60", "50", "The test share and the hold-out together cannot exceed 100%."),
])
def test_the_form_refuses_an_impossible_test_share_or_hold_out_in_the_words_of_schedule(
        marketer, topic, test_percent, holdout_percent, message):
    response = marketer.post("/admin/campaigns/campaign/add/",
                             add_form(topic, test_percent=test_percent, holdout_percent=holdout_percent))
    assert message in errors_of(response)
    assert not Campaign.objects.filter(name="Spring sale").exists()


def test_the_form_saves_possible_shares(marketer, topic):
    response = marketer.post("/admin/campaigns/campaign/add/", add_form(topic, test_percent="40",
                                                                        holdout_percent="10"))
    assert response.status_code == 302
    saved = Campaign.objects.get(name="Spring sale")
    assert (saved.test_percent, saved.holdout_percent) == (40, 10)


@pytest.mark.parametrize("throttle", ["0", "-5"])
def test_the_form_refuses_a_throttle_of_zero_or_less(marketer, topic, throttle):
    response = marketer.post("/admin/campaigns/campaign/add/", add_form(topic, throttle_per_minute=throttle))
    assert THROTTLE_MESSAGE in errors_of(response)
    assert not Campaign.objects.filter(name="Spring sale").exists()


def test_an_empty_throttle_means_no_limit_and_a_number_is_kept(marketer, topic):
    page = marketer.get("/admin/campaigns/campaign/add/").content.decode()
    assert "empty: no limit" in page and 'name="throttle_per_minute"' in page
    assert marketer.post("/admin/campaigns/campaign/add/", add_form(topic)).status_code == 302
    assert Campaign.objects.get(name="Spring sale").throttle_per_minute is None
    assert marketer.post("/admin/campaigns/campaign/add/",
                         add_form(topic, name="Autumn sale", throttle_per_minute="500")).status_code == 302
    assert Campaign.objects.get(name="Autumn sale").throttle_per_minute == 500


# --- 4. A send time in the past --------------------------------------------------------------------


def at_a_time(topic, when: dt.datetime, **overrides) -> dict[str, str]:
    return add_form(topic, schedule_mode=ScheduleMode.AT, send_at_0=f"{when:%Y-%m-%d}",
                    send_at_1=f"{when:%H:%M:%S}", **overrides)


def test_the_form_refuses_a_send_time_in_the_past(marketer, topic, clock):
    response = marketer.post("/admin/campaigns/campaign/add/", at_a_time(topic, dt.datetime(2020, 1, 1, 10)))
    page = errors_of(response)
    assert "This time has passed (2020-01-01 10:00 UTC)" in page and "choose “Now”" in page
    assert not Campaign.objects.filter(name="Spring sale").exists()


def test_the_form_accepts_a_time_to_come_or_one_a_few_seconds_ago(marketer, topic, clock):
    # A few seconds: the time the marketer took to click Save, or their clock a little ahead of ours.
    just_now = NOON - dt.timedelta(seconds=30)
    assert marketer.post("/admin/campaigns/campaign/add/", at_a_time(topic, just_now)).status_code == 302
    tomorrow = NOON + dt.timedelta(days=1)
    assert marketer.post("/admin/campaigns/campaign/add/",
                         at_a_time(topic, tomorrow, name="Tomorrow")).status_code == 302
    assert Campaign.objects.get(name="Tomorrow").send_at == tomorrow
    # A past time left in the box while sending "Now" is not used, so it is not in the way.
    assert marketer.post("/admin/campaigns/campaign/add/",
                         add_form(topic, name="Now", send_at_0="2020-01-01", send_at_1="10:00:00")).status_code == 302


def test_schedule_refuses_a_draft_whose_time_has_passed_since_it_was_saved(
        marketer, campaign, clock, django_capture_on_commit_callbacks):
    campaign.schedule_mode, campaign.send_at = ScheduleMode.AT, NOON - dt.timedelta(hours=2)
    campaign.save()
    with django_capture_on_commit_callbacks(execute=True):
        response = marketer.post(f"/admin/campaigns/campaign/{campaign.pk}/control/schedule/", follow=True)
    page = response.content.decode()
    assert "This time has passed (2026-12-01 10:00 UTC)" in page and "Scheduled." not in page
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.DRAFT and mail.outbox == []
    campaign.send_at = NOON + dt.timedelta(hours=1)
    campaign.save()
    with django_capture_on_commit_callbacks(execute=True):
        page = marketer.post(f"/admin/campaigns/campaign/{campaign.pk}/control/schedule/",
                             follow=True).content.decode()
    assert "Scheduled. Sending starts at its time" in page
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.SCHEDULED
