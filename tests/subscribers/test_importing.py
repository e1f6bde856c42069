"""The CSV import engine, through the action the admin and the CLI share."""

import datetime as dt
import io
import sys

import pytest

from preferences import actions as preference_actions
from preferences.models import TopicSubscription
from subscribers.actions import ConsentEvidence, erase_subscriber, import_subscribers
from subscribers.importing.reader import ImportFileError
from subscribers.models import (
    ConsentMethod,
    ConsentRecord,
    Subscriber,
    SubscriberStatus,
    SuppressedAddress,
    email_hash,
)

MAILCHIMP_HEADER = (
    "Email Address,First Name,Last Name,Address,Phone Number,Birthday,MEMBER_RATING,OPTIN_TIME,OPTIN_IP,"
    "CONFIRM_TIME,CONFIRM_IP,LATITUDE,LONGITUDE,GMTOFF,DSTOFF,TIMEZONE,CC,REGION,LAST_CHANGED,LEID,EUID,NOTES,TAGS"
)


def mailchimp_row(email, first="", last="", birthday="", optin="", ip="", confirm="", tz="", cc="", region="",
                  tags="", notes=""):
    return (f'{email},{first},{last},,,{birthday},2,{optin},{ip},{confirm},,,,,,{tz},{cc},{region},'
            f'2024-01-01 00:00:00,123,abc,{notes},{tags}')


def run(path, **kwargs):
    return import_subscribers(path, **kwargs)


def test_mailchimp_export_is_imported_with_consent_evidence(db, write_csv):
    text = "\n".join([
        MAILCHIMP_HEADER,
        mailchimp_row("Ann.Lee@Example.COM", "Ann", "Lee", "03/14", "2023-05-01 10:00:00", "198.51.100.4",
                      "2023-05-01 10:05:00", "America/New_York", "US", "NY", '"""vip"",""runner"""'),
        mailchimp_row("jan@example.lv", "Jānis", "Bērziņš", "1988-07-21", tz="Europe/Riga", cc="LV"),
    ]) + "\n"
    result = run(write_csv(text, bom=True), consent_notice="Newsletter signup v2")
    assert result.applied and result.counts == {"new": 2, "updated": 0, "skipped": 0, "error": 0}
    assert "MEMBER_RATING" in result.ignored_columns and "LEID" in result.ignored_columns
    ann = Subscriber.objects.get(email_key="ann.lee@example.com")
    assert ann.email == "Ann.Lee@example.com"
    assert (ann.first_name, ann.last_name, ann.timezone, ann.country.code, ann.region) == (
        "Ann", "Lee", "America/New_York", "US", "NY")
    assert (ann.birth_date, ann.birthday_month, ann.birthday_day) == (None, 3, 14)
    assert ann.tags == ["vip", "runner"] or sorted(ann.tags) == ["runner", "vip"]
    assert ann.status == SubscriberStatus.SUBSCRIBED
    assert ann.confirmed_at == dt.datetime(2023, 5, 1, 10, 5, tzinfo=dt.UTC)
    consent = ann.consent_records.get()
    assert (consent.purpose, consent.granted, consent.method) == ("email_marketing", True, "import")
    assert consent.notice_version == "Newsletter signup v2"
    assert consent.ip_address == "198.51.100.4"
    assert consent.occurred_at == dt.datetime(2023, 5, 1, 10, 0, tzinfo=dt.UTC)
    jan = Subscriber.objects.get(email_key="jan@example.lv")
    assert jan.birth_date == dt.date(1988, 7, 21) and jan.first_name == "Jānis"


@pytest.mark.parametrize("delimiter", [",", ";", "\t"])
def test_any_common_delimiter_and_quoted_newlines(db, write_csv, delimiter):
    d = delimiter
    text = f'Email{d}First Name{d}City\n"a@example.com"{d}"Anna"{d}"Rīga\nold town"\nb@example.com{d}Bo{d}Oslo\n'
    result = run(write_csv(text))
    assert result.counts["new"] == 2
    assert Subscriber.objects.get(email_key="a@example.com").city == "Rīga\nold town"


def test_utf16_excel_unicode_text_is_read(db, write_csv):
    path = write_csv("Email\tFirst name\nzofia@example.pl\tZofia Łódź\n", encoding="utf-16")
    assert run(path).counts["new"] == 1
    assert Subscriber.objects.get().first_name == "Zofia Łódź"


