"""Post real ESP payload shapes to the mounted Anymail webhooks, with and without the right credentials.

Payloads follow each ESP's documented webhook format (and django-anymail's
own webhook tests). Amazon SES: Anymail 15.2 does not verify SNS message
signatures, so nothing is mocked; the SNS headers and WEBHOOK_SECRET basic
auth are what the view checks.
"""

import datetime as dt
import hashlib
import hmac
import json

import pytest
from django.db import connection
from django.urls import reverse

from campaigns.models import Delivery, DeliveryEvent, DeliveryStatus, EventKind, MessageStats
from subscribers.models import Subscriber, SubscriberStatus

from .conftest import MAILGUN_SIGNING_KEY, WEBHOOK_SECRET, basic_auth

pytestmark = [
    pytest.mark.usefixtures("webhook_settings"),
    pytest.mark.filterwarnings("ignore::anymail.exceptions.AnymailNotSupportedWarning"),
]

# 2026-03-02 10:00:00 UTC, an hour after conftest.SENT_AT.
TS = 1772445600
HUMAN_UA = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4"


def reload(obj):
    obj.refresh_from_db()
    return obj


def test_tracking_webhooks_are_mounted_per_esp():
    assert reverse("anymail:sendgrid_tracking_webhook") == "/anymail/sendgrid/tracking/"
    assert reverse("anymail:mailgun_tracking_webhook") == "/anymail/mailgun/tracking/"
    assert reverse("anymail:postmark_tracking_webhook") == "/anymail/postmark/tracking/"
    assert reverse("anymail:amazon_ses_tracking_webhook") == "/anymail/amazon_ses/tracking/"
    assert reverse("anymail:brevo_tracking_webhook") == "/anymail/brevo/tracking/"


# --- SendGrid: a JSON array of events per post ----------------------------------------------------


def sendgrid_events(delivery, anymail_id):
    base = {"email": delivery.subscriber.email, "anymail_id": anymail_id, "delivery_id": str(delivery.pk),
            "smtp-id": "<wrfRRvF7Q0GgwUo2CvDmEA@ismtpd0006p1sjc2.sendgrid.net>",
            "sg_message_id": "wrfRRvF7Q0GgwUo2CvDmEA.filter0425p1mdw1.13037.57168B4A1D.0", "category": ["spring"]}
    return [
        {**base, "event": "processed", "timestamp": TS - 3, "sg_event_id": "sg-processed"},
        {**base, "event": "delivered", "timestamp": TS - 1, "sg_event_id": "sg-delivered", "ip": "167.89.17.173",
         "response": "250 2.0.0 OK 1461095248 m143si2210036ioe.159 - gsmtp ", "tls": 1},
        # Apple Mail Privacy Protection fetching the pixel on delivery; SendGrid flags it.
        {**base, "event": "open", "timestamp": TS, "sg_event_id": "sg-open-mpp", "useragent": "Mozilla/5.0",
         "ip": "17.58.100.1", "sg_machine_open": True},
        {**base, "event": "open", "timestamp": TS + 3600, "sg_event_id": "sg-open", "useragent": HUMAN_UA,
         "ip": "66.102.6.229", "sg_machine_open": False},
        {**base, "event": "click", "timestamp": TS + 3700, "sg_event_id": "sg-click", "useragent": HUMAN_UA,
         "ip": "24.130.34.103", "url": "https://shop.example.com/sale", "url_offset": {"index": 0, "type": "html"}},
    ]


def post_sendgrid(client, events, **auth):
    return client.post("/anymail/sendgrid/tracking/", data=json.dumps(events), content_type="application/json",
                       **(auth or basic_auth()))


