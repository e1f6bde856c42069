"""Serve the public pages: preference center, unsubscribe (RFC 8058), signup with double opt-in, privacy rights.

No login: links carry a signed random token (preferences.links), never an id
or an address, and a bad token is a friendly 404 before any query. Every form
has Django's CSRF protection except the RFC 8058 one-click POST (mail
providers send it without cookies; the token authenticates it). GETs never
change anything: link scanners fetch every link in an email. Pages are shown
in the person's language and are never cached (they carry the token).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db.models import Exists, OuterRef, Subquery
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.middleware.csrf import CsrfViewMiddleware
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods, require_POST

from preferences import actions, explain
from preferences.branding import brand
from preferences.forms import (
    EraseForm,
    PreferencesForm,
    SignupForm,
    frequency_choices,
    language_choices,
    pause_choices,
)
from preferences.links import PREFERENCE_SALT, SIGNUP_SALT, sign, unsign
from preferences.models import Signup, SubscriberPreferences, Topic, TopicSubscription
from preferences.ratelimit import client_ip, rate_limited
from subscribers.actions import ConsentEvidence
from subscribers.models import ConsentMethod, ConsentPurpose, ConsentRecord, SubscriberStatus

logger = logging.getLogger(__name__)

NO_STORE = "no-store, private, max-age=0"
PAGES = "preference-center"
SIGNUP = "signup"


# --- Helpers ---------------------------------------------------------------------


def page(
    request: HttpRequest, template: str, context: dict[str, Any] | None = None, *, status: int = 200
) -> HttpResponse:
    """Render a public page with the brand; never cached, never sending the tokenised URL as a referrer."""
    response = render(request, template, {"brand": brand(), **(context or {})}, status=status)
    response["Cache-Control"] = NO_STORE
    # same-origin, not no-referrer: the token never leaves for another site (a logo host, a link), and
    # browsers still send the Origin that Django's CSRF check needs (no-referrer makes it "null").
    response["Referrer-Policy"] = "same-origin"
    response["X-Robots-Tag"] = "noindex, nofollow"
    return response


def invalid_link(request: HttpRequest, *, expired: bool = False) -> HttpResponse:
    return page(request, "preferences/link_invalid.html", {"expired": expired}, status=404)


def too_many_requests(request: HttpRequest, *, retry_after: int) -> HttpResponse:
    if request.path.startswith(reverse("preferences:signup_api")):
        response: HttpResponse = JsonResponse(
            {"status": "rate_limited", "message": _("Too many attempts. Please try again later.")}, status=429
        )
    else:
        response = page(request, "preferences/rate_limited.html", status=429)
    response["Retry-After"] = str(retry_after)
    return response


def use_language(request: HttpRequest, code: str | None) -> str:
    """Show this response in ``code`` if the site offers it, else in the language LocaleMiddleware chose."""
    language = actions.supported_language(code) or translation.get_language() or settings.LANGUAGE_CODE
    translation.activate(language)
    request.LANGUAGE_CODE = language
    return language


def evidence(
    request: HttpRequest, *, method: str = ConsentMethod.PREFERENCE_CENTER, notice: str = ""
) -> ConsentEvidence:
    return ConsentEvidence(method=method, notice_version=notice, ip_address=client_ip(request),
                           user_agent=request.headers.get("User-Agent", "")[:500], occurred_at=timezone.now())


def load_preferences(signed: str) -> SubscriberPreferences | None:
    """Return the preferences (with the subscriber) a signed link points to, or None for a bad or dead link."""
    token = unsign(signed, salt=PREFERENCE_SALT)
    if token is None:
        return None
    latest_personalization = (
        ConsentRecord.objects.filter(subscriber_id=OuterRef("subscriber_id"), purpose=ConsentPurpose.PERSONALIZATION)
        .order_by("-occurred_at", "-id").values("granted")[:1]
    )
    try:
        prefs = (SubscriberPreferences.objects.select_related("subscriber")
                 .annotate(personalization=Subquery(latest_personalization)).get(token=token))
    except SubscriberPreferences.DoesNotExist:
        return None
    return None if prefs.subscriber.status == SubscriberStatus.ERASED else prefs


def with_preferences(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Resolve the link's token to preferences (404 page if bad) and switch to the person's language."""

    def wrapper(request: HttpRequest, token: str, *args: Any, **kwargs: Any) -> HttpResponse:
        prefs = load_preferences(token)
        if prefs is None:
            return invalid_link(request)
        use_language(request, prefs.subscriber.language)
        return view(request, prefs, token, *args, **kwargs)

    wrapper.__name__ = view.__name__
    wrapper.__doc__ = view.__doc__
    return wrapper


