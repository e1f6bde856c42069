"""Send many individually rendered messages through Postmark's batch API: one call per 500 messages.

Anymail's Postmark backend makes one API call per message (it uses
``email/batch`` only for one template sent with merge data). A campaign
renders every message for its recipient, so at 50 ms an answer the calls,
not the messages, are what costs. Postmark's ``POST /email/batch`` takes up
to 500 complete, different messages (each the body of an ``/email`` call,
50 MB in all) and answers one result per message, in order.

This backend builds each message's payload with Anymail's own payload class,
so every Anymail feature (metadata, tags, headers, attachments, reply-to,
open and click tracking, message streams, ``esp_extra``) reaches Postmark
exactly as in a single send, and posts them in groups of at most
``batch_size`` messages and ``max_batch_bytes``. Each message's
``anymail_status`` is what Anymail would have set for it alone: its answer
is read by Anymail's ``parse_recipient_status`` as the answer to a single
send (HTTP 200, or 422 with its error code).

Configure it like Anymail's: ``EMAIL_BACKEND =
"campaigns.sending.postmark.EmailBackend"`` with ``ANYMAIL =
{"POSTMARK_SERVER_TOKEN": ...}``. Django's ``send_messages`` contract for
several messages at once:

- A problem with one message (a refused recipient, an error code for it, a
  payload Anymail cannot build) does not stop the others: it is set on that
  message as ``anymail_error`` (the exception Anymail would have raised for
  it alone; ``None`` when it went out), never raised, because the rest were
  sent and raising would make a caller send them again.
- A failed call (no answer, a non-2xx HTTP status, an unreadable answer)
  raises ``AnymailAPIError`` when nothing in this ``send_messages`` call was
  accepted yet, so the caller can retry all of it; after an earlier group
  went out it is set as ``anymail_error`` on the messages of the failed
  group and every later one (not attempted).
- One message, and Postmark's bulk API (``POSTMARK_USE_BULK_API``), take
  Anymail's own path unchanged; so do template and merge-data messages
  within a batch (each its own call, as Anymail makes it).
"""

from __future__ import annotations

import datetime
import functools
import json
import re
from collections.abc import Iterator, Sequence
from typing import Any
from urllib.parse import urljoin

import requests
from anymail.backends.postmark import EmailBackend as PostmarkBackend
from anymail.backends.postmark import PostmarkPayload
from anymail.exceptions import AnymailError, AnymailRequestsAPIError
from anymail.message import AnymailRecipientStatus, AnymailStatus
from anymail.utils import CaseInsensitiveCasePreservingDict, EmailAddress, parse_address_list
from requests.cookies import RequestsCookieJar, cookiejar_from_dict
from requests.structures import CaseInsensitiveDict

# (message, Anymail's payload for it, the JSON body Anymail would post to /email)
Ready = tuple[Any, Any, str]


# A bare address whose local part is a dot-atom (RFC 5322) and whose domain is plain ASCII labels: what
# Python's header parser makes of it is exactly its two halves, so it needs no parsing.
_BARE_ADDRESS = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
                           r"@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")


@functools.lru_cache(maxsize=1024)
def _parsed(addresses: tuple[str, ...], field: str | None) -> tuple[EmailAddress, ...]:
    return tuple(parse_address_list(list(addresses), field=field))


def parse_addresses(value: Any, field: str | None = None) -> list[EmailAddress]:
    """Anymail's ``parse_address_list``, without parsing what a campaign repeats or what needs none.

    Python's e-mail header parser is most of the cost of building a
    payload. A bare ``local@domain`` address (each recipient's To) is split
    instead of parsed, and other plain strings (the From with its name, the
    reply-to: the same for every message of a send) are parsed once and
    kept. Anything else (lazy strings, ``None``) goes to Anymail as it is.
    The result is the same list of ``EmailAddress`` values either way.
    """
    if type(value) is str:
        value = [value]
    if type(value) not in (list, tuple) or not all(type(v) is str for v in value):
        return parse_address_list(value, field=field)
    if len(value) == 1 and _BARE_ADDRESS.fullmatch(value[0]):
        username, domain = value[0].rsplit("@", 1)
        return [EmailAddress(username=username, domain=domain)]
    return list(_parsed(tuple(value), field))