def test_sendgrid_batch_records_delivery_opens_and_click(client, make_delivery):
    delivery = make_delivery(esp_name="SendGrid", esp_message_id="3c2f4df8-c6dd-4cd2-9b91-6582b81a0349")
    response = post_sendgrid(client, sendgrid_events(delivery, "3c2f4df8-c6dd-4cd2-9b91-6582b81a0349"))
    assert response.status_code == 200
    delivery = reload(delivery)
    assert delivery.status == DeliveryStatus.CLICKED
    assert delivery.delivered_at == dt.datetime.fromtimestamp(TS - 1, tz=dt.UTC)
    assert (delivery.open_count, delivery.machine_open_count, delivery.click_count) == (2, 1, 1)
    assert delivery.first_opened_at == dt.datetime.fromtimestamp(TS + 3600, tz=dt.UTC)
    kinds = list(delivery.events.values_list("kind", "is_machine"))
    assert kinds == [("sent", False), ("delivered", False), ("opened", True), ("opened", False), ("clicked", False)]
    assert delivery.events.get(kind="clicked").url == "https://shop.example.com/sale"
    person = reload(delivery.subscriber)
    assert person.emails_received == 1
    assert person.last_click_at == dt.datetime.fromtimestamp(TS + 3700, tz=dt.UTC)
    stats = MessageStats.objects.get(message_key="campaign:1")
    assert (stats.sent, stats.delivered, stats.opens, stats.human_opens, stats.unique_opens, stats.clicks) == (
        1, 1, 2, 1, 1, 1)


def test_sendgrid_retried_post_is_recorded_once(client, make_delivery):
    delivery = make_delivery(esp_message_id="a-1")
    events = sendgrid_events(delivery, "a-1")
    assert post_sendgrid(client, events).status_code == 200
    assert post_sendgrid(client, events).status_code == 200
    assert DeliveryEvent.objects.count() == 5
    assert reload(delivery).open_count == 2
    assert MessageStats.objects.get(message_key="campaign:1").opens == 2


def test_sendgrid_bounce_dropped_spamreport_and_unsubscribe(client, make_subscriber, make_delivery):
    bounced, blocked, dropped, spam, unsub = (make_delivery(message_key=f"campaign:{n}") for n in range(2, 7))
    common = {"timestamp": TS, "smtp-id": "<x@ismtpd.sendgrid.net>"}
    events = [
        {**common, "event": "bounce", "type": "bounce", "status": "5.1.1", "email": bounced.subscriber.email,
         "reason": "550 5.1.1 The email account that you tried to reach does not exist.",
         "sg_event_id": "b1", "anymail_id": bounced.esp_message_id},
        {**common, "event": "bounce", "type": "blocked", "status": "4.0.0", "email": blocked.subscriber.email,
         "reason": "421 4.7.0 Try again later", "sg_event_id": "b2", "anymail_id": blocked.esp_message_id},
        {**common, "event": "dropped", "reason": "Invalid", "email": dropped.subscriber.email,
         "sg_event_id": "d1", "anymail_id": dropped.esp_message_id},
        {**common, "event": "spamreport", "email": spam.subscriber.email, "sg_event_id": "s1",
         "anymail_id": spam.esp_message_id},
        {**common, "event": "unsubscribe", "email": unsub.subscriber.email, "sg_event_id": "u1",
         "anymail_id": unsub.esp_message_id},
    ]
    assert post_sendgrid(client, events).status_code == 200
    assert (reload(bounced).status, bounced.bounce_type) == ("bounced", "hard")
    assert "does not exist" in bounced.reason
    assert (reload(blocked).status, blocked.bounce_type) == ("soft_bounced", "soft")
    assert reload(dropped).status == "rejected"
    assert reload(spam).status == "complained"
    assert reload(unsub).status == "unsubscribed"
    statuses = {d.pk: reload(d.subscriber).status for d in (bounced, blocked, dropped, spam, unsub)}
    assert statuses == {bounced.pk: "bounced", blocked.pk: "subscribed", dropped.pk: "subscribed",
                        spam.pk: "complained", unsub.pk: "unsubscribed"}


@pytest.mark.parametrize("auth", [{}, basic_auth("esp-user:wrong"), basic_auth("someone:" + WEBHOOK_SECRET)])
def test_sendgrid_refuses_missing_or_wrong_basic_auth(client, make_delivery, auth):
    delivery = make_delivery(esp_message_id="a-1")
    response = client.post("/anymail/sendgrid/tracking/", data=json.dumps(sendgrid_events(delivery, "a-1")),
                           content_type="application/json", **auth)
    assert response.status_code == 400
    assert not DeliveryEvent.objects.exists() and reload(delivery).status == "sent"


def test_unknown_messages_are_accepted_and_counted(client, db):
    events = [{"email": "stranger@example.com", "timestamp": TS, "event": "delivered", "sg_event_id": "x1",
               "anymail_id": "not-ours"},
              {"email": "stranger@example.com", "timestamp": TS, "event": "open", "sg_event_id": "x2",
               "anymail_id": "not-ours", "useragent": HUMAN_UA}]
    assert post_sendgrid(client, events).status_code == 200
    stats = MessageStats.objects.get(message_key="unmatched:sendgrid")
    assert (stats.delivered, stats.opens) == (1, 1)