def test_catalogue_attributes_are_imported_by_key_or_label(db, write_csv, attribute):
    attribute("shoe_size", "number", label="Shoe size")
    attribute("tier", "choice", label="Loyalty tier", choices=["Gold", "Silver"])
    result = run(write_csv("Email,Shoe size,tier,Favourite pet\na@example.com,42,gold,cat\n"))
    assert result.mapped_columns == {"Email": "email", "Shoe size": "attribute:shoe_size", "tier": "attribute:tier"}
    assert result.ignored_columns == ["Favourite pet"]
    assert Subscriber.objects.get().attributes == {"shoe_size": 42, "tier": "Gold"}


def test_reimport_never_duplicates_and_fill_blanks_keeps_existing_values(db, write_csv, make_subscriber):
    make_subscriber(email="Ann@example.com", first_name="Ann", last_name="", city="Riga", tags=["old"])
    path = write_csv("Email,First Name,Last Name,City,Tags\nann@EXAMPLE.com,Annie,Lee,Oslo,new\n")
    first = run(path)
    second = run(path)
    assert first.counts["updated"] == second.counts["updated"] == 1
    assert Subscriber.objects.count() == 1
    ann = Subscriber.objects.get()
    assert (ann.first_name, ann.last_name, ann.city) == ("Ann", "Lee", "Riga")
    assert sorted(ann.tags) == ["new", "old"]


def test_overwrite_mode_takes_file_values_but_never_blanks_out(db, write_csv, make_subscriber, attribute):
    attribute("tier", "text")
    make_subscriber(email="ann@example.com", first_name="Ann", city="Riga", phone="123", attributes={"tier": "a"})
    run(write_csv("Email,First Name,City,Phone,tier\nann@example.com,Annie,,,b\n"), mode="overwrite")
    ann = Subscriber.objects.get()
    assert (ann.first_name, ann.city, ann.phone, ann.attributes) == ("Annie", "Riga", "123", {"tier": "b"})


def test_pending_person_becomes_subscribed_with_consent(db, write_csv, make_subscriber):
    s = make_subscriber(email="p@example.com", status=SubscriberStatus.PENDING)
    run(write_csv("Email\np@example.com\n"))
    s.refresh_from_db()
    assert s.status == SubscriberStatus.SUBSCRIBED
    assert s.consent_records.filter(granted=True, method="import").count() == 1


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        (SubscriberStatus.UNSUBSCRIBED, "unsubscribed earlier"),
        (SubscriberStatus.BOUNCED, "bounced"),
        (SubscriberStatus.COMPLAINED, "spam"),
        (SubscriberStatus.ERASED, "erased"),
    ],
)
def test_blocked_people_are_never_resubscribed(db, write_csv, make_subscriber, topic, status, reason):
    s = make_subscriber(email="x@example.com", status=status, first_name="")
    result = run(write_csv("Email,First Name\nX@example.com,Xavier\n"), topic_id=topic.pk)
    assert result.counts["skipped"] == 1 and reason in result.issues[0]["reason"]
    s.refresh_from_db()
    assert (s.status, s.first_name) == (status, "")
    assert not ConsentRecord.objects.exists() and not TopicSubscription.objects.exists()


def test_erased_address_is_refused_by_its_hash(db, write_csv):
    SuppressedAddress.objects.create(email_hash=email_hash("gone@example.com"))
    result = run(write_csv("Email\nGONE@example.com\nkept@example.com\n"))
    assert result.counts == {"new": 1, "updated": 0, "skipped": 1, "error": 0}
    assert "erased" in result.issues[0]["reason"]
    assert list(Subscriber.objects.values_list("email", flat=True)) == ["kept@example.com"]


def test_topic_subscription_respects_earlier_opt_out(db, write_csv, make_subscriber, topic):
    opted_out = make_subscriber(email="out@example.com")
    preference_actions.set_topic_subscription(opted_out, topic=topic, subscribed=False,
                                              evidence=ConsentEvidence(method="preference_center"))
    result = run(write_csv("Email\nout@example.com\nnew@example.com\n"), topic_id=topic.pk)
    assert result.applied
    assert TopicSubscription.objects.get(subscriber=opted_out).subscribed is False
    newcomer = Subscriber.objects.get(email_key="new@example.com")
    assert TopicSubscription.objects.get(subscriber=newcomer, topic=topic).subscribed is True
    assert newcomer.consent_records.filter(purpose="topic", topic=topic, granted=True).count() == 1
    assert opted_out.consent_records.filter(purpose="topic", granted=True).count() == 0


