"""Admin screens: subscriber list and detail, bulk actions, roles, the CSV import flow."""

import csv
import io

import pytest
from django.contrib.auth.models import Group, User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from preferences.models import TopicSubscription
from subscribers.models import ConsentRecord, ImportJob, Subscriber
from subscribers.roles import ANALYST, MARKETER, MARKETING_MANAGER


def staff(role: str) -> User:
    user = User.objects.create_user(username=role.replace(" ", "_").lower(), password="pw", is_staff=True)
    user.groups.add(Group.objects.get(name=role))
    return user


@pytest.fixture
def manager_client(client, db):
    client.force_login(staff(MARKETING_MANAGER))
    return client


def test_roles_have_the_documented_permissions(db):
    manager, marketer, analyst = (staff(r) for r in (MARKETING_MANAGER, MARKETER, ANALYST))
    assert manager.has_perms(["subscribers.delete_subscriber", "subscribers.export_subscriber",
                              "subscribers.add_importjob"])
    assert marketer.has_perms(["subscribers.change_subscriber", "subscribers.add_importjob", "preferences.add_topic"])
    assert not marketer.has_perm("subscribers.delete_subscriber")
    assert not marketer.has_perm("subscribers.export_subscriber")
    assert analyst.has_perms(["subscribers.view_subscriber", "subscribers.view_consentrecord"])
    assert not analyst.has_perm("subscribers.change_subscriber")
    assert not analyst.has_perm("subscribers.add_importjob")


def test_subscriber_list_searches_and_filters(manager_client, make_subscriber, topic):
    ann = make_subscriber(email="ann@example.com", first_name="Ann", country="LV")
    make_subscriber(email="bob@example.com", first_name="Bob", country="PL")
    TopicSubscription.objects.create(subscriber=ann, topic=topic)
    url = reverse("admin:subscribers_subscriber_changelist")
    assert b"ann@example.com" in manager_client.get(url, {"q": "Ann"}).content
    assert b"bob@example.com" not in manager_client.get(url, {"q": "Ann"}).content
    by_topic = manager_client.get(url, {"topic": topic.pk}).content
    assert b"ann@example.com" in by_topic and b"bob@example.com" not in by_topic
    by_country = manager_client.get(url, {"country": "PL"}).content
    assert b"bob@example.com" in by_country and b"ann@example.com" not in by_country


def test_detail_page_shows_consent_history_read_only(manager_client, make_subscriber):
    s = make_subscriber()
    ConsentRecord.objects.create(subscriber=s, purpose="email_marketing", granted=True, method="form",
                                 notice_version="signup-v7")
    page = manager_client.get(reverse("admin:subscribers_subscriber_change", args=[s.pk])).content.decode()
    assert "Consent history" in page and "signup-v7" in page
    assert 'name="consent_records-0-DELETE"' not in page
    assert 'name="consent_records-0-granted"' not in page and 'name="consent_records-0-method"' not in page


def test_nobody_can_edit_or_delete_ledger_rows_in_admin(manager_client, make_subscriber):
    s = make_subscriber()
    record = ConsentRecord.objects.create(subscriber=s, purpose="email_marketing", granted=True, method="form")
    change = reverse("admin:subscribers_consentrecord_change", args=[record.pk])
    response = manager_client.post(change, {"granted": ""})
    assert response.status_code in (302, 403) or b"readonly" in response.content
    record.refresh_from_db()
    assert record.granted is True
    assert manager_client.get(reverse("admin:subscribers_consentrecord_add")).status_code == 403
    assert manager_client.post(reverse("admin:subscribers_consentrecord_delete", args=[record.pk]),
                               {"post": "yes"}).status_code == 403
    assert ConsentRecord.objects.filter(pk=record.pk).exists()