def test_a_whole_post_is_one_batch(client, make_delivery, django_assert_max_num_queries):
    deliveries = [make_delivery(message_key="campaign:7") for _ in range(30)]
    events = [{"email": d.subscriber.email, "timestamp": TS, "event": "delivered", "sg_event_id": f"d{d.pk}",
               "anymail_id": d.esp_message_id, "delivery_id": str(d.pk)} for d in deliveries]
    # PostgreSQL writes all deliveries in one UPDATE; SQLite one UPDATE per delivery.
    per_delivery = 1 if connection.vendor == "postgresql" else 2
    with django_assert_max_num_queries(12 + per_delivery * 30):
        assert post_sendgrid(client, events).status_code == 200
    assert MessageStats.objects.get(message_key="campaign:7").delivered == 30


# --- Mailgun: webhooks v2, one JSON event per post with a signature block --------------------------


def mailgun_post(client, event_data, *, key=MAILGUN_SIGNING_KEY, token="a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5"):
    timestamp = str(int(event_data["timestamp"]))
    signature = hmac.new(key.encode(), f"{timestamp}{token}".encode(), hashlib.sha256).hexdigest()
    payload = {"signature": {"timestamp": timestamp, "token": token, "signature": signature},
               "event-data": event_data}
    return client.post("/anymail/mailgun/tracking/", data=json.dumps(payload), content_type="application/json",
                       **basic_auth())


def mailgun_event(delivery, event, **extra):
    return {
        "event": event, "timestamp": TS + 0.153125, "id": "hTWCTD81RtiDN-x", "recipient": delivery.subscriber.email,
        "recipient-domain": "example.com", "tags": ["spring"], "user-variables": {"delivery_id": str(delivery.pk)},
        "log-level": "info", "flags": {"is-routed": False, "is-authenticated": True, "is-test-mode": False},
        "message": {"headers": {"to": delivery.subscriber.email, "from": "shop@mg.example.org", "subject": "Spring",
                                "message-id": "20260302090000.1.DF5966851B4BAA99@mg.example.org"}},
        **extra,
    }


def test_mailgun_delivered_opened_clicked(client, make_delivery):
    delivery = make_delivery(esp_name="Mailgun", esp_message_id="<20260302090000.1.DF5966851B4BAA99@mg.example.org>")
    assert mailgun_post(client, mailgun_event(delivery, "delivered", **{"delivery-status": {
        "tls": True, "mx-host": "smtp-in.example.com", "attempt-no": 1, "description": "", "code": 250,
        "message": "OK"}}), token="tok-delivered").status_code == 200
    apple = {"client-name": "unknown", "client-type": "unknown", "user-agent": "Mozilla/5.0",
             "device-type": "unknown", "client-os": "unknown", "bot": "apple"}
    assert mailgun_post(client, mailgun_event(delivery, "opened", ip="17.58.1.1", **{"client-info": apple},
                                              timestamp=TS + 7200.5), token="tok-open-bot").status_code == 200
    person = {"client-type": "browser", "client-os": "OS X", "device-type": "desktop", "client-name": "Chrome",
              "user-agent": HUMAN_UA, "bot": ""}
    assert mailgun_post(client, mailgun_event(delivery, "clicked", ip="203.0.113.7", url="https://example.com/a",
                                              timestamp=TS + 7300.25, **{"client-info": person}),
                        token="tok-click").status_code == 200
    delivery = reload(delivery)
    assert (delivery.status, delivery.machine_open_count, delivery.click_count) == ("clicked", 1, 1)
    assert delivery.delivered_at is not None and delivery.first_opened_at is None
    click = delivery.events.get(kind="clicked")
    assert (click.url, click.ip_address, click.user_agent, click.esp_event_id) == (
        "https://example.com/a", "203.0.113.7", HUMAN_UA, "tok-click")


