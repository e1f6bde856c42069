"""The journeys every installation starts with, and their emails (created by a data migration, then editable).

All six start as drafts with no topic: a manager reads the description,
checks the emails (sender, coupon codes, links), picks the topic the emails
belong to and turns the journey on. ``create_prebuilt_journeys`` takes the
model classes, so the data migration can pass its historical models; it
creates only what is missing and never changes what a marketer edited.

Copy rules: every merge tag has a fallback or an ``{% if %}`` around it;
the default layout adds the footer with the unsubscribe and preference
links; buttons to the shop appear only when ``BRAND_WEBSITE_URL`` is set;
notes for the marketer are ``{% comment %}`` blocks, never sent.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

# --- Emails -----------------------------------------------------------------------------------

HELLO = '<p>Hi {{ first_name|default:"there" }},</p>\n'
SHOP_BUTTON = ('{% if brand.website_url %}<p><a class="button" href="{{ brand.website_url }}">{label}</a></p>'
               '{% endif %}\n')


def _button(label: str) -> str:
    return SHOP_BUTTON.replace("{label}", label)


# Lists the products of the event that started the journey (Checkout Started, Order Completed).
# A list rather than a table: it reads as well in the plain-text part as in the HTML.
TRIGGER_PRODUCTS = """{% if trigger.properties.products %}
<ul>
{% for product in trigger.properties.products %}
  <li>{{ product.name|default:"An item" }}{% if product.quantity > 1 %} × {{ product.quantity }}{% endif %}\
{% if product.price %} · {{ product.price|money:trigger.properties.currency }}{% endif %}</li>
{% endfor %}
</ul>
{% endif %}
"""

RECOMMENDATIONS = """{% recommendations 3 %}
<p>{% if product.url %}<a href="{{ product.url }}">{{ product.name|default:"Take a look" }}</a>\
{% else %}{{ product.name|default:"Take a look" }}{% endif %}\
{% if product.price %} · {{ product.price|money }}{% endif %}</p>
{% empty %}
<p>Have a look at what's new in the shop; there is something new most weeks.</p>
{% endrecommendations %}
"""


def _coupon_note(code: str) -> str:
    return ("{% comment %}Before turning the journey on: create the code " + code + " in your shop (or replace "
            "it here with your own), and make the amount and any end date below match it.{% endcomment %}\n")


EMAILS: dict[str, dict[str, str]] = {
    "welcome-1": {
        "name": "Welcome 1: Thanks for subscribing",
        "subject": 'Welcome to {{ brand.name|default:"our shop" }}',
        "preheader": "Thanks for subscribing. Here is what to expect.",
        "html": HELLO + """<p>Thanks for subscribing to {{ brand.name|default:"our newsletter" }}. We're glad you're
here.</p>
<p>From now on you'll hear from us about the things you chose when you signed up: new arrivals, offers and the
odd useful tip. No more than that, and you can change it any time.</p>
<p>Over the next few days we'll send two more short emails to help you find your way around.</p>
""" + _button("Visit the shop") + """<p>Thanks again,<br>The {{ brand.name|default:"shop" }} team</p>
""",
    },
    "welcome-2": {
        "name": "Welcome 2: Things worth knowing",
        "subject": "A few things worth knowing",
        "preheader": "Delivery, returns and choosing what we send you.",
        "html": HELLO + """{% comment %}Check these points against your shop's real delivery and returns terms before
turning the journey on.{% endcomment %}
<p>A few things our customers like to know early on:</p>
<ul>
  <li><strong>Delivery and returns.</strong> You'll find the details for your country on our website before you
  check out.</li>
  <li><strong>Questions?</strong> Reply to this email and we'll get back to you.</li>
  <li><strong>Your choice.</strong> Pick the topics you care about, or how often you hear from us, on
  <a href="{{ preferences_url }}">your preferences page</a>.</li>
</ul>
""" + _button("Browse the shop"),
    },
    "welcome-3": {
        "name": "Welcome 3: Popular picks",
        "subject": "Popular with our customers right now",
        "preheader": "A few favourites to start with.",
        "html": HELLO + """<p>If you're not sure where to start, these are popular in the shop at the moment:</p>