def test_dry_run_changes_nothing(db, write_csv, make_subscriber):
    make_subscriber(email="ann@example.com", first_name="")
    result = run(write_csv("Email,First Name\nann@example.com,Ann\nnew@example.com,New\n"), dry_run=True)
    assert result.counts == {"new": 1, "updated": 1, "skipped": 0, "error": 0} and not result.applied
    assert Subscriber.objects.count() == 1 and Subscriber.objects.get().first_name == ""
    assert not ConsentRecord.objects.exists()
    assert [r["outcome"] for r in result.preview] == ["updated", "new"]


def test_errors_block_everything_unless_bad_rows_are_skipped(db, write_csv):
    path = write_csv("Email,Country\ngood@example.com,LV\nbad-address,LV\nother@example.com,Atlantis\n")
    refused = run(path)
    assert not refused.applied and refused.counts["error"] == 2
    assert "Nothing was imported" in refused.message
    assert not Subscriber.objects.exists() and not ConsentRecord.objects.exists()
    accepted = run(path, skip_bad_rows=True)
    assert accepted.applied
    assert list(Subscriber.objects.values_list("email", "country")) == [("good@example.com", "LV")]


# --- bad input: each gets a clear message naming row and column -------------


def issue(result, row):
    return next(i for i in result.issues if i["row"] == row)


@pytest.mark.parametrize(
    ("header", "cell", "column", "words"),
    [
        ("Email", "not-an-email", "Email", "is not a valid email address"),
        ("Email", "", "Email", "every row needs an email address"),
        ("Birthday", "02/30/1990", "Birthday", "is not a real date"),
        ("Birthday", "1990-13-01", "Birthday", "is not a real date"),
        ("Birthday", "yesterday", "Birthday", "is not a date"),
        ("Country", "Atlantis", "Country", "is not a country we know"),
        ("TIMEZONE", "Europe/Atlantis", "TIMEZONE", "is not a known time zone"),
        ("Language", "klingon", "Language", "is not a language we know"),
        ("Gender", "robot", "Gender", "is not a gender we understand"),
        ("OPTIN_TIME", "soon", "OPTIN_TIME", "is not a date and time"),
        ("OPTIN_IP", "300.1.1.1", "OPTIN_IP", "is not an IP address"),
        ("First Name", "x" * 151, "First Name", "longer than 150"),
    ],
)
def test_bad_cells_are_reported_with_row_and_column(db, write_csv, header, cell, column, words):
    if header == "Email":
        text = f"Email,City\nok@example.com,Riga\n{cell},Riga\n"
    else:
        text = f"Email,{header}\nok@example.com,\nbad@example.com,{cell}\n"
    result = run(write_csv(text))
    found = issue(result, 3)
    assert found["outcome"] == "error"
    assert found["column"] == column
    assert words in found["reason"]
    assert not Subscriber.objects.exists()


def test_country_accepts_names_and_codes(db, write_csv):
    run(write_csv("Email,Country\na@example.com,Latvia\nb@example.com,pol\nc@example.com,tr\nd@example.com,UK\n"))
    assert sorted(Subscriber.objects.values_list("country", flat=True)) == ["GB", "LV", "PL", "TR"]


def test_duplicate_rows_are_skipped_naming_the_first_row(db, write_csv):
    result = run(write_csv("Email,First Name\na@example.com,Ann\nb@example.com,Bo\nA@EXAMPLE.COM,Again\n"))
    assert result.counts == {"new": 2, "updated": 0, "skipped": 1, "error": 0}
    assert issue(result, 4)["reason"] == "same address as row 2"
    assert Subscriber.objects.get(email_key="a@example.com").first_name == "Ann"


def test_row_with_too_many_values_is_an_error(db, write_csv):
    result = run(write_csv("Email,First Name\na@example.com,Ann,Extra\n"))
    assert "has 3 values but the header has 2 columns" in issue(result, 2)["reason"]