def test_mailgun_permanent_failure_suppresses_and_temporary_is_deferred(client, make_delivery):
    delivery = make_delivery(esp_name="Mailgun")
    status = {"attempt-no": 1, "code": 498, "message": "No MX for nomx.example.com",
              "description": "No MX for nomx.example.com", "retry-seconds": 1800}
    assert mailgun_post(client, mailgun_event(delivery, "failed", severity="temporary", reason="generic",
                                              **{"delivery-status": status}), token="t1").status_code == 200
    assert (reload(delivery).status, delivery.reason) == ("sent", "No MX for nomx.example.com — No MX for "
                                                                   "nomx.example.com")
    assert delivery.events.get().kind == EventKind.DEFERRED
    status = {"code": 550, "message": "5.1.1 The email account that you tried to reach does not exist.",
              "description": ""}
    assert mailgun_post(client, mailgun_event(delivery, "failed", severity="permanent", reason="bounce",
                                              **{"delivery-status": status}), token="t2").status_code == 200
    assert (reload(delivery).status, delivery.bounce_type) == ("bounced", "hard")
    assert reload(delivery.subscriber).status == SubscriberStatus.BOUNCED


def test_mailgun_complaint(client, make_delivery):
    delivery = make_delivery(esp_name="Mailgun")
    assert mailgun_post(client, mailgun_event(delivery, "complained"), token="t3").status_code == 200
    assert reload(delivery.subscriber).status == SubscriberStatus.COMPLAINED


def test_mailgun_refuses_a_wrong_signature_or_basic_auth(client, make_delivery):
    delivery = make_delivery(esp_name="Mailgun")
    assert mailgun_post(client, mailgun_event(delivery, "complained"), key="not-the-key").status_code == 400
    payload = {"signature": {"timestamp": str(TS), "token": "t", "signature": "0" * 64},
               "event-data": mailgun_event(delivery, "complained")}
    assert client.post("/anymail/mailgun/tracking/", data=json.dumps(payload), content_type="application/json",
                       **basic_auth()).status_code == 400
    assert reload(delivery.subscriber).status == SubscriberStatus.SUBSCRIBED
    assert not DeliveryEvent.objects.exists()


# --- Postmark: one JSON record per post ------------------------------------------------------------


def post_postmark(client, record, **auth):
    return client.post("/anymail/postmark/tracking/", data=json.dumps(record), content_type="application/json",
                       **(auth or basic_auth()))


def test_postmark_delivery_open_click_are_deduplicated_without_event_ids(client, make_delivery):
    delivery = make_delivery(esp_name="Postmark", esp_message_id="883953f4-6105-42a2-a16a-77a8eac79483")
    common = {"MessageID": "883953f4-6105-42a2-a16a-77a8eac79483", "Recipient": delivery.subscriber.email,
              "Tag": "spring", "Metadata": {"delivery_id": str(delivery.pk)}, "MessageStream": "broadcast"}
    records = [
        {**common, "RecordType": "Delivery", "ServerID": 23, "DeliveredAt": "2026-03-02T10:00:00.2735393Z",
         "Details": "Test delivery webhook details"},
        {**common, "RecordType": "Open", "FirstOpen": True, "Client": {"Name": "Chrome", "Company": "Google",
                                                                        "Family": "Chrome"},
         "OS": {"Name": "OS X", "Company": "Apple", "Family": "OS X"}, "Platform": "Desktop",
         "UserAgent": HUMAN_UA, "ReadSeconds": 5, "Geo": {"IP": "198.51.100.1", "Country": "Latvia"},
         "ReceivedAt": "2026-03-02T11:21:41.2493688Z"},
        {**common, "RecordType": "Click", "ClickLocation": "HTML", "Platform": "Desktop", "UserAgent": HUMAN_UA,
         "OriginalLink": "https://example.com/click/me", "Geo": {"IP": "198.51.100.1"},
         "ReceivedAt": "2026-03-02T11:22:11.9065619Z"},
    ]
    for record in records + records:  # Postmark retries carry no event id
        assert post_postmark(client, record).status_code == 200
    delivery = reload(delivery)
    assert (delivery.status, delivery.open_count, delivery.click_count) == ("clicked", 1, 1)
    assert DeliveryEvent.objects.count() == 3
    assert delivery.events.get(kind="opened").ip_address == "198.51.100.1"
    assert reload(delivery.subscriber).emails_received == 1