""" + RECOMMENDATIONS + _button("See more") + """<p>That's the last of our welcome emails. From here on you'll
only get the emails you signed up for.</p>
""",
    },
    "cart-reminder": {
        "name": "Abandoned cart 1: Reminder",
        "subject": "You left something in your cart",
        "preheader": "Your cart is where you left it, whenever you're ready.",
        "html": HELLO + """<p>You started checking out but didn't finish. Here's what was in your cart:</p>
""" + TRIGGER_PRODUCTS + """<p>If something went wrong at checkout, or you have a question about an item, just
reply to this email.</p>
""" + _button("Return to the shop"),
    },
    "cart-incentive": {
        "name": "Abandoned cart 2: Offer",
        "subject": "10% off the items in your cart",
        "preheader": "A small thank-you if you'd still like them.",
        "html": HELLO + _coupon_note("CART10") + """<p>Still thinking it over? If you'd still like the items you
left in your cart, here's 10% off your order.</p>
""" + TRIGGER_PRODUCTS + """<p style="font-size: 20px;"><strong>Your code: CART10</strong></p>
<p>Enter it at checkout. It can be used once.</p>
""" + _button("Complete your order") + """<p>If you've decided against it, no problem: this is the last reminder
about this cart.</p>
""",
    },
    "order-thanks": {
        "name": "Post-purchase 1: Thank you",
        "subject": "Thank you for your order",
        "preheader": "We appreciate it.",
        "html": HELLO + """{% comment %}This is a marketing thank-you, not the order confirmation: your shop still
sends the confirmation and delivery updates.{% endcomment %}
<p>Thank you for your order{% if trigger.properties.order_id %} {{ trigger.properties.order_id }}{% endif %}.
We're glad you chose {{ brand.name|default:"us" }}.</p>
""" + TRIGGER_PRODUCTS + """{% if trigger.properties.total %}<p><strong>Order total:
{{ trigger.properties.total|money:trigger.properties.currency }}</strong></p>{% endif %}
<p>You'll get your order confirmation and delivery updates separately. If anything isn't right, reply to this
email and we'll sort it out.</p>
""",
    },
    "order-cross-sell": {
        "name": "Post-purchase 2: You might also like",
        "subject": "Picked for you",
        "preheader": "A few things that go well with your last order.",
        "html": HELLO + """<p>We hope your order arrived safely and that you're enjoying it.</p>
<p>If you're looking for something else, these are popular with customers who shop the same things as you:</p>
""" + RECOMMENDATIONS + _button("Browse the shop") + """<p>Something wrong with your order? Reply to this email
and we'll help.</p>
""",
    },
    "reengage-miss-you": {
        "name": "Re-engagement 1: We miss you",
        "subject": "It's been a while",
        "preheader": "Here's what's new since you last heard from us.",
        "html": HELLO + """<p>We haven't heard from you in a while, so here's a quick hello and a few things that are
popular at the moment:</p>
""" + RECOMMENDATIONS + _button("See what's new"),
    },
    "reengage-preferences": {
        "name": "Re-engagement 2: Choose what you get",
        "subject": "Too many emails? Choose what you get",
        "preheader": "Fewer emails, different topics, or none at all: it's up to you.",
        "html": HELLO + """<p>Maybe our emails aren't quite what you're after. That's fine: you can choose the
topics you care about and how often you hear from us.</p>
<p><a class="button" href="{{ preferences_url }}">Choose what you get</a></p>
<p>And if you'd rather not hear from us at all, you can unsubscribe with the link at the bottom of this email.</p>
""",
    },
    "reengage-last-chance": {
        "name": "Re-engagement 3: Last chance",
        "subject": "Should we stop emailing you?",
        "preheader": "We'll stop sending marketing emails unless you want to stay.",
        "html": HELLO + """<p>We don't want to fill your inbox with emails you don't read, so unless we hear from you