def test_external_id_used_by_someone_else_is_an_error_not_a_crash(db, write_csv, make_subscriber):
    make_subscriber(email="owner@example.com", external_id="u-1")
    result = run(write_csv("Email,User ID\nother@example.com,u-1\nthird@example.com,u-2\nfourth@example.com,u-2\n"),
                 skip_bad_rows=True)
    assert issue(result, 2)["reason"].endswith("already belongs to another subscriber")
    assert "also used on row 3" in issue(result, 4)["reason"]
    assert Subscriber.objects.get(email_key="third@example.com").external_id == "u-2"


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b"", "The file is empty"),
        (b"Email,First Name\n", "header row but no subscribers"),
        (b"Email,First Name\n\n,\n", "header row but no subscribers"),
        (b"Name,City\nAnn,Riga\n", "No column holds email addresses"),
        (b"Email,E-mail\na@example.com,b@example.com\n", "both hold the same thing"),
        (b"Email,First Name\nann@example.com,Ren\xe9e\n", "not saved as UTF-8"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "not saved as UTF-8"),
    ],
)
def test_whole_file_problems_are_explained(db, tmp_path, content, words):
    path = tmp_path / "bad.csv"
    path.write_bytes(content)
    with pytest.raises(ImportFileError) as exc:
        run(path)
    assert words in str(exc.value)
    assert not Subscriber.objects.exists()