def test_postmark_hard_bounce_suppresses_soft_bounce_does_not(client, make_delivery):
    hard = make_delivery(esp_name="Postmark", esp_message_id="2706ee8a-737c-4285-b032-ccd317af53ed")
    soft = make_delivery(esp_name="Postmark", esp_message_id="b4cb783d-78ed-43f2-983b-63f55c712dc8",
                         message_key="campaign:2")
    bounce = {"RecordType": "Bounce", "TypeCode": 1, "ServerID": 23, "From": "shop@example.com",
              "BouncedAt": "2026-03-02T10:28:50.3963933Z", "DumpAvailable": True, "Inactive": True,
              "CanActivate": True, "Subject": "Spring sale", "Content": "..."}
    assert post_postmark(client, {**bounce, "ID": 901542550, "Type": "HardBounce", "Name": "Hard bounce",
                                  "MessageID": hard.esp_message_id, "Email": hard.subscriber.email,
                                  "Description": "The server was unable to deliver your message.",
                                  "Details": "smtp;550 5.1.1 The email account does not exist."}).status_code == 200
    assert post_postmark(client, {**bounce, "ID": 901542551, "Type": "SoftBounce", "TypeCode": 4096,
                                  "Name": "Soft bounce", "MessageID": soft.esp_message_id,
                                  "Email": soft.subscriber.email, "Inactive": False,
                                  "Description": "Mailbox full"}).status_code == 200
    assert (reload(hard).status, reload(hard.subscriber).status) == ("bounced", "bounced")
    assert (reload(soft).status, reload(soft.subscriber).status) == ("soft_bounced", "subscribed")


def test_postmark_spam_complaint_and_subscription_change(client, make_delivery):
    spam = make_delivery(esp_name="Postmark", esp_message_id="pm-spam")
    unsub = make_delivery(esp_name="Postmark", esp_message_id="pm-unsub", message_key="campaign:2")
    assert post_postmark(client, {
        "RecordType": "SpamComplaint", "ID": 42, "Type": "SpamComplaint", "TypeCode": 512, "Name": "Spam complaint",
        "Tag": "spring", "MessageID": "pm-spam", "ServerID": 1234, "Description": "",
        "Details": "Test spam complaint details", "Email": spam.subscriber.email, "From": "shop@example.com",
        "BouncedAt": "2026-03-02T12:00:00Z", "DumpAvailable": True, "Inactive": True, "CanActivate": False,
    }).status_code == 200
    assert post_postmark(client, {
        "RecordType": "SubscriptionChange", "MessageID": "pm-unsub", "ServerID": 23, "MessageStream": "broadcast",
        "ChangedAt": "2026-03-02T17:17:32Z", "Recipient": unsub.subscriber.email, "Origin": "Recipient",
        "SuppressSending": True, "SuppressionReason": "ManualSuppression", "Tag": "spring", "Metadata": {},
    }).status_code == 200
    assert reload(spam.subscriber).status == SubscriberStatus.COMPLAINED
    assert reload(unsub.subscriber).status == SubscriberStatus.UNSUBSCRIBED


def test_postmark_refuses_wrong_basic_auth(client, make_delivery):
    delivery = make_delivery(esp_name="Postmark", esp_message_id="pm-1")
    record = {"RecordType": "SpamComplaint", "Type": "SpamComplaint", "MessageID": "pm-1", "ID": 1,
              "Email": delivery.subscriber.email, "BouncedAt": "2026-03-02T12:00:00Z"}
    assert post_postmark(client, record, **basic_auth("esp-user:guess")).status_code == 400
    assert reload(delivery.subscriber).status == SubscriberStatus.SUBSCRIBED


# --- Amazon SES: SES event publishing JSON inside an SNS notification -------------------------------


def sns_notification(ses_event, message_id="19ba9823-d7f2-53c1-860e-cb10e0d13dfc"):
    return {
        "Type": "Notification", "MessageId": message_id,
        "TopicArn": "arn:aws:sns:eu-west-1:123456789012:ses-events",
        "Subject": "Amazon SES Email Event Notification", "Message": json.dumps(ses_event) + "\n",
        "Timestamp": "2026-03-02T18:58:59.675Z", "SignatureVersion": "1", "Signature": "EXAMPLE==",
        "SigningCertURL": "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-abc.pem",
        "UnsubscribeURL": "https://sns.eu-west-1.amazonaws.com/?Action=Unsubscribe&SubscriptionArn=arn...",
    }


def post_ses(client, sns_message, auth=None):
    return client.post("/anymail/amazon_ses/tracking/", data=json.dumps(sns_message),
                       content_type="text/plain; charset=UTF-8",  # SNS posts JSON as text/plain
                       HTTP_X_AMZ_SNS_MESSAGE_ID=sns_message["MessageId"],
                       HTTP_X_AMZ_SNS_MESSAGE_TYPE=sns_message["Type"], **(basic_auth() if auth is None else auth))