class BatchPayload(PostmarkPayload):
    """Anymail's Postmark payload, its addresses read through ``parse_addresses``."""

    base_message_attrs = tuple(
        (attr, combiner, functools.partial(parse_addresses, field=attr) if converter is parse_address_list
         else converter)
        for attr, combiner, converter in PostmarkPayload.base_message_attrs)


class EmailBackend(PostmarkBackend):
    """Anymail's Postmark backend, sending several messages per ``email/batch`` call."""

    #: Postmark's cap on messages per batch call; callers that can batch read it.
    batch_size = 500
    #: Postmark's cap on a batch call's body (50 MB, attachments included).
    max_batch_bytes = 50_000_000

    def send_messages(self, email_messages: Sequence[Any]) -> int:
        """Send the messages in as few batch calls as Postmark allows; return how many it accepted."""
        messages = list(email_messages or ())
        if len(messages) <= 1 or self.use_bulk_api:
            return super().send_messages(messages)
        created_session = self.open()
        try:
            return self._send_batched(messages)
        except AnymailError:
            if self.fail_silently:
                return 0
            raise
        finally:
            if created_session:
                self.close()

    def _send_batched(self, messages: list[Any]) -> int:
        sent = 0
        ready: list[Ready] = []
        for message in messages:
            message.anymail_status = AnymailStatus()
            message.anymail_error = None
            if not self.run_pre_send(message) or not message.recipients():
                continue  # cancelled by a pre_send receiver, or no one to send to: not sent, as in Anymail
            try:
                payload = self.build_message_payload(message, self.send_defaults)
                if payload.get_api_endpoint() != "email":
                    # A template or merge-data message is one of Anymail's own calls.
                    self._finish(message, payload, self.post_to_esp(payload, message))
                    sent += 1
                    continue
                ready.append((message, payload, payload.serialize_data()))
            except Exception as error:  # noqa: BLE001 - one message's problem must not stop the others
                message.anymail_error = error
        groups = list(self._groups(ready))
        for number, group in enumerate(groups):
            try:
                response, answers = self._post_batch(group)
            except AnymailError as error:
                if not sent:
                    raise  # nothing went out: the caller may safely retry the whole call
                for later in groups[number:]:
                    for message, _, _ in later:
                        message.anymail_error = error
                break
            for (message, payload, _), answer in zip(group, answers, strict=True):
                try:
                    self._finish(message, payload, _answer_as_response(response, answer), answer)
                except Exception as error:  # noqa: BLE001 - the others were sent; raising would resend them
                    message.anymail_error = error
                else:
                    sent += 1
        return sent

    def _groups(self, ready: list[Ready]) -> Iterator[list[Ready]]:
        """Yield consecutive groups within Postmark's caps that share a server token (it is per call)."""
        group: list[Ready] = []
        size = 2  # the brackets of the JSON array
        for item in ready:
            length = len(item[2]) + 1  # and its comma
            if group and (len(group) >= self.batch_size or size + length > self.max_batch_bytes
                          or item[1].server_token != group[0][1].server_token):
                yield group
                group, size = [], 2
            group.append(item)
            size += length
        if group:
            yield group

    def _post_batch(self, group: list[Ready]) -> tuple[requests.Response, list[Any]]:
        """Post one group to ``email/batch``; return the response and its answers, one per message in order."""
        payload = group[0][1]
        url = urljoin(self.api_url, "email/batch")
        # Anymail serializes with json.dumps' default ensure_ascii: the body is ASCII, its length is its size.
        body = ("[" + ",".join(item[2] for item in group) + "]").encode("ascii")
        headers = {**payload.headers, "X-Postmark-Server-Token": payload.server_token}
        try:
            response = self.session.request("POST", url, data=body, headers=headers, timeout=self.timeout)
        except requests.RequestException as err:
            # Like Anymail's post_to_esp: both an Anymail error and the original requests exception.
            exc_class = type("AnymailRequestsAPIError", (AnymailRequestsAPIError, type(err)), {})
            raise exc_class(f"Error posting to {url}:", backend=self) from err
        if not 200 <= response.status_code < 300:
            raise AnymailRequestsAPIError(response=response, backend=self)
        answers = self.deserialize_json_response(response, None, None)
        if not isinstance(answers, list) or len(answers) != len(group):
            raise AnymailRequestsAPIError(
                f"Invalid Postmark batch response: expected a list of {len(group)} results", response=response,
                backend=self)
        return response, answers

    def build_message_payload(self, message: Any, defaults: dict[str, Any]) -> BatchPayload:
        return BatchPayload(message, defaults, self)

    def _finish(self, message: Any, payload: Any, response: requests.Response, answer: Any = None) -> None:
        """Set the message's status from its answer, as Anymail's ``_send`` does after its call."""
        message.anymail_status.esp_response = response
        recipient_status = _plainly_sent(payload, answer) if answer is not None else None
        if recipient_status is None:
            recipient_status = self.parse_recipient_status(response, payload, message)
        message.anymail_status.set_recipient_status(recipient_status)
        self.run_post_send(message)  # the signal before raising for refused recipients, as Anymail does
        self.raise_for_recipient_status(message.anymail_status, response, payload, message)