def mask_email(address: str) -> str:
    """Return the address with most of its local part hidden: enough to recognise, not to read out."""
    local, _sep, domain = address.rpartition("@")
    if not local:
        return address
    return f"{local[0]}•••@{domain}" if len(local) <= 3 else f"{local[:2]}•••{local[-1]}@{domain}"


def topic_list() -> list[dict[str, Any]]:
    return list(Topic.objects.filter(is_active=True).order_by("position", "name")
                .values("id", "slug", "name", "description", "default_opt_in"))


# --- Preference center -------------------------------------------------------------


def center_controls(
    *, topics: list[dict[str, Any]], values: dict[str, Any], paused_until: Any
) -> dict[str, Any]:
    """Return the preference form's controls as plain data, each with its current value checked.

    Rendered as plain HTML in the template (no widget templates): the page is
    the busiest public one, and this keeps it to a few milliseconds.
    """

    def options(name: str, choices: list[tuple[str, Any]], current: str) -> list[dict[str, Any]]:
        return [{"value": value, "label": label, "checked": str(value) == str(current),
                 "id": f"{name}-{value or 'keep'}"} for value, label in choices]

    return {
        "topics": [{**t, "checked": bool(values["topics"].get(t["id"]))} for t in topics],
        "frequency_options": options("frequency", frequency_choices(), values["frequency"]),
        "pause_options": options("pause", pause_choices(paused_until), values["pause"]),
        "language_options": options("language", language_choices(), values["language"]),
        "personalization": values["personalization"],
    }


@require_http_methods(["GET", "HEAD", "POST"])
@rate_limited(PAGES, "PREFERENCE_CENTER_RATE_LIMIT")
@with_preferences
def preference_center(request: HttpRequest, prefs: SubscriberPreferences, token: str) -> HttpResponse:
    """Show and save a person's topics, frequency, language, pause and personalization choice.

    A GET is three indexed queries: the link's preferences with the person and
    their latest personalization consent, the active topics with the person's
    subscriptions, and their latest delivery ("why am I getting this?").
    """
    subscriber = prefs.subscriber
    topics = list(
        Topic.objects.filter(is_active=True)
        .annotate(subscribed=Exists(TopicSubscription.objects.filter(
            topic=OuterRef("pk"), subscriber_id=subscriber.pk, subscribed=True)))
        .order_by("position", "name").values("id", "slug", "name", "description", "default_opt_in", "subscribed")
    )
    paused_until = prefs.paused_until if prefs.paused_until and prefs.paused_until > timezone.now() else None
    errors = False
    if request.method == "POST":
        form = PreferencesForm(request.POST, topics=topics, paused_until=paused_until)
        if form.is_valid():
            changed = actions.save_preferences(subscriber, choices=form.choices(), evidence=evidence(request))
            use_language(request, form.cleaned_data["language"])
            messages.success(request, _("Your preferences are saved.") if changed
                             else _("Nothing changed: your preferences are as they were."))
            return HttpResponseRedirect(reverse("preferences:center", args=[token]))
        errors = True  # only a forged or outdated form gets here: every control has a valid default
    values = {
        "topics": {t["id"]: t["subscribed"] for t in topics}, "frequency": prefs.frequency, "pause": "",
        "language": actions.supported_language(subscriber.language) or translation.get_language(),
        "personalization": prefs.personalization is not False,
    }
    why = explain.explain(delivery=explain.latest_delivery(subscriber.pk), status=subscriber.status,
                          confirmed_at=subscriber.confirmed_at)
    return page(request, "preferences/center.html", {
        **center_controls(topics=topics, values=values, paused_until=paused_until), "errors": errors,
        "token": token, "email": mask_email(subscriber.email), "first_name": subscriber.first_name,
        "status": subscriber.status, "paused_until": paused_until, "why": why,
    })