def test_adding_a_subscribed_person_requires_and_records_consent(manager_client):
    url = reverse("admin:subscribers_subscriber_add")
    data = {"email": "new@Example.com", "status": "subscribed", "tags": "[]", "attributes": "{}",
            "topic_subscriptions-TOTAL_FORMS": "0", "topic_subscriptions-INITIAL_FORMS": "0",
            "consent_records-TOTAL_FORMS": "0", "consent_records-INITIAL_FORMS": "0"}
    response = manager_client.post(url, data)
    assert response.status_code == 200 and "Say how the person agreed" in response.content.decode()
    assert not Subscriber.objects.exists()
    response = manager_client.post(url, {**data, "consent_note": "paper form at the Riga fair"})
    assert response.status_code == 302
    s = Subscriber.objects.get()
    assert s.email == "new@example.com" and s.status == "subscribed"
    record = s.consent_records.get()
    assert (record.method, record.notice_version, record.actor.username) == (
        "admin", "paper form at the Riga fair", "marketing_manager")


def test_bulk_add_to_topic_and_unsubscribe(manager_client, make_subscriber, topic):
    a, b = make_subscriber(), make_subscriber()
    url = reverse("admin:subscribers_subscriber_changelist")
    picker = manager_client.post(url, {"action": "add_to_topic", "_selected_action": [a.pk, b.pk]})
    assert b"Add 2 selected subscribers to a topic" in picker.content
    manager_client.post(url, {"action": "add_to_topic", "_selected_action": [a.pk, b.pk], "apply": "1",
                              "topic": topic.pk})
    assert TopicSubscription.objects.filter(topic=topic, subscribed=True).count() == 2
    manager_client.post(url, {"action": "unsubscribe_selected", "_selected_action": [a.pk]})
    a.refresh_from_db()
    assert a.status == "unsubscribed"
    assert a.consent_records.filter(purpose="email_marketing", granted=False, method="admin").count() == 1


def test_export_selected_needs_the_export_permission_and_escapes_formulas(client, make_subscriber):
    s = make_subscriber(email="x@example.com", first_name="=HYPERLINK(\"http://evil\")", city="@risk")
    url = reverse("admin:subscribers_subscriber_changelist")
    client.force_login(staff(MARKETER))
    actions = client.get(url).context["action_form"].fields["action"].choices
    assert "export_admin_action" not in [name for name, _ in actions]
    client.force_login(staff(MARKETING_MANAGER))
    actions = client.get(url).context["action_form"].fields["action"].choices
    assert "export_admin_action" in [name for name, _ in actions]
    export_url = reverse("admin:subscribers_subscriber_export")
    response = client.post(export_url, {"format": "0", "export_items": [s.pk], "resource": "0",
                                        **{f"subscriberexportresource_{f}": "on" for f in ("email", "first_name",
                                                                                           "city")}})
    assert response.status_code == 200, response.content[:500]
    rows = list(csv.reader(io.StringIO(response.content.decode("utf-8-sig"))))
    body = dict(zip(rows[0], rows[1], strict=False))
    assert body["first_name"] == "'=HYPERLINK(\"http://evil\")"
    assert body["city"] == "'@risk"
    assert body["email"] == "x@example.com"


def test_import_flow_upload_check_confirm(manager_client, topic, settings, tmp_path,
                                          django_capture_on_commit_callbacks):
    settings.MEDIA_ROOT = str(tmp_path)
    upload = SimpleUploadedFile(
        "fair.csv", b"Email Address;First Name;CC\nann@example.com;Ann;LV\nbad;Bo;PL\n", "text/csv")
    with django_capture_on_commit_callbacks(execute=True):
        response = manager_client.post(reverse("admin:subscribers_importjob_add"), {
            "file": upload, "topic": topic.pk, "consent_notice": "Fair 2026 form", "mode": "fill_blanks",
            "skip_bad_rows": "on"})
    job = ImportJob.objects.get()
    assert response.status_code == 302 and response.url == reverse("admin:subscribers_importjob_change",
                                                                   args=[job.pk])
    job.refresh_from_db()
    assert job.status == "checked" and (job.new_count, job.error_count) == (1, 1)
    assert not Subscriber.objects.exists()
    page = manager_client.get(response.url).content.decode()
    assert "Confirm and import 1 rows" in page and "is not a valid email address" in page
    report = manager_client.get(reverse("admin:subscribers_importjob_report", args=[job.pk]))
    assert b"3,,error,Email Address" in b"".join(report.streaming_content)
    progress = manager_client.get(reverse("admin:subscribers_importjob_progress", args=[job.pk])).json()
    assert progress["running"] is False and progress["status"] == "checked"
    with django_capture_on_commit_callbacks(execute=True):
        manager_client.post(reverse("admin:subscribers_importjob_confirm", args=[job.pk]))
    job.refresh_from_db()
    assert job.status == "done", job.message
    ann = Subscriber.objects.get()
    assert ann.consent_records.filter(notice_version="Fair 2026 form", purpose="email_marketing").exists()
    assert TopicSubscription.objects.filter(subscriber=ann, topic=topic).exists()
    # Confirming twice does not import twice.
    with django_capture_on_commit_callbacks(execute=True):
        manager_client.post(reverse("admin:subscribers_importjob_confirm", args=[job.pk]))
    assert ConsentRecord.objects.filter(subscriber=ann, purpose="email_marketing").count() == 1