def test_wrong_encoding_names_the_row(db, tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes(b"Email,First Name\n" + b"a@example.com,Ann\n" * 3 + b"b@example.com,Ren\xe9e\n")
    with pytest.raises(ImportFileError, match="on line 5"):
        run(path)


def test_file_over_the_size_limit_is_refused(db, write_csv, settings):
    settings.IMPORT_MAX_FILE_MB = 1
    path = write_csv("Email\n" + "a@example.com\n" * 80000)
    with pytest.raises(ImportFileError, match="the limit is 1 MB"):
        run(path)


def test_report_lists_every_row_and_escapes_formulas(db, write_csv):
    report = io.StringIO()
    run(write_csv('Email,Country\n=cmd|calc@example.com,LV\nok@example.com,LV\n"@SUM(A1)",LV\n'),
        report=report, dry_run=True)
    lines = report.getvalue().splitlines()
    assert lines[0] == "row,email,outcome,column,reason"
    # A valid address that starts with "=" is imported but cannot run as a formula in the report.
    assert lines[1] == "2,'=cmd|calc@example.com,new,,"
    assert lines[2] == "3,ok@example.com,new,,"
    assert lines[3].startswith("4,,error,Email,")
    assert len(lines) == 4


def test_a_shop_contact_becomes_subscribed_with_consent(db, write_csv, make_subscriber):
    s = make_subscriber(email="c@example.com", status=SubscriberStatus.CONTACT)
    run(write_csv("Email\nc@example.com\n"), consent_notice="fair form")
    s.refresh_from_db()
    assert s.status == SubscriberStatus.SUBSCRIBED
    assert s.consent_records.get().notice_version == "fair form"


def _ids_by_email():
    return dict(Subscriber.objects.values_list("email_key", "id"))


def test_new_subscribers_take_ids_in_file_order_and_a_dry_run_takes_none(db, write_csv, make_subscriber, topic):
    before = make_subscriber(email="before@example.com")
    text = ("Email,First Name\nc@example.com,C\nbefore@example.com,B\nbad-address,X\na@example.com,A\n"
            "C@example.com,again\nb@example.com,B\n")
    checked = run(write_csv(text), topic_id=topic.pk, skip_bad_rows=True, dry_run=True)
    assert checked.counts == {"new": 3, "updated": 1, "skipped": 1, "error": 1} and not checked.applied
    result = run(write_csv(text), topic_id=topic.pk, skip_bad_rows=True)
    assert result.counts == checked.counts and result.applied
    after = make_subscriber(email="after@example.com")
    ids = _ids_by_email()
    # The dry run drew no ids, the import one per new subscriber, in the order of the file.
    assert [ids[k] for k in ("c@example.com", "a@example.com", "b@example.com")] == [
        before.pk + 1, before.pk + 2, before.pk + 3]
    assert after.pk == before.pk + 4
    marketing = ConsentRecord.objects.filter(purpose="email_marketing").order_by("id")
    assert [c.subscriber_id for c in marketing] == [before.pk + 1, before.pk + 2, before.pk + 3]
    on_topic = ConsentRecord.objects.filter(purpose="topic", topic=topic).order_by("id")
    assert [c.subscriber_id for c in on_topic] == [before.pk + 1, before.pk, before.pk + 2, before.pk + 3]
    assert sorted(TopicSubscription.objects.filter(topic=topic).values_list("subscriber_id", flat=True)) == [
        before.pk, before.pk + 1, before.pk + 2, before.pk + 3]


@pytest.mark.parametrize(("clash", "status"), [("email", SubscriberStatus.PENDING),
                                                ("email", SubscriberStatus.UNSUBSCRIBED),
                                                ("external_id", SubscriberStatus.SUBSCRIBED)])
def test_someone_added_during_the_import_stops_it(db, write_csv, topic, monkeypatch, clash, status):
    """Someone takes an address (or external id) of the file after the check, before the INSERT.

    The fast INSERT fails on the unique index and the second one skips that
    row (ON CONFLICT DO NOTHING), so the import knows how many clashed. It
    then stops: the import must not give its consent to a person who signed
    up (or unsubscribed) on their own, nor report rows it did not write.
    """
    from subscribers.importing import engine

    apply = engine._apply
    seen = {}

    def signup_then_apply(*args, **kwargs):
        if clash == "email":
            Subscriber.objects.create(email="late@example.com", first_name="Signed up", status=status)
        else:
            Subscriber.objects.create(email="other@example.com", first_name="Signed up", external_id="X-2",
                                      status=status)
        try:
            return apply(*args, **kwargs)
        finally:
            # What the import left before its transaction rolled back (the
            # signup above shares it here, so it goes too).
            seen["consent"] = ConsentRecord.objects.count()
            seen["people"] = Subscriber.objects.count()

    monkeypatch.setattr(engine, "_apply", signup_then_apply)
    text = "Email,First Name,External ID\nfirst@example.com,F,X-1\nlate@example.com,L,X-2\nlast@example.com,Z,X-3\n"
    with pytest.raises(ImportFileError, match=r"^1 row of the file clashed with people added while the import ran "
                                              r"\(the same address or external id, from a signup, the API or "
                                              r"another import\), so nothing was imported\."):
        run(write_csv(text), topic_id=topic.pk)
    assert seen == {"consent": 0, "people": 3}  # the two other new rows and the signup; no consent yet
    assert not Subscriber.objects.exists() and not ConsentRecord.objects.exists()
    assert not TopicSubscription.objects.exists()


@pytest.mark.django_db
def test_ids_drawn_by_someone_else_meanwhile_fall_back_to_the_address(write_csv, topic, monkeypatch):
    from subscribers.importing import engine

    monkeypatch.setattr(engine, "_reserve_ids", lambda cursor, count: None)
    result = run(write_csv("Email\na@example.com\nb@example.com\n"), topic_id=topic.pk)
    assert result.counts["new"] == 2
    for s in Subscriber.objects.all():
        assert s.consent_records.filter(purpose="email_marketing").count() == 1
        assert TopicSubscription.objects.filter(subscriber=s, topic=topic).count() == 1


def _replication_role():
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SHOW session_replication_role")
        return cursor.fetchone()[0]


@pytest.mark.django_db
def test_ledger_rows_skip_row_by_row_key_checks_only_when_proved(write_csv, topic, make_subscriber, monkeypatch):
    """On PostgreSQL the consent and topic rows are written without the per-row foreign-key checks.

    Every subscriber they point at was just inserted or updated by the import,
    so the checks would prove nothing; the setting is put back afterwards.
    """
    from django.db import connection

    from subscribers.importing import engine

    if connection.vendor != "postgresql":
        pytest.skip("session_replication_role is PostgreSQL's")
    seen = []
    write_ledger = engine._write_ledger

    def watch(*args, **kwargs):
        seen.append(_replication_role())
        return write_ledger(*args, **kwargs)

    monkeypatch.setattr(engine, "_write_ledger", watch)
    make_subscriber(email="known@example.com", status=SubscriberStatus.PENDING)
    result = run(write_csv("Email\nnew@example.com\nknown@example.com\n"), topic_id=topic.pk)
    assert result.counts["new"] == 1 and result.counts["updated"] == 1
    assert seen == ["replica"] and _replication_role() == "origin"
    connection.check_constraints()
    assert ConsentRecord.objects.filter(purpose="email_marketing").count() == 2
    assert TopicSubscription.objects.filter(topic=topic).count() == 2

    # A subscriber deleted after the check cannot be updated: the import
    # stops with a plain message rather than leave consent for nobody.
    apply = engine._apply

    def delete_then_apply(*args, **kwargs):
        Subscriber.objects.filter(email_key="gone@example.com").delete()
        return apply(*args, **kwargs)

    make_subscriber(email="gone@example.com", status=SubscriberStatus.PENDING)
    monkeypatch.setattr(engine, "_apply", delete_then_apply)
    seen.clear()
    with pytest.raises(ImportFileError, match="1 person in the file unsubscribed, changed address or was deleted"):
        run(write_csv("Email\ngone@example.com\nother@example.com\n"), topic_id=topic.pk)
    assert seen == [] and not Subscriber.objects.filter(email_key="other@example.com").exists()


@pytest.mark.django_db
def test_a_role_that_may_not_skip_the_checks_imports_with_them(write_csv, topic, monkeypatch):
    from django.db import connection

    from subscribers.importing import engine

    if connection.vendor != "postgresql":
        pytest.skip("roles are PostgreSQL's")
    seen = []
    write_ledger = engine._write_ledger
    monkeypatch.setattr(engine, "_write_ledger", lambda *a, **k: (seen.append(_replication_role()),
                                                                  write_ledger(*a, **k)))
    with connection.cursor() as cursor:
        # Rolled back with the test's transaction, like everything else here.
        cursor.execute("CREATE ROLE import_without_superuser NOSUPERUSER")
        cursor.execute("GRANT ALL ON ALL TABLES IN SCHEMA public TO import_without_superuser")
        cursor.execute("GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO import_without_superuser")
        cursor.execute("SET LOCAL ROLE import_without_superuser")
    result = run(write_csv("Email\na@example.com\nb@example.com\n"), topic_id=topic.pk)
    assert result.applied and result.counts["new"] == 2
    assert seen == ["origin"]
    connection.check_constraints()
    assert ConsentRecord.objects.filter(purpose="topic", topic=topic).count() == 2

    # The right alone, without being a superuser, is enough.
    with connection.cursor() as cursor:
        cursor.execute("RESET ROLE")
        cursor.execute("GRANT SET ON PARAMETER session_replication_role TO import_without_superuser")
        cursor.execute("SET LOCAL ROLE import_without_superuser")
    result = run(write_csv("Email\nc@example.com\n"), topic_id=topic.pk)
    assert result.counts["new"] == 1 and seen == ["origin", "replica"]
    connection.check_constraints()


def test_a_topic_deleted_while_the_import_runs_imports_nothing(db, write_csv, topic, monkeypatch):
    from subscribers.importing import engine

    apply = engine._apply

    def delete_then_apply(*args, **kwargs):
        topic.delete()
        return apply(*args, **kwargs)

    monkeypatch.setattr(engine, "_apply", delete_then_apply)
    with pytest.raises(ImportFileError, match="topic chosen for this import was deleted"):
        run(write_csv("Email\na@example.com\n"), topic_id=topic.pk)
    assert not Subscriber.objects.exists() and not ConsentRecord.objects.exists()


@pytest.mark.parametrize("address", [
    "a@b.co", "first.last+tag@example.com", "o'brien@example.ie", "x@sub-domain.example.museum",
    "user@xn--80ak6aa92e.com", "user@domain.xn--p1ai", "jānis@example.lv", "user@bücher.de", "user@localhost",
    '"quoted local"@example.com', "user@[192.168.0.1]", "user@[IPv6:::1]", "a..b@example.com", ".a@example.com",
    "a.@example.com", "a@-example.com", "a@example-.com", "a@example.c", "a@example.-com", "a@example.com-",
    "a@example", "a@.example.com", "a@example..com", "a b@example.com", "a@@example.com", "@example.com",
    "a@", "user@example.com.", "a@1.2.3.4", "a@example.123", "a@" + "x" * 64 + ".com", "a@x." + "y" * 64,
])
def test_email_parser_accepts_exactly_what_django_accepts(address):
    from django.core.exceptions import ValidationError
    from django.core.validators import validate_email

    from subscribers.importing.columns import CellError, parse_email
    from subscribers.models import normalize_email

    try:
        validate_email(normalize_email(address))
        django_ok = True
    except ValidationError:
        django_ok = False
    try:
        parse_email(address)
        ours_ok = True
    except CellError:
        ours_ok = False
    assert ours_ok == django_ok


def _snapshot(result, report):
    fields = ("email", "first_name", "last_name", "birth_date", "birthday_month", "birthday_day", "country",
              "region", "timezone", "tags", "attributes", "confirmed_at", "status", "source")
    return {
        "counts": result.counts, "preview": result.preview, "issues": result.issues, "report": report.getvalue(),
        "subscribers": sorted(Subscriber.objects.values_list(*fields)),
        "consents": sorted(ConsentRecord.objects.values_list("subscriber__email_key", "purpose", "ip_address",
                                                            "occurred_at", "notice_version")),
        "members": sorted(TopicSubscription.objects.values_list("subscriber__email_key", "topic_id")),
    }


@pytest.mark.django_db
def test_a_file_checked_by_two_processes_gives_the_same_result(write_csv, topic, make_subscriber, attribute,
                                                               settings, monkeypatch):
    from django.db import connection, transaction

    from subscribers.importing import engine, parallel

    if connection.vendor != "postgresql":
        pytest.skip("the helper process feeds PostgreSQL's COPY")
    attribute("shoe_size", "number", label="Shoe size")
    make_subscriber(email="known3@example.com", status=SubscriberStatus.PENDING, first_name="")
    rows = [MAILCHIMP_HEADER + ",Shoe size"]
    for n in range(40):
        email = "known3@example.com" if n == 3 else f"p{n}@example.com"
        if n == 7:
            email = "not-an-address"
        if n == 21:
            email = "p2@example.com"  # the same address as an earlier row, in another batch
        first = ['"Tab\there, back\\slash"', '"Two\nlines"', "Kristīne", '"Carriage\r return"', "Łukasz"][n % 5]
        row = mailchimp_row(email, first=first, last="Zariņa", birthday="07/14" if n != 11 else "02/30",
                            optin="2023-01-24 04:21:21", ip="6.213.51.48" if n % 2 else "2001:db8::1",
                            tz="Europe/Riga", cc="LV" if n != 13 else "XX", tags='"""kids"",""travel"""')
        rows.append(row + f",{n % 5 if n != 17 else 'big'}")
        if n % 9 == 0:
            rows.append("")  # blank lines do not count as rows
    path = write_csv("\n".join(rows) + "\n")
    monkeypatch.setattr(engine, "BATCH_ROWS", 4)
    used = []
    next_batch = parallel.Helper.next_batch
    monkeypatch.setattr(parallel.Helper, "next_batch", lambda self, batch: used.append(1) or next_batch(self, batch))

    def imported(min_mb):
        settings.IMPORT_PARALLEL_MIN_MB = min_mb
        report = io.StringIO()
        with transaction.atomic():
            result = run(path, topic_id=topic.pk, skip_bad_rows=True, report=report)
            snapshot = _snapshot(result, report)
            transaction.set_rollback(True)
        return snapshot

    one, two = imported(10**6), imported(0)
    assert len(used) > 5 and two == one
    assert one["counts"] == {"new": 34, "updated": 1, "skipped": 1, "error": 4}
    assert ("p0@example.com", "Tab\there, back\\slash") in [(s[0], s[1]) for s in one["subscribers"]]


def _big_file(write_csv, rows, cell=""):
    return write_csv("Email,Birthday date\n" + "".join(f"p{n}@example.com,{cell}\n" for n in range(rows)))


@pytest.mark.django_db
def test_the_helper_reads_the_file_the_import_was_given_from_any_folder(write_csv, settings, monkeypatch,
                                                                         tmp_path):
    from django.db import connection

    from subscribers.importing import engine

    if connection.vendor != "postgresql":
        pytest.skip("the helper process feeds PostgreSQL's COPY")
    settings.IMPORT_PARALLEL_MIN_MB = 0
    monkeypatch.setattr(engine, "BATCH_ROWS", 3)
    path = _big_file(write_csv, 20)
    monkeypatch.chdir(path.parent)  # a relative path, as typed at the command line
    result = run(path.name)
    assert result.counts["new"] == 20
    assert Subscriber.objects.filter(email_key__startswith="p").count() == 20


@pytest.mark.django_db
def test_a_helper_that_fails_stops_the_import_with_a_plain_message(write_csv, settings, monkeypatch):
    from django.db import connection

    from subscribers.importing import engine, parallel

    if connection.vendor != "postgresql":
        pytest.skip("the helper process feeds PostgreSQL's COPY")
    settings.IMPORT_PARALLEL_MIN_MB = 0
    monkeypatch.setattr(engine, "BATCH_ROWS", 3)
    monkeypatch.setattr(parallel, "COMMAND", [sys.executable, "-c", "import sys; sys.stdin.readline(); sys.exit(3)"])
    with pytest.raises(parallel.HelperFailed, match="helper process failed, so nothing was imported"):
        run(_big_file(write_csv, 20))
    assert not Subscriber.objects.exists()


def test_the_helper_exits_when_the_import_is_gone(write_csv, settings):
    from subscribers.importing import parallel

    path = _big_file(write_csv, 3000)
    with path.open("rb") as raw:
        identity = parallel.file_identity(raw.fileno())
    helper = parallel.Helper(path, identity, 10**9, [], 2)
    try:
        # The import died without a word: only its end of the pipes closes.
        helper._process.stdin.close()
        assert helper._process.wait(timeout=30) == 0
    finally:
        helper.close()


def test_rows_with_errors_leave_no_garbage_behind_while_the_file_is_read(db, write_csv, attribute, monkeypatch):
    """A Django ValidationError refers to itself: with the cycle collector paused, each batch collects it."""
    import tracemalloc

    from subscribers.importing import engine

    attribute("birthday_date", "date", label="Birthday date")
    monkeypatch.setattr(engine, "BATCH_ROWS", 500)
    path = _big_file(write_csv, 12000, cell="07/14/1990")  # not a date the catalogue accepts
    tracemalloc.start()
    try:
        result = run(path, dry_run=True)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.counts["error"] == 12000
    # About 3 KB of garbage a row when nothing collects it: 36 MB here.
    assert peak < 20 * 1024 * 1024, peak


@pytest.mark.parametrize("change", ["unsubscribe", "new address"])
def test_someone_who_unsubscribes_while_the_import_runs_is_not_subscribed_again(db, write_csv, make_subscriber,
                                                                                monkeypatch, change):
    from subscribers.importing import engine

    person = make_subscriber(email="leaving@example.com", status=SubscriberStatus.PENDING)
    apply = engine._apply

    def change_then_apply(*args, **kwargs):
        if change == "unsubscribe":
            Subscriber.objects.filter(pk=person.pk).update(status=SubscriberStatus.UNSUBSCRIBED)
        else:
            Subscriber.objects.filter(pk=person.pk).update(email="moved@example.com", email_key="moved@example.com")
        return apply(*args, **kwargs)

    monkeypatch.setattr(engine, "_apply", change_then_apply)
    # (Here the change shares the import's transaction and is rolled back with it.)
    with pytest.raises(ImportFileError, match="1 person in the file unsubscribed, changed address or was deleted"):
        run(write_csv("Email,First Name\nleaving@example.com,Lea\nnew@example.com,New\n"))
    person.refresh_from_db()
    assert person.first_name != "Lea" and not ConsentRecord.objects.exists()
    assert not Subscriber.objects.filter(email_key="new@example.com").exists()


def test_an_address_erased_while_the_import_runs_is_not_added_again(db, write_csv, monkeypatch):
    """Someone who signs up and is erased during the import: the check saw nothing, the INSERT must."""
    from subscribers.importing import engine

    apply = engine._apply

    def sign_up_erase_then_apply(*args, **kwargs):
        person = Subscriber.objects.create(email="Erin@Example.com", status=SubscriberStatus.SUBSCRIBED)
        erase_subscriber(person, evidence=ConsentEvidence(method=ConsentMethod.PREFERENCE_CENTER))
        return apply(*args, **kwargs)

    monkeypatch.setattr(engine, "_apply", sign_up_erase_then_apply)
    # (Here the erasure shares the import's transaction and is rolled back with it.)
    with pytest.raises(ImportFileError, match=r"^1 address in the file was erased at the person's request while "
                                              r"the import ran, so nothing was imported\."):
        run(write_csv("Email,First Name\nkeep@example.com,Kim\nerin@example.com,Erin\n"))
    assert not Subscriber.objects.filter(email_key__in=["keep@example.com", "erin@example.com"]).exists()
    assert not ConsentRecord.objects.filter(purpose="email_marketing").exists()
