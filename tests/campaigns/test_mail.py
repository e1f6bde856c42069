from django.core.mail import EmailMultiAlternatives, get_connection

from campaigns.models import CapturedEmail


def test_capture_backend_keeps_text_html_and_headers(db):
    message = EmailMultiAlternatives("Hello", "Plain text", "shop@example.com", ["ann@example.com"],
                                     headers={"List-Unsubscribe": "<https://example.com/u>"})
    message.attach_alternative("<p>Hello <b>Ann</b></p>", "text/html")
    sent = get_connection("campaigns.mail.CaptureEmailBackend").send_messages([message])
    assert sent == 1
    captured = CapturedEmail.objects.get()
    assert (captured.subject, captured.to, captured.text_body) == ("Hello", "ann@example.com", "Plain text")
    assert captured.html_body == "<p>Hello <b>Ann</b></p>"
    assert captured.headers["List-Unsubscribe"] == "<https://example.com/u>"


def test_captured_mail_is_viewable_in_admin(admin_client, db):
    CapturedEmail.objects.create(from_email="a@example.com", to="b@example.com", subject="Welcome",
                                 html_body="<h1>Hi</h1>")
    captured = CapturedEmail.objects.get()
    page = admin_client.get(f"/admin/campaigns/capturedemail/{captured.pk}/change/").content.decode()
    assert "Welcome" in page and "sandbox" in page and "&lt;h1&gt;Hi&lt;/h1&gt;" in page