def ses_mail(delivery, message_id):
    return {"timestamp": "2026-03-02T09:00:00.237Z", "source": "shop@example.com",
            "sourceArn": "arn:aws:ses:eu-west-1:123456789012:identity/example.com",
            "sendingAccountId": "123456789012", "messageId": message_id,
            "destination": [delivery.subscriber.email], "headersTruncated": False,
            "headers": [{"name": "From", "value": "shop@example.com"},
                        {"name": "To", "value": delivery.subscriber.email},
                        {"name": "X-Metadata", "value": json.dumps({"delivery_id": str(delivery.pk)})}],
            "tags": {"ses:configuration-set": ["marketing"]}}


def test_ses_delivery_open_click(client, make_delivery):
    mid = "010201773a8b2c3d-aaaa-bbbb-cccc-0123456789ab-000000"
    delivery = make_delivery(esp_name="Amazon SES", esp_message_id=mid)
    mail = ses_mail(delivery, mid)
    events = [
        {"eventType": "Delivery", "mail": mail, "delivery": {
            "timestamp": "2026-03-02T09:00:01.000Z", "processingTimeMillis": 546, "recipients": [
                delivery.subscriber.email], "smtpResponse": "250 ok: Message 64111812 accepted",
            "reportingMTA": "a8-70.smtp-out.amazonses.com"}},
        {"eventType": "Open", "mail": mail, "open": {"ipAddress": "192.0.2.1", "timestamp": "2026-03-02T09:00:02.000Z",
                                                     "userAgent": HUMAN_UA}},
        {"eventType": "Open", "mail": mail, "open": {"ipAddress": "192.0.2.1", "timestamp": "2026-03-02T12:00:00.000Z",
                                                     "userAgent": HUMAN_UA}},
        {"eventType": "Click", "mail": mail, "click": {"ipAddress": "192.0.2.1",
                                                       "timestamp": "2026-03-02T12:00:09.000Z",
                                                       "userAgent": HUMAN_UA, "link": "https://example.com/x",
                                                       "linkTags": {"campaign": ["spring"]}}},
    ]
    for n, ses_event in enumerate(events):
        assert post_ses(client, sns_notification(ses_event, message_id=f"sns-{n}")).status_code == 200
    delivery = reload(delivery)
    # The first open came a second after delivery (SES's own timestamps, not SNS's): a machine.
    assert (delivery.status, delivery.open_count, delivery.machine_open_count) == ("clicked", 2, 1)
    assert delivery.first_opened_at == dt.datetime(2026, 3, 2, 12, 0, tzinfo=dt.UTC)
    assert delivery.events.get(kind="clicked").url == "https://example.com/x"


def test_ses_permanent_bounce_and_complaint_by_message_id(client, make_delivery):
    bounced = make_delivery(esp_name="Amazon SES", esp_message_id="ses-bounce")
    complained = make_delivery(esp_name="Amazon SES", esp_message_id="ses-complaint", message_key="campaign:2")
    bounce = {"notificationType": "Bounce", "mail": {**ses_mail(bounced, "ses-bounce"), "headers": []},
              "bounce": {"bounceType": "Permanent", "bounceSubType": "General", "reportingMTA": "dns; example.com",
                         "bouncedRecipients": [{"emailAddress": bounced.subscriber.email, "status": "5.1.1",
                                                "action": "failed",
                                                "diagnosticCode": "smtp; 550 5.1.1 User unknown"}],
                         "timestamp": "2026-03-02T09:00:44.101Z",
                         "feedbackId": "00000138111222aa-44455566-cccc-cccc-cccc-ddddaaaa068a-000000"}}
    complaint = {"notificationType": "Complaint", "mail": {**ses_mail(complained, "ses-complaint"), "headers": []},
                 "complaint": {"userAgent": "AnyCompany Feedback Loop (V0.01)", "complaintFeedbackType": "abuse",
                               "complainedRecipients": [{"emailAddress": complained.subscriber.email}],
                               "timestamp": "2026-03-02T10:00:00.000Z", "feedbackId": "f-1"}}
    assert post_ses(client, sns_notification(bounce, "sns-b")).status_code == 200
    assert post_ses(client, sns_notification(complaint, "sns-c")).status_code == 200
    assert (reload(bounced).status, reload(bounced.subscriber).status) == ("bounced", "bounced")
    assert "User unknown" in bounced.reason
    assert (reload(complained).status, reload(complained.subscriber).status) == ("complained", "complained")