def test_import_with_errors_cannot_be_confirmed(manager_client, settings, tmp_path, django_capture_on_commit_callbacks):
    settings.MEDIA_ROOT = str(tmp_path)
    upload = SimpleUploadedFile("list.csv", b"Email\nok@example.com\nnope\n", "text/csv")
    with django_capture_on_commit_callbacks(execute=True):
        manager_client.post(reverse("admin:subscribers_importjob_add"), {"file": upload, "mode": "fill_blanks"})
    job = ImportJob.objects.get()
    page = manager_client.get(reverse("admin:subscribers_importjob_change", args=[job.pk])).content.decode()
    assert "Confirm and import" not in page and "Fix the errors" in page
    assert "<th>Email</th><td>→ Email</td>" in page  # the column list names fields as people do
    assert '">Audience</a> › <a href="/admin/subscribers/importjob/">CSV imports</a>' in page
    manager_client.post(reverse("admin:subscribers_importjob_confirm", args=[job.pk]))
    job.refresh_from_db()
    assert job.status == "checked" and not Subscriber.objects.exists()
    manager_client.post(reverse("admin:subscribers_importjob_cancel", args=[job.pk]))
    page = manager_client.get(reverse("admin:subscribers_importjob_change", args=[job.pk])).content.decode()
    assert "Cancelled; nothing was imported." in page and "Fix the errors" not in page


def test_import_columns_are_named_as_people_know_them():
    from subscribers.importing.columns import target_label

    labels = {"shoe_size": "Shoe size"}
    assert target_label("first_name", labels) == "First name"
    assert target_label("optin_ip", labels) == "Consent IP address (opt-in)"
    assert target_label("attribute:shoe_size", labels) == "Shoe size (attribute)"
    assert target_label("attribute:gone", labels) == "gone (attribute)"


def test_unreadable_upload_fails_with_the_reason(manager_client, settings, tmp_path,
                                                 django_capture_on_commit_callbacks):
    settings.MEDIA_ROOT = str(tmp_path)
    upload = SimpleUploadedFile("list.csv", b"Name,City\nAnn,Riga\n", "text/csv")
    with django_capture_on_commit_callbacks(execute=True):
        manager_client.post(reverse("admin:subscribers_importjob_add"), {"file": upload, "mode": "fill_blanks"})
    job = ImportJob.objects.get()
    assert job.status == "failed" and "No column holds email addresses" in job.message


def test_analyst_cannot_import(client, db):
    client.force_login(staff(ANALYST))
    assert client.get(reverse("admin:subscribers_importjob_add")).status_code == 403


def test_write_key_is_shown_once_and_can_be_revoked(manager_client):
    from subscribers.models import WriteKey

    response = manager_client.post(reverse("admin:subscribers_writekey_add"), {"name": "Shop"}, follow=True)
    page = response.content.decode()
    key = WriteKey.objects.get()
    assert "copy it now" in page and key.key_prefix in page
    import re

    shown = re.search(r'<code class="mk-secret">([^<]+)</code>', page).group(1)
    assert WriteKey.hash(shown) == key.key_hash and shown not in str(key.__dict__)
    manager_client.post(reverse("admin:subscribers_writekey_changelist"),
                        {"action": "revoke", "_selected_action": [key.pk]})
    key.refresh_from_db()
    assert key.revoked_at is not None


def test_behaviour_screens_are_read_only(manager_client):
    for name in ("event", "order", "product"):
        assert manager_client.get(reverse(f"admin:subscribers_{name}_changelist")).status_code == 200
        assert manager_client.get(reverse(f"admin:subscribers_{name}_add")).status_code == 403