def _plainly_sent(payload: Any, answer: Any) -> CaseInsensitiveCasePreservingDict | None:
    """Return what Anymail's ``parse_recipient_status`` makes of the usual answer, or None for any other.

    The usual answer: no error code, a message id, no word of inactive
    addresses or a delay, for a message to one bare address and no one else.
    Anymail would parse that address back out of the answer; it is the one
    the message was sent to, so its status is simply "sent" under the id.
    Everything else takes Anymail's own path.
    """
    if type(answer) is not dict or answer.get("ErrorCode", 0) != 0 or "PercentageCompleted" in answer:
        return None
    text, message_id, to = answer.get("Message"), answer.get("MessageID"), answer.get("To")
    if type(text) is not str or message_id is None or type(to) is not str or "delayed" in text or "inactive" in text:
        return None
    if payload.cc_and_bcc_emails or len(payload.to_emails) != 1 or not _BARE_ADDRESS.fullmatch(to):
        return None
    addr_spec = payload.to_emails[0].addr_spec
    if addr_spec.lower() != to.lower():
        return None
    return CaseInsensitiveCasePreservingDict({addr_spec: AnymailRecipientStatus(message_id=message_id, status="sent")})


class _AnswerResponse(requests.Response):
    """One message's answer in a batch, as a single send's response; its JSON body is written when first read.

    ``requests.Response.__init__``'s attributes are set here without its
    cookie jar (a lock and a dict per message), which is made when first read.
    """

    def __init__(self, answer: Any):  # noqa: D107 - no super().__init__(): see the class
        self._content: bytes | bool = False
        self._content_consumed = False
        self._next = None
        self.status_code: int | None = None  # type: ignore[assignment]
        self.headers = CaseInsensitiveDict()
        self.raw = None
        self.url: str | None = None  # type: ignore[assignment]
        self.encoding: str | None = None
        self.history: list[requests.Response] = []
        self.reason: str | None = None  # type: ignore[assignment]
        self.elapsed = datetime.timedelta(0)
        self.request = None
        self._cookies: RequestsCookieJar | None = None
        self._answer = answer

    @property
    def cookies(self) -> RequestsCookieJar:  # type: ignore[override]
        if self._cookies is None:
            self._cookies = cookiejar_from_dict({})
        return self._cookies

    @cookies.setter
    def cookies(self, jar: RequestsCookieJar) -> None:
        self._cookies = jar

    @property
    def content(self) -> bytes:  # type: ignore[override]
        if self._content is False:
            self._content = json.dumps(self._answer).encode()  # what a single send's body would be
            self._content_consumed = True
        return self._content


def _answer_as_response(batch: requests.Response, answer: Any) -> requests.Response:
    """Return one message's answer in a batch as Postmark answers a single send: HTTP 200, or 422 with an error."""
    error_code = answer.get("ErrorCode", 0) if isinstance(answer, dict) else 0
    one = _AnswerResponse(answer)
    one.status_code, one.reason = (200, "OK") if not error_code else (422, "Unprocessable Entity")
    one.encoding = "utf-8"
    one.headers = CaseInsensitiveDict({"Content-Type": "application/json"})
    one.url, one.request, one.elapsed = batch.url, batch.request, batch.elapsed
    return one