def test_ses_transient_bounce_is_soft(client, make_delivery):
    delivery = make_delivery(esp_name="Amazon SES", esp_message_id="ses-soft")
    bounce = {"notificationType": "Bounce", "mail": ses_mail(delivery, "ses-soft"),
              "bounce": {"bounceType": "Transient", "bounceSubType": "MailboxFull",
                         "bouncedRecipients": [{"emailAddress": delivery.subscriber.email}]}}
    assert post_ses(client, sns_notification(bounce)).status_code == 200
    assert (reload(delivery).status, reload(delivery.subscriber).status) == ("soft_bounced", "subscribed")


def test_ses_asks_for_basic_auth_and_refuses_a_wrong_one(client, make_delivery):
    delivery = make_delivery(esp_name="Amazon SES", esp_message_id="ses-c")
    complaint = {"notificationType": "Complaint", "mail": ses_mail(delivery, "ses-c"),
                 "complaint": {"complainedRecipients": [{"emailAddress": delivery.subscriber.email}]}}
    missing = post_ses(client, sns_notification(complaint), auth={})
    assert missing.status_code == 401 and missing["WWW-Authenticate"].startswith("Basic")
    assert post_ses(client, sns_notification(complaint), auth=basic_auth("esp-user:nope")).status_code == 400
    mismatched = sns_notification(complaint)
    response = client.post("/anymail/amazon_ses/tracking/", data=json.dumps(mismatched),
                           content_type="text/plain; charset=UTF-8", HTTP_X_AMZ_SNS_MESSAGE_ID="other-id",
                           HTTP_X_AMZ_SNS_MESSAGE_TYPE="Notification", **basic_auth())
    assert response.status_code == 400
    assert reload(delivery.subscriber).status == SubscriberStatus.SUBSCRIBED


def test_ses_subscription_confirmation_without_boto3_is_logged(client, db, caplog):
    confirmation = {"Type": "SubscriptionConfirmation", "MessageId": "165545c9-2a5c-472c-8df2-7ff2be2b3b1b",
                    "Token": "2336412f37fb687f5d51e6e241d09c805a5a57b30d712f794cc5f6a988666d92768dd60a747ba6f3beb71854e"
                             "285d6ad02428b09ceece29417f1f02d609c582afbacc99c583a916b9981dd2728f4ae6fdb82efd087cc3b7849e05"
                             "798d2d2785c03b0879594eeac82c01f235d0e717736",
                    "TopicArn": "arn:aws:sns:eu-west-1:123456789012:ses-events",
                    "Message": "You have chosen to subscribe to the topic "
                               "arn:aws:sns:eu-west-1:123456789012:ses-events.",
                    "SubscribeURL": "https://sns.eu-west-1.amazonaws.com/?Action=ConfirmSubscription&Token=2336",
                    "Timestamp": "2026-03-02T09:00:00.000Z", "SignatureVersion": "1", "Signature": "EXAMPLE=="}
    assert post_ses(client, confirmation).status_code == 200
    assert "Confirm it in the SNS console" in caplog.text


# --- The receiver outside a webhook post ------------------------------------------------------------


def test_tracking_signal_outside_a_post_is_recorded_at_once(make_delivery):
    from anymail.signals import AnymailTrackingEvent, tracking

    delivery = make_delivery(esp_name="Resend", esp_message_id="re-1")
    tracking.send(sender=object, esp_name="Resend", event=AnymailTrackingEvent(
        event_type="delivered", timestamp=dt.datetime(2026, 3, 2, 10, tzinfo=dt.UTC), event_id="re-evt-1",
        message_id="re-1", recipient=delivery.subscriber.email, esp_event={}))
    assert reload(delivery).status == DeliveryStatus.DELIVERED


def test_an_unreadable_event_is_logged_and_skipped(make_delivery, caplog):
    from anymail.signals import tracking

    tracking.send(sender=object, esp_name="Resend", event=object())
    assert "Could not read a Resend tracking event" in caplog.text
    assert not DeliveryEvent.objects.exists()


def test_deliveries_survive_only_with_their_person(make_delivery):
    delivery = make_delivery()
    Subscriber.objects.filter(pk=delivery.subscriber_id).delete()
    assert not Delivery.objects.exists()