def test_manager_downloads_personal_data_and_it_is_logged(manager_client, make_subscriber):
    s = make_subscriber(email="ann@example.com", first_name="Ann")
    page = manager_client.get(reverse("admin:subscribers_subscriber_change", args=[s.pk])).content.decode()
    assert "Download personal data (JSON)" in page
    response = manager_client.get(reverse("admin:subscribers_subscriber_personal_data", args=[s.pk]))
    assert response.status_code == 200 and "attachment" in response["Content-Disposition"]
    assert response.json()["profile"]["first_name"] == "Ann"
    assert s.privacy_requests.get().kind == "export"


def test_marketer_cannot_download_or_erase(client, make_subscriber):
    s = make_subscriber()
    client.force_login(staff(MARKETER))
    assert client.get(reverse("admin:subscribers_subscriber_personal_data", args=[s.pk])).status_code == 403
    client.post(reverse("admin:subscribers_subscriber_changelist"),
                {"action": "erase_selected", "_selected_action": [s.pk], "apply": "1"})
    s.refresh_from_db()
    assert s.status != "erased"


def test_manager_erases_after_confirming(manager_client, make_subscriber):
    s = make_subscriber(email="ann@example.com")
    url = reverse("admin:subscribers_subscriber_changelist")
    confirm = manager_client.post(url, {"action": "erase_selected", "_selected_action": [s.pk]})
    assert b"Erase for good" in confirm.content
    s.refresh_from_db()
    assert s.status == "subscribed"
    done = manager_client.post(url, {"action": "erase_selected", "_selected_action": [s.pk], "apply": "1"},
                               follow=True)
    s.refresh_from_db()
    assert s.status == "erased" and s.privacy_requests.get().kind == "erasure"
    assert s.consent_records.get().actor.username == "marketing_manager"
    assert [str(m) for m in done.context["messages"]] == [
        "Erased the personal data of 1 person. Their address is kept only as a hash, so they cannot be added again "
        "by mistake."]
    others = [make_subscriber(email=f"p{n}@example.com") for n in range(2)]
    done = manager_client.post(url, {"action": "erase_selected", "_selected_action": [p.pk for p in others],
                                     "apply": "1"}, follow=True)
    assert [str(m) for m in done.context["messages"]] == [
        "Erased the personal data of 2 people. Their addresses are kept only as a hash, so they cannot be added "
        "again by mistake."]


def test_tags_are_edited_as_a_comma_separated_line(manager_client, make_subscriber):
    s = make_subscriber(tags=["vip"])
    url = reverse("admin:subscribers_subscriber_change", args=[s.pk])
    assert 'value="vip"' in manager_client.get(url).content.decode()
    form = manager_client.get(url).context["adminform"].form
    data = {k: v for k, v in form.initial.items() if v is not None and k not in {"tags", "attributes", "country"}}
    data.update({"email": s.email, "tags": "vip, runner ,vip", "attributes": "{}", "country": "",
                 "topic_subscriptions-TOTAL_FORMS": "0", "topic_subscriptions-INITIAL_FORMS": "0",
                 "consent_records-TOTAL_FORMS": "0", "consent_records-INITIAL_FORMS": "0",
                 "privacy_requests-TOTAL_FORMS": "0", "privacy_requests-INITIAL_FORMS": "0"})
    response = manager_client.post(url, data)
    assert response.status_code == 302, response.content.decode()[:2000]
    s.refresh_from_db()
    assert s.tags == ["vip", "runner"]


def test_a_mistyped_import_address_is_not_a_server_error(manager_client):
    for address in ("/admin/subscribers/importjob/5/progres/change/", "/admin/subscribers/importjob/²/change/"):
        assert manager_client.get(address).status_code == 404


def test_the_subscriber_list_shows_the_day_created(manager_client, make_subscriber):
    import datetime as dt

    person = make_subscriber(email="day@example.com")
    Subscriber.objects.filter(pk=person.pk).update(created_at=dt.datetime(2026, 12, 2, 7, 56, tzinfo=dt.UTC))
    page = manager_client.get(reverse("admin:subscribers_subscriber_changelist")).content.decode()
    assert '<td class="field-created">2 Dec 2026</td>' in page