we'll stop sending you our marketing emails in a few days.</p>
<p>If you'd like to keep hearing from us, click below. That's all it takes.</p>
<p><a class="button" href="{{ preferences_url }}">Yes, keep me subscribed</a></p>
<p>If we don't hear from you, no hard feelings. You're welcome to subscribe again any time.</p>
""",
    },
    "birthday": {
        "name": "Birthday: Happy birthday",
        "subject": 'Happy birthday{% if first_name %}, {{ first_name }}{% endif %}!',
        "preheader": "A little birthday present from us.",
        "html": _coupon_note("BIRTHDAY15") + """<p>Happy birthday{% if first_name %}, {{ first_name }}{% endif %}!</p>
<p>To celebrate, here's 15% off your next order, our small birthday present to you.</p>
<p style="font-size: 20px;"><strong>Your code: BIRTHDAY15</strong></p>
<p>Enter it at checkout within the next 30 days.</p>
""" + _button("Treat yourself") + """<p>Have a lovely day,<br>The {{ brand.name|default:"shop" }} team</p>
""",
    },
    "winback-1": {
        "name": "Win-back 1: It's been a while",
        "subject": "What's new since your last visit",
        "preheader": "A few things you may have missed.",
        "html": HELLO + """<p>It's been a while since your last order, and a few things have changed in the shop.
Here are some popular picks:</p>
""" + RECOMMENDATIONS + _button("Take a look"),
    },
    "winback-2": {
        "name": "Win-back 2: Offer",
        "subject": "15% off to welcome you back",
        "preheader": "An offer for your next order.",
        "html": HELLO + _coupon_note("WELCOMEBACK15") + """<p>We'd love to see you again, so here's 15% off your next
order.</p>
<p style="font-size: 20px;"><strong>Your code: WELCOMEBACK15</strong></p>
<p>Enter it at checkout within the next 14 days.</p>
""" + _button("Shop now"),
    },
    "winback-3": {
        "name": "Win-back 3: Last reminder",
        "subject": "Your 15% off is still waiting",
        "preheader": "The last reminder about your offer.",
        "html": HELLO + _coupon_note("WELCOMEBACK15") + """<p>Just a reminder that your code