@require_POST
@rate_limited(PAGES, "PREFERENCE_CENTER_RATE_LIMIT")
@with_preferences
def export_data(request: HttpRequest, prefs: SubscriberPreferences, token: str) -> HttpResponse:
    """Send the person everything we hold about them as a JSON download."""
    data = actions.export_my_data(prefs.subscriber, evidence=evidence(request))
    body = json.dumps(data, ensure_ascii=False, indent=2, default=str)
    response = HttpResponse(body, content_type="application/json; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="my-data-{timezone.now():%Y-%m-%d}.json"'
    response["Cache-Control"] = NO_STORE
    return response


@require_http_methods(["GET", "HEAD", "POST"])
@rate_limited(PAGES, "PREFERENCE_CENTER_RATE_LIMIT")
@with_preferences
def erase_data(request: HttpRequest, prefs: SubscriberPreferences, token: str) -> HttpResponse:
    """Explain erasure and ask for confirmation (GET); erase the person (POST, confirmed)."""
    form = EraseForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        language = translation.get_language()
        actions.erase_my_data(prefs.subscriber, evidence=evidence(request))
        return HttpResponseRedirect(reverse("preferences:erased") + f"?lang={language}")
    return page(request, "preferences/erase.html", {"form": form, "token": token,
                                                    "email": mask_email(prefs.subscriber.email)})


@require_http_methods(["GET", "HEAD"])
def erased(request: HttpRequest) -> HttpResponse:
    use_language(request, request.GET.get("lang"))
    return page(request, "preferences/erased.html")


# --- Unsubscribe ---------------------------------------------------------------------


@csrf_exempt
@require_http_methods(["GET", "HEAD", "POST"])
@rate_limited(PAGES, "PREFERENCE_CENTER_RATE_LIMIT", methods=frozenset({"GET", "HEAD"}))
def unsubscribe(request: HttpRequest, token: str) -> HttpResponse:
    """Unsubscribe at once on an RFC 8058 one-click POST; otherwise show a page asking to confirm.

    CSRF-exempt because mail providers POST ``List-Unsubscribe=One-Click``
    from their servers without cookies; the signed token authenticates it.
    A GET (or any other POST) changes nothing.
    """
    prefs = load_preferences(token)
    if prefs is None:
        return invalid_link(request)
    use_language(request, prefs.subscriber.language)
    if request.method == "POST" and request.POST.get("List-Unsubscribe") == "One-Click":
        actions.unsubscribe(prefs.subscriber, evidence=evidence(request))
        logger.info("One-click unsubscribe of subscriber %s", prefs.subscriber_id)
        return page(request, "preferences/unsubscribed.html", {"token": token, "one_click": True})
    if prefs.subscriber.status == SubscriberStatus.UNSUBSCRIBED:
        return HttpResponseRedirect(reverse("preferences:unsubscribed", args=[token]))
    return page(request, "preferences/unsubscribe.html", {"token": token, "email": mask_email(prefs.subscriber.email)})


@require_POST
@rate_limited(PAGES, "PREFERENCE_CENTER_RATE_LIMIT")
@with_preferences
def unsubscribe_confirm(request: HttpRequest, prefs: SubscriberPreferences, token: str) -> HttpResponse:
    """Unsubscribe from the confirmation page's button (CSRF-protected)."""
    actions.unsubscribe(prefs.subscriber, evidence=evidence(request))
    return HttpResponseRedirect(reverse("preferences:unsubscribed", args=[token]))


@require_http_methods(["GET", "HEAD"])
@rate_limited(PAGES, "PREFERENCE_CENTER_RATE_LIMIT")
@with_preferences
def unsubscribed(request: HttpRequest, prefs: SubscriberPreferences, token: str) -> HttpResponse:
    """Confirm the unsubscribe and offer to undo it."""
    if prefs.subscriber.status != SubscriberStatus.UNSUBSCRIBED:
        return HttpResponseRedirect(reverse("preferences:center", args=[token]))
    return page(request, "preferences/unsubscribed.html", {"token": token, "email": mask_email(prefs.subscriber.email)})


@require_POST
@rate_limited(PAGES, "PREFERENCE_CENTER_RATE_LIMIT")
@with_preferences
def resubscribe(request: HttpRequest, prefs: SubscriberPreferences, token: str) -> HttpResponse:
    """Undo an unsubscribe (CSRF-protected); back to the preference center."""
    try:
        actions.resubscribe(prefs.subscriber, evidence=evidence(request))
    except ValidationError:
        messages.error(request, _("We can't subscribe this address again from here. Please sign up again."))
    else:
        messages.success(request, _("Welcome back! You are subscribed again."))
    return HttpResponseRedirect(reverse("preferences:center", args=[token]))


# --- Signup ------------------------------------------------------------------------------


def _csrf_passes(request: HttpRequest) -> bool:
    """Run Django's CSRF check on a view that is exempt from the middleware's automatic one."""

    def protected(request: HttpRequest) -> HttpResponse:  # a callback without csrf_exempt
        return HttpResponse()

    return CsrfViewMiddleware(protected).process_view(request, protected, (), {}) is None


def _signup_language(request: HttpRequest) -> str:
    return use_language(request, request.GET.get("lang") or request.POST.get("lang"))


def _topic_ids(topics: list[dict[str, Any]], slugs: list[str] | None) -> list[int] | None:
    if slugs is None:
        return None
    by_slug = {t["slug"]: t["id"] for t in topics}
    return [by_slug[s] for s in slugs if s in by_slug]


@csrf_exempt
@require_http_methods(["GET", "HEAD", "POST"])
@rate_limited(SIGNUP, "SIGNUP_RATE_LIMIT", methods=frozenset({"POST"}))
def signup(request: HttpRequest) -> HttpResponse:
    """Show the signup form; on a valid POST, start double opt-in and show the same answer for every address.

    Exempt from the middleware's CSRF check only to tell a cross-site POST
    (the plain-HTML embed snippet) from an attack: such a POST changes
    nothing and shows the form filled in, to be sent again from this site
    with a CSRF token.
    """
    language = _signup_language(request)
    topics = topic_list()
    if request.method == "POST":
        if not _csrf_passes(request):
            return _ask_to_confirm(request, language, topics)
        form = SignupForm(request.POST, topics=topics)
        if form.is_valid():
            if form.looks_like_a_bot():
                logger.info("Signup form: a bot-like submission was ignored")
            elif form.came_back_too_fast():
                return _ask_to_confirm(request, language, topics)
            else:
                actions.request_signup(
                    email=form.cleaned_data["email"], first_name=form.cleaned_data["first_name"], language=language,
                    topic_ids=_topic_ids(topics, form.cleaned_data["topics"]),
                    evidence=evidence(request, method=ConsentMethod.FORM, notice=settings.SIGNUP_NOTICE_VERSION),
                )
            return HttpResponseRedirect(reverse("preferences:signup_sent") + f"?lang={language}")
    else:
        form = SignupForm(initial={"lang": language}, topics=topics)
    return page(request, "preferences/signup.html", {"form": form, "languages": language_choices()})


def _ask_to_confirm(request: HttpRequest, language: str, topics: list[dict[str, Any]]) -> HttpResponse:
    """Show the posted details in the form again, to be sent once more from this page.

    For a POST from another site (the embed snippet, no CSRF token) and for a
    form sent back faster than a person types (browser autofill). Without a
    fill-time stamp, so an immediate second click counts.
    """
    initial = {"email": request.POST.get("email", "")[:254], "lang": language, "t": "",
               "first_name": request.POST.get("first_name", "")[:150]}
    if request.POST.getlist("topics"):
        initial["topics"] = request.POST.getlist("topics")
    form = SignupForm(initial=initial, topics=topics)
    return page(request, "preferences/signup.html", {"form": form, "confirm_here": True,
                                                     "languages": language_choices()})


@require_http_methods(["GET", "HEAD"])
def signup_sent(request: HttpRequest) -> HttpResponse:
    _signup_language(request)
    return page(request, "preferences/signup_sent.html")


def _cors(request: HttpRequest, response: HttpResponse) -> HttpResponse:
    origin = request.headers.get("Origin")
    allowed = settings.SIGNUP_ALLOWED_ORIGINS
    if origin and ("*" in allowed or origin in allowed):
        response["Access-Control-Allow-Origin"] = origin
        response["Access-Control-Allow-Methods"] = "GET, POST, OPTIONS"
        response["Access-Control-Allow-Headers"] = "Content-Type"
        response["Access-Control-Max-Age"] = "3600"
    response["Vary"] = "Origin"
    response["Cache-Control"] = NO_STORE
    return response


def _origin_allowed(request: HttpRequest) -> bool:
    """Allow same-origin calls, calls without Origin (servers) and the configured origins."""
    origin = request.headers.get("Origin")
    if not origin:
        return True
    allowed = settings.SIGNUP_ALLOWED_ORIGINS
    return "*" in allowed or origin in allowed or url_has_allowed_host_and_scheme(
        origin + "/", allowed_hosts={request.get_host()}, require_https=request.is_secure()
    )


@csrf_exempt
@require_http_methods(["GET", "HEAD", "POST", "OPTIONS"])
@rate_limited(SIGNUP, "SIGNUP_RATE_LIMIT", methods=frozenset({"POST"}))
def signup_api(request: HttpRequest) -> HttpResponse:
    """Take a signup as JSON (for an embedded form's script or a server); list the topics on GET.

    Not a form, so instead of a CSRF token it accepts only a JSON body (which
    a cross-site HTML form cannot send) from its own origin, a server (no
    Origin) or SIGNUP_ALLOWED_ORIGINS. The answer is the same whether or
    not the address is known.
    """
    if request.method == "OPTIONS":
        return _cors(request, HttpResponse(status=204))
    if request.method in {"GET", "HEAD"}:
        topics = [{"slug": t["slug"], "name": t["name"], "description": t["description"],
                   "default": t["default_opt_in"]} for t in topic_list()]
        return _cors(request, JsonResponse({"topics": topics}))
    if not _origin_allowed(request):
        return _cors(request, JsonResponse({"status": "forbidden", "message": "Origin not allowed."}, status=403))
    if request.content_type != "application/json":
        return _cors(request, JsonResponse({"status": "invalid", "message": "Send application/json."}, status=415))
    try:
        payload = json.loads(request.body or b"{}")
    except (ValueError, UnicodeDecodeError):
        payload = None
    if not isinstance(payload, dict):
        return _cors(request, JsonResponse({"status": "invalid", "errors": {"body": "Expected a JSON object."}},
                                           status=400))
    language = use_language(request, str(payload.get("language") or "") or None)
    email = str(payload.get("email") or "").strip()
    errors = {}
    try:
        validate_email(email)
        if len(email) > 254:
            raise ValidationError("too long")
    except ValidationError:
        errors["email"] = _("Enter a valid email address.")
    slugs = payload.get("topics")
    if slugs is not None and (not isinstance(slugs, list) or not all(isinstance(s, str) for s in slugs)):
        errors["topics"] = _("Topics must be a list of topic slugs.")
    if errors:
        return _cors(request, JsonResponse({"status": "invalid", "errors": errors}, status=400))
    if payload.get("website"):
        logger.info("Signup API: a bot-like submission was ignored")
    else:
        actions.request_signup(
            email=email, first_name=str(payload.get("first_name") or "")[:150], language=language,
            topic_ids=_topic_ids(topic_list(), slugs),
            evidence=evidence(request, method=ConsentMethod.FORM, notice=settings.SIGNUP_NOTICE_VERSION),
        )
    return _cors(request, JsonResponse({"status": "ok", "message": _(
        "Almost done: if this address can receive our emails, a confirmation link is on its way. "
        "Please check your inbox."
    )}, status=202))


def load_signup(signed: str) -> Signup | None:
    token = unsign(signed, salt=SIGNUP_SALT)
    if token is None:
        return None
    return Signup.objects.filter(token=token).first()


@require_http_methods(["GET", "HEAD", "POST"])
@rate_limited(SIGNUP, "PREFERENCE_CENTER_RATE_LIMIT")
def signup_confirm(request: HttpRequest, token: str) -> HttpResponse:
    """Ask the person to confirm (GET: a button, since scanners open links); confirm and subscribe (POST)."""
    signup_row = load_signup(token)
    if signup_row is None:
        use_language(request, request.GET.get("lang"))
        return invalid_link(request, expired=True)
    use_language(request, signup_row.language)
    if signup_row.confirmed_at is None and signup_row.expires_at <= timezone.now():
        return invalid_link(request, expired=True)
    if request.method == "POST" and signup_row.confirmed_at is None:
        try:
            subscriber = actions.confirm_signup(
                signup_row, evidence=evidence(request, method=ConsentMethod.FORM, notice=signup_row.notice_version)
            )
        except actions.SignupExpired:
            return invalid_link(request, expired=True)
        if subscriber is None:
            return invalid_link(request)
        return HttpResponseRedirect(reverse("preferences:signup_confirm", args=[token]))
    context: dict[str, Any] = {"token": token, "confirmed": signup_row.confirmed_at is not None,
                               "email": mask_email(signup_row.email)}
    if signup_row.confirmed_at and signup_row.subscriber_id:
        prefs = SubscriberPreferences.objects.filter(subscriber_id=signup_row.subscriber_id).first()
        if prefs is not None:
            context["preferences_token"] = sign(prefs.token, salt=PREFERENCE_SALT)
    return page(request, "preferences/confirm.html", context)