<strong>WELCOMEBACK15</strong> for 15% off is still there for you.</p>
""" + _button("Use my code") + """<p>This is the last email about this offer. If you'd like fewer emails from us,
<a href="{{ preferences_url }}">choose what you get</a>.</p>
""",
    },
}

# --- Journeys ---------------------------------------------------------------------------------

BEFORE_TURNING_ON = ("Before turning it on: pick the topic its emails belong to; check each email's sender and "
                     "reply-to address (several emails invite replies, so someone should read them); set "
                     "BRAND_WEBSITE_URL so the buttons link to your shop; and send yourself a test of each email.")

JOURNEYS: list[dict[str, Any]] = [
    {
        "key": "welcome", "name": "Welcome",
        "description": "Three emails for new subscribers: a welcome at once, useful details after 2 days, and "
                       "popular products after 5 days. People enter once, when they confirm their "
                       "subscription. " + BEFORE_TURNING_ON + " Check the delivery and returns points in "
                       "the second email against your shop's terms.",
        "trigger": "signup", "entry_rule": "once",
        "steps": [
            {"key": "welcome", "kind": "send_email", "email": "welcome-1", "label": "Welcome"},
            {"key": "wait-2-days", "kind": "wait", "wait_amount": 2, "wait_unit": "days"},
            {"key": "tips", "kind": "send_email", "email": "welcome-2", "label": "Things worth knowing"},
            {"key": "wait-3-days", "kind": "wait", "wait_amount": 3, "wait_unit": "days"},
            {"key": "popular", "kind": "send_email", "email": "welcome-3", "label": "Popular picks"},
        ],
    },
    {
        "key": "abandoned_cart", "name": "Abandoned cart",
        "description": "Starts when someone starts checking out (the “Checkout Started” event, with the cart's "
                       "products) and ends as soon as they order (“Order Completed”). After an hour: a reminder "
                       "listing the cart; a day after the checkout: 10% off with a code. People enter at most "
                       "once a day, so someone who buys and starts another checkout the same day is not sent "
                       "the series again, and the offer never goes out twice in a day. " + BEFORE_TURNING_ON
                       + " Create the code CART10 in your shop or replace it in the second email. Your shop "
                       "must send Checkout Started with its products (name, price, quantity) and currency.",
        "trigger": "event", "trigger_event": "Checkout Started", "exit_event": "Order Completed",
        "entry_rule": "once_per_period", "reentry_days": 1,
        "steps": [
            {"key": "wait-1-hour", "kind": "wait", "wait_amount": 1, "wait_unit": "hours"},
            {"key": "reminder", "kind": "send_email", "email": "cart-reminder", "label": "Cart reminder"},
            {"key": "wait-23-hours", "kind": "wait", "wait_amount": 23, "wait_unit": "hours"},
            {"key": "offer", "kind": "send_email", "email": "cart-incentive", "label": "10% off"},
        ],
    },
    {
        "key": "post_purchase", "name": "Post-purchase",
        "description": "A thank-you after every order (the “Order Completed” event, with its total and "
                       "products), then a week later products they may like. Every order starts it, but never "
                       "twice at once: an order placed during the week in between gets no second thank-you. "
                       "It does not replace your shop's order confirmation. " + BEFORE_TURNING_ON,
        "trigger": "event", "trigger_event": "Order Completed", "entry_rule": "every_time",
        "steps": [
            {"key": "thank-you", "kind": "send_email", "email": "order-thanks", "label": "Thank you"},
            {"key": "wait-7-days", "kind": "wait", "wait_amount": 7, "wait_unit": "days"},
            {"key": "cross-sell", "kind": "send_email", "email": "order-cross-sell", "label": "You might also like"},
        ],
    },
    {
        "key": "reengagement_sunset", "name": "Re-engagement and sunset",
        "description": "For subscribers with no open, click, visit or order in 90 days: a “we miss you” email; "
                       "if they do not open it within a week, an invitation to choose fewer emails, then a "
                       "last-chance email. People who open none of the three are tagged “unengaged” and their "
                       "marketing email stops (sunset: the consent ledger records it as an automation, and "
                       "they can subscribe again). Anyone who opens one leaves the journey subscribed. "
                       "People enter at most once every 180 days; it shares the group “reactivation” with "
                       "Win-back, so nobody gets both at once. Sunsetting protects your sender reputation; "
                       "check the wording of the last-chance email before turning it on. " + BEFORE_TURNING_ON,
        "trigger": "inactivity", "inactivity_days": 90, "entry_rule": "once_per_period", "reentry_days": 180,
        "group": "reactivation",
        "steps": [
            {"key": "miss-you", "kind": "send_email", "email": "reengage-miss-you", "label": "We miss you"},
            {"key": "wait-7-days", "kind": "wait", "wait_amount": 7, "wait_unit": "days"},
            {"key": "opened-miss-you", "kind": "branch", "engagement_step": "miss-you", "engagement": "opened",
             "label": "Opened or clicked “we miss you”?", "next_step": "came-back",
             "else_step": "preferences"},
            {"key": "came-back", "kind": "exit", "label": "Engaged again"},
            {"key": "preferences", "kind": "send_email", "email": "reengage-preferences",
             "label": "Choose what you get"},
            {"key": "wait-7-more-days", "kind": "wait", "wait_amount": 7, "wait_unit": "days"},
            {"key": "last-chance", "kind": "send_email", "email": "reengage-last-chance", "label": "Last chance"},
            {"key": "wait-3-days", "kind": "wait", "wait_amount": 3, "wait_unit": "days"},
            {"key": "opened-last-chance", "kind": "branch", "engagement_step": "last-chance",
             "engagement": "opened", "label": "Opened or clicked “last chance”?", "next_step": "stayed",
             "else_step": "opened-preferences"},
            {"key": "stayed", "kind": "exit", "label": "Stays subscribed"},
            {"key": "opened-preferences", "kind": "branch", "engagement_step": "preferences",
             "engagement": "opened", "label": "Opened or clicked “choose what you get”?", "next_step": "stayed",
             "else_step": "tag-unengaged"},
            {"key": "tag-unengaged", "kind": "update_profile", "update_action": "add_tag",
             "update_key": "unengaged", "label": "Tag “unengaged”"},
            {"key": "sunset", "kind": "update_profile", "update_action": "stop_marketing",
             "label": "Stop marketing email (sunset)"},
            {"key": "sunset-done", "kind": "exit", "label": "Sunset"},
        ],
    },
    {
        "key": "birthday", "name": "Birthday",
        "description": "A birthday email with 15% off, sent at 09:00 in each person's own time zone on their "
                       "birthday (people without a birthday on their profile never enter). At most once every "
                       "300 days. " + BEFORE_TURNING_ON + " Create the code BIRTHDAY15 in your shop or replace "
                       "it in the email, and make the 30 days in the email match the code.",
        "trigger": "date", "trigger_date_field": "birthday", "trigger_time": dt.time(9, 0),
        "entry_rule": "once_per_period", "reentry_days": 300,
        "steps": [
            {"key": "birthday", "kind": "send_email", "email": "birthday", "label": "Happy birthday"},
        ],
    },
    {
        "key": "win_back", "name": "Win-back",
        "description": "For customers who enter the prebuilt “Lapsed customers” segment (no order for twice "
                       "their usual interval, or 180 days): what's new, after 5 days 15% off, after 7 more days "
                       "a last reminder. Anyone who orders (“Order Completed”) leaves at once. At most once "
                       "every 90 days; it shares the group “reactivation” with Re-engagement and sunset, so "
                       "nobody gets both at once. " + BEFORE_TURNING_ON + " Create the code WELCOMEBACK15 in "
                       "your shop or replace it in the second and third emails, and make the 14 days in the "
                       "second email match it.",
        "trigger": "segment_entry", "trigger_segment": "lapsed_customers", "exit_event": "Order Completed",
        "entry_rule": "once_per_period", "reentry_days": 90, "group": "reactivation",
        "steps": [
            {"key": "whats-new", "kind": "send_email", "email": "winback-1", "label": "What's new"},
            {"key": "wait-5-days", "kind": "wait", "wait_amount": 5, "wait_unit": "days"},
            {"key": "offer", "kind": "send_email", "email": "winback-2", "label": "15% off"},
            {"key": "wait-7-days", "kind": "wait", "wait_amount": 7, "wait_unit": "days"},
            {"key": "reminder", "kind": "send_email", "email": "winback-3", "label": "Last reminder"},
        ],
    },
]

LAPSED_SEGMENT = ("lapsed_customers", "Lapsed customers")


def _email(campaign_model: Any, variant_model: Any, key: str) -> Any:
    """Return the journey email of this name, creating it with its variant A only when it is missing."""
    spec = EMAILS[key]
    existing = campaign_model.objects.filter(kind="journey", name=spec["name"]).order_by("pk").first()
    if existing is not None:
        return existing
    email = campaign_model.objects.create(name=spec["name"], kind="journey")
    variant_model.objects.create(campaign=email, label="A", subject=spec["subject"], preheader=spec["preheader"],
                                 html=spec["html"])
    return email


def _lapsed_segment(segment_model: Any) -> Any:
    system_key, name = LAPSED_SEGMENT
    return (segment_model.objects.filter(system_key=system_key).first()
            or segment_model.objects.filter(name=name).first())


def create_prebuilt_journeys(journey_model: Any, step_model: Any, campaign_model: Any, variant_model: Any,
                             segment_model: Any) -> int:
    """Create the prebuilt journeys that are missing, as drafts, with their emails; returns how many.

    A journey is matched by its prebuilt key (or, if a marketer already has a
    journey of that name, left alone); an email by its name. What exists is
    never changed, so running this again creates nothing twice and keeps edits.
    """
    created = 0
    for spec in JOURNEYS:
        if journey_model.objects.filter(prebuilt_key=spec["key"]).exists() or \
                journey_model.objects.filter(name=spec["name"]).exists():
            continue
        fields = {name: value for name, value in spec.items() if name not in {"key", "steps", "trigger_segment"}}
        if spec.get("trigger_segment"):
            fields["trigger_segment"] = _lapsed_segment(segment_model)
        journey = journey_model.objects.create(prebuilt_key=spec["key"], status="draft", **fields)
        for position, step in enumerate(spec["steps"]):
            values = dict(step)
            if "email" in values:
                values["email"] = _email(campaign_model, variant_model, values["email"])
            step_model.objects.create(journey=journey, position=position, **values)
        created += 1
    return created
