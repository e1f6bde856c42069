"""Email content: sandboxed rendering, fallbacks, dynamic blocks, languages, locale formats, checks, admin."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from django.core import mail
from django.test import Client

from campaigns.content import actions
from campaigns.content.checks import check_content, link_problems, merge_tags
from campaigns.content.models import Campaign, CampaignSegment, ContentBlock, EmailLayout, Variant, VariantTranslation
from campaigns.content.personalize import recipient_contexts
from campaigns.content.rendering import ContentError, compile_message, html_to_text
from campaigns.segments import actions as segment_actions
from campaigns.segments.models import Segment
from subscribers.models import AttributeDefinition, ConsentRecord, Order, OrderItem, Product

FOOTER = '<a href="{{ unsubscribe_url }}">Unsubscribe</a> <a href="{{ preferences_url }}">Preferences</a>'


def render(html, context=None, *, locale="en", currency="EUR", **parts):
    compiled = compile_message(subject=parts.get("subject", "Hi"), html=html, text=parts.get("text", ""),
                               preheader=parts.get("preheader", ""), layout=parts.get("layout", ""),
                               blocks=parts.get("blocks"))
    return compiled.render(context or {}, locale=locale, currency=currency)


# --- rendering -----------------------------------------------------------------


def test_fallbacks_never_leave_a_gap():
    html = '<p>Hi {{ first_name|default:"there" }},</p>'
    assert "Hi Ana," in render(html, {"first_name": "Ana"}).html
    assert "Hi there," in render(html, {"first_name": ""}).html
    assert "Hi there," in render(html, {}).html


def test_merge_values_are_escaped_in_html_but_not_in_subject_or_text():
    rendered = render("<p>{{ first_name }}</p>", {"first_name": "<b>Ann & Co</b>"},
                      subject="For {{ first_name }}", text="Dear {{ first_name }}")
    assert "&lt;b&gt;Ann &amp; Co&lt;/b&gt;" in rendered.html
    assert rendered.subject == "For <b>Ann & Co</b>" and rendered.text == "Dear <b>Ann & Co</b>\n"


@pytest.mark.parametrize("source", ['{% load static %}', '{% include "x.html" %}', '{% extends "base.html" %}',
                                    '{% url "admin:index" %}', '{% debug %}', "{{ first_name|safe }}"])
def test_the_sandbox_refuses_tags_and_filters_outside_its_set(source):
    with pytest.raises(ContentError) as caught:
        compile_message(subject="s", html=f"<p>\n{source}</p>")
    assert caught.value.part == "HTML" and caught.value.line == 2


def test_compile_errors_name_the_part_and_line():
    with pytest.raises(ContentError) as caught:
        compile_message(subject="Hi {{ first_name|default: }}", html="<p>ok</p>")
    assert caught.value.part == "Subject"
    with pytest.raises(ContentError) as caught:
        compile_message(subject="s", html="<p>a</p>\n<p>b</p>\n{% if x %}<p>never closed</p>")
    assert (caught.value.part, caught.value.line) == ("HTML", 3)
    assert "HTML, line 3" in str(caught.value)


def test_dynamic_block_per_segment():
    html = '{% ifsegment "Loyal customers" %}<p>Thanks, VIP</p>{% else %}<p>Welcome</p>{% endifsegment %}'
    assert "Thanks, VIP" in render(html, {"segments": ["Loyal customers"]}).html
    assert "Welcome" in render(html, {"segments": ["Leads"]}).html
    assert compile_message(subject="s", html=html).segments == ["Loyal customers"]


def test_recommendations_block_and_empty_fallback():
    html = ("{% recommendations 2 %}<p>{{ product.name }} {{ product.price|money }}</p>"
            "{% empty %}<p>Browse the shop</p>{% endrecommendations %}")
    products = [{"name": "Shoe", "price": "10"}, {"name": "Hat", "price": "5"}, {"name": "Sock", "price": "2"}]
    rendered = render(html, {"recommendations": products}).html
    assert "Shoe €10.00" in rendered and "Hat €5.00" in rendered and "Sock" not in rendered
    assert "Browse the shop" in render(html, {"recommendations": []}).html


def test_amounts_numbers_and_dates_follow_the_recipients_locale_and_currency():
    html = "<p>{{ total|money }} | {{ points|number }} | {{ day|date:'long' }}</p>"
    context = {"total": "1234.5", "points": 12345, "day": dt.date(2026, 11, 3)}
    assert "€1,234.50 | 12,345 | November 3, 2026" in render(html, context, locale="en").html
    assert "1\xa0234,50\xa0€ | 12\xa0345 | 2026. gada 3. novembris" in render(html, context, locale="lv").html
    assert "1234,50\xa0zł" in render("<p>{{ total|money }}</p>", context, locale="pl", currency="PLN").html \
        or "1\xa0234,50\xa0zł" in render("<p>{{ total|money }}</p>", context, locale="pl", currency="PLN").html
    assert "<p>[]</p>" in render("<p>[{{ missing|money }}]</p>", {}).html


def test_css_is_inlined_when_compiling_and_template_tags_survive():
    layout = ("<html><head><style>p { color: #333 }</style></head><body>{{ content }}</body></html>")
    compiled = compile_message(subject="s", html='<p>{% if a > 1 %}big{% endif %} <a href="{{ url }}">x</a></p>',
                               layout=layout)
    assert "<style>" not in compiled.html_source and 'style="color: #333;"' in compiled.html_source
    assert "{% if a > 1 %}" in compiled.html_source and 'href="{{ url }}"' in compiled.html_source
    assert "big" in compiled.render({"a": 2, "url": "https://x.example"}).html


def test_preheader_and_blocks_and_layout():
    blocks = {"footer": FOOTER}
    rendered = render("<p>Body</p>", {"unsubscribe_url": "https://u"}, preheader="Sale ends {{ day }}",
                      layout="<html><body>{{ content }}{% block_content \"footer\" %}</body></html>", blocks=blocks)
    assert rendered.html.index("Sale ends") < rendered.html.index("Body") < rendered.html.index("https://u")
    with pytest.raises(ContentError, match="no content block “missing”"):
        compile_message(subject="s", html='{% block_content "missing" %}')


def test_text_part_is_derived_from_html():
    text = html_to_text('<h1>News</h1><p>Hello {{ first_name|default:"you" }},<br>see <a href="https://x.example">'
                        'our shop</a>.</p><ul><li>One</li><li>Two</li></ul><style>p{}</style>')
    assert text == 'News\n\nHello {{ first_name|default:"you" }},\nsee our shop (https://x.example).\n\n- One\n- Two\n'


PERSONAL_LAYOUT = ("<html><head><style>p { color: #333 }</style></head><body>{{ content }}"
                   '<p>{{ brand.name }} · <a href="{{ unsubscribe_url }}">Unsubscribe</a></p></body></html>')
PERSONAL_HTML = """<h1>Hi {{ first_name|default:"there" }}, the sale is on</h1>
<p>For you{% if city %} in {{ city }}{% endif %}, prices for {{ country_name|default:"your country" }}.</p>
{% ifsegment "Loyal customers" %}<p>{{ order_count }} order{{ order_count|pluralize }}, {{ total_spent|money }}
 in all.</p>{% else %}<p>Your first order ships free.</p>{% endifsegment %}
<div>{% recommendations 2 %}<p><a href="{{ product.url|default:"https://shop.example/" }}">{{ product.name }}</a>
 {{ product.price|money }} ({{ forloop.counter|default:"-" }})</p>{% empty %}<p>See the sale</p>
{% endrecommendations %}</div>
<ul>{% for tag in attributes.tags %}<li>{{ forloop.counter }}/{{ forloop.revcounter }} {{ tag|upper }}
{% if forloop.last %}end{% endif %}</li>{% empty %}<li>no tags</li>{% endfor %}</ul>
{% with name=full_name|default:email %}<p>{{ name|truncatewords:2 }} {{ name|length }}</p>{% endwith %}
<p>{{ company|default:"" }} {{ last_name|default:"" }} · {{ last_order_at|date:"long"|default:"not yet" }}</p>
<p>{% if order_count > 2 and not city or "Loyal customers" in segments %}often{% elif city == "Rīga" %}Rīga{% else %}
new{% endif %} {{ attributes.plan|default_if_none:"none" }} {{ attributes.missing.deeper|default:"-" }}</p>
<p>{{ attributes.note|linebreaksbr }} {{ attributes.tags|join:", " }} {{ nobody|upper }} {{ 3 }}</p>
<p>{{ points|number }} {{ subscribed|yesno:"yes,no" }}</p>"""


@pytest.mark.parametrize("text", ["", "Hi {{ first_name|default:'there' }}  \n\n\n\n{{ attributes.note }}\t\n"
                                      "{% for tag in attributes.tags %}{{ tag }}{% endfor %}"])
@pytest.mark.parametrize("extra", ["", '<p>{% firstof job_title industry "reader" as role %}{{ role }}</p>'])
def test_the_compiled_renderer_gives_what_djangos_template_nodes_give_byte_for_byte(text, extra):
    from django.template import VariableDoesNotExist

    from campaigns.content.personalize import empty_context

    compiled = compile_message(subject='{{ first_name|default:"Hi" }}, {{ city|default:"the" }} sale is on',
                               html=PERSONAL_HTML + extra, text=text,
                               preheader="Up to {{ discount|default:'40' }}% off", layout=PERSONAL_LAYOUT)
    full = {**empty_context(), "first_name": "Anna <b>&</b>", "last_name": "O'Neil", "city": "Rīga",
            "country_name": "Latvia", "company": "Acme & Co", "full_name": "Anna Maria O'Neil", "order_count": 3,
            "total_spent": "1234.5", "last_order_at": dt.datetime(2026, 11, 3, 9, 30), "points": 12345,
            "subscribed": True, "segments": ["Loyal customers"],
            "attributes": {"tags": ["vip", "<new>"], "plan": None, "note": "line one\nline <two>  "},
            "recommendations": [{"name": "Shoe & sock", "url": "https://shop.example/s?a=1&b=2", "price": "10"},
                                {"name": "Hat", "url": "", "price": None}, {"name": "Not shown", "price": 1}]}
    recipients = [full, empty_context(), {}, {**full, "city": "", "segments": [], "order_count": 0},
                  {**full, "first_name": "  Ann\n", "attributes": {"tags": "ab"}, "recommendations": None}]

    def outcome(render, context, **kwargs):
        try:
            message = render(dict(context), **kwargs)
        except Exception as exc:  # noqa: BLE001 - both ways must fail alike (a filter argument that is missing)
            return type(exc)
        return message.subject, message.html, message.text, type(message.html)

    for context in recipients:
        for locale, currency in (("en", "EUR"), ("lv", "EUR"), ("pl", "PLN")):
            assert outcome(compiled.render, context, locale=locale, currency=currency) == \
                outcome(compiled.render_with_django, context, locale=locale, currency=currency)
    assert outcome(compiled.render, {}) is VariableDoesNotExist  # {% with name=full_name|default:email %}
    rendered = compiled.render(full)
    assert "Hi Anna &lt;b&gt;&amp;&lt;/b&gt;, the sale is on" in rendered.html and "often" in rendered.html
    assert "1/2 VIP" in rendered.html and "2/1 &lt;NEW&gt;" in rendered.html and "Shoe &amp; sock" in rendered.html
    assert rendered.subject == "Anna <b>&</b>, Rīga sale is on"
    empty = compiled.render(empty_context())
    assert "Hi there, the sale is on" in empty.html and "no tags" in empty.html and "See the sale" in empty.html


@pytest.mark.parametrize("body", [
    '<a href="{{ product.url|default:"https://shop.example/" }}">{{ product.name }}</a> {{ product.price }} '
    '{{ product.price|money }} {{ product.price|money:"usd" }}',
    "{{ product.name }} for {{ first_name|default:'you' }}",  # reads more than the product: never kept
])
def test_recommendation_loops_shared_by_recipients_render_as_django_does(body):
    from decimal import Decimal

    compiled = compile_message(subject="Picks", html=f"<p>{{% recommendations 2 %}}{body}{{% endrecommendations %}}</p>"
                                                     "{{ unsubscribe_url }} {{ preferences_url }}")
    shoes = [{"name": "Shoes & socks", "url": "https://shop.example/s?a=1&b=2", "price": Decimal("10.0")},
             {"name": "Hat", "url": None, "price": 7}]
    alike = [{**shoes[0], "price": Decimal("10.00")}, shoes[1]]  # equal prices that print differently
    floats = [{**shoes[0], "price": 10.0}, shoes[1]]
    people = [{"first_name": name, "recommendations": products}
              for name in ("Ann", "Ben") for products in (shoes, alike, floats, shoes[:1], [])]
    for _ in range(2):  # the second time round, from what the first kept
        for context in people:
            for locale, currency in (("en", "EUR"), ("lv", "EUR"), ("pl", "PLN")):
                ours = compiled.render(dict(context), locale=locale, currency=currency)
                django = compiled.render_with_django(dict(context), locale=locale, currency=currency)
                assert (ours.html, ours.text) == (django.html, django.text)
    if "price" in body:
        assert "10.0 " in compiled.render({"recommendations": shoes}).html
        assert "10.00 " in compiled.render({"recommendations": alike}).html
    else:
        assert "for Ben" in compiled.render({"first_name": "Ben", "recommendations": shoes}).html


def test_a_message_resolves_a_shared_merge_tag_once_unless_a_tag_could_change_the_context():
    from campaigns.content.rendering import shared_expressions

    compiled = compile_message(subject='{{ first_name|default:"Hi" }}', html=PERSONAL_HTML,
                               layout=PERSONAL_LAYOUT)
    shared = shared_expressions(compiled.html.nodelist, compiled.subject.nodelist, compiled.text.nodelist)
    assert ('first_name|default:"there"', False) in shared and ("city", True) in shared
    assert not any(token.startswith(("product.", "tag", "name")) for token, _ in shared)  # loop and with scopes
    assert not any("linebreaksbr" in token or "join" in token for token, _ in shared)  # escaping-dependent
    firstof = compile_message(subject="{{ a }}", html="{% firstof x y as a %}<p>{{ a }}</p>")
    assert shared_expressions(firstof.html.nodelist, firstof.subject.nodelist, firstof.text.nodelist) == frozenset()
    assert firstof.render({"y": "Y"}) == firstof.render_with_django({"y": "Y"})


@pytest.mark.parametrize("text", ["a \n\n\n\nb", "a\t \n \n\n\n\n\nb  ", "\n\n  x\r\n\n\n", "plain", "",
                                  "ends \t", "a\n\nb\n \n\t\n\nc"])
def test_tidying_the_text_part_is_the_two_substitutions(text):
    import re

    from campaigns.content.rendering import _tidy_text

    assert _tidy_text(text) == re.sub(r"\n{3,}", "\n\n", re.sub(r"[ \t]+\n", "\n", text)).strip() + "\n"


# --- personalization context -------------------------------------------------


def test_recipient_context_is_plain_data_with_links_segments_and_recommendations(make_subscriber, db):
    AttributeDefinition.objects.create(key="plan", label="Plan")
    AttributeDefinition.objects.create(key="diagnosis", label="Diagnosis", sensitive=True)
    ann = make_subscriber(first_name="Ann", country="LV", language="lv", order_count=3, total_spent=300,
                          attributes={"plan": "gold", "diagnosis": "x", "favourite_category": "Shoes"})
    loyal = Segment.objects.get(name="Loyal customers")
    shoe = Product.objects.create(product_id="P1", name="Trail shoe", category="Shoes", price=80,
                                  url="https://shop.example/p1")
    order = Order.objects.create(order_id="O1", subscriber=ann, total=80, occurred_at=dt.datetime.now(dt.UTC))
    OrderItem.objects.create(order=order, product=shoe, category="Shoes", price=80, quantity=2)
    context = recipient_contexts([ann.pk], segments=[loyal.name], recommendations=True)[ann.pk]
    assert context.locale == "lv" and context.currency == "EUR"
    data = context.context
    assert data["first_name"] == "Ann" and data["country"] == "LV" and data["country_name"] == "Latvia"
    assert data["attributes"] == {"plan": "gold", "favourite_category": "Shoes"}
    assert data["segments"] == ["Loyal customers"]
    assert data["recommendations"][0]["name"] == "Trail shoe"
    assert data["unsubscribe_url"].startswith("http") and "/unsubscribe/" in data["unsubscribe_url"]
    json.dumps(data, default=str)  # plain data only


def test_personalization_opt_out_gets_no_segment_blocks(make_subscriber, db):
    ann = make_subscriber(order_count=3)
    ConsentRecord.objects.create(subscriber=ann, purpose="personalization", granted=False, method="form")
    data = recipient_contexts([ann.pk], segments=["Loyal customers"])[ann.pk].context
    assert data["segments"] == []


# --- checks --------------------------------------------------------------------


def problems_of(html, **kwargs):
    compiled = compile_message(subject=kwargs.pop("subject", "Hello"), html=html + FOOTER)
    return [p.message for p in check_content(compiled, **kwargs)]


def test_check_passes_good_content():
    assert problems_of('<p>Hi {{ first_name|default:"there" }}</p>') == []


def test_check_requires_a_fallback_unless_guarded_or_provably_present(make_subscriber, db):
    [message] = problems_of("<p>\nHi {{ first_name }}</p>")
    assert "{{ first_name }} (HTML line 2, Text line 1) has no fallback" in message
    assert problems_of("{% if first_name %}<p>Hi {{ first_name }}</p>{% endif %}") == []
    make_subscriber(first_name="Ann", city="")
    people = segment_actions.audience()
    assert problems_of("<p>Hi {{ first_name }}</p>", audience=people) == []
    [message] = problems_of("<p>{{ city }}</p>", audience=people)
    assert "1 recipients have no value" in message


def test_check_refuses_sensitive_attributes_without_a_reason():
    html = '<p>{{ attributes.diagnosis|default:"" }}</p>'
    [message] = problems_of(html, sensitive_keys={"diagnosis"})
    assert "sensitive attributes (diagnosis)" in message
    assert problems_of(html, sensitive_keys={"diagnosis"}, allow_sensitive=True) == []


def test_check_finds_bad_and_missing_links():
    assert link_problems('<a href="javascript:alert(1)">x</a><a href="www.shop.example">y</a><a href="">z</a>'
                         '<a href="mailto:">m</a><a href="https://ok.example/a">ok</a><a href="#top">t</a>') == [
        "“javascript:alert(1)” runs script; links must go to a web page or an address.",
        "“www.shop.example” is not a full web address (it must start with https://).",
        "A link has an empty address.", "“mailto:” has no address."]
    compiled = compile_message(subject="s", html="<p>No footer</p>")
    messages = [p.message for p in check_content(compiled)]
    assert any("unsubscribe link is missing" in m for m in messages)
    assert any("preference-center link is missing" in m for m in messages)


def test_check_warns_about_gmail_clipping_and_empty_subjects_and_unknown_names():
    messages = problems_of("<p>" + "x" * 110_000 + "</p>")
    assert any("Gmail clips messages over 102 KB" in m for m in messages)
    messages = problems_of("<p>{{ shoe_size|default:'' }}</p>", subject="{{ first_name|default:'' }}")
    assert any("subject is empty" in m for m in messages)
    assert any("{{ shoe_size }} is not a merge field" in m for m in messages)


def test_merge_tags_reads_fallbacks_and_guards():
    tags = merge_tags('{{ first_name|default:"x" }}{% if city %}{{ city }}{% endif %}{{ attributes.plan }}{{ brand }}')
    assert [(t.name, t.has_fallback, t.guarded) for t in tags] == [
        ("first_name", True, False), ("city", False, True), ("attributes.plan", False, False)]


# --- campaigns, variants, languages ---------------------------------------------


@pytest.fixture
def campaign(db, topic):
    campaign = Campaign.objects.create(name="November news", topic=topic, from_name="Shop")
    CampaignSegment.objects.create(campaign=campaign, segment=Segment.objects.get(name="Leads"))
    Variant.objects.create(campaign=campaign, label="A", subject='Hi {{ first_name|default:"there" }}',
                           html='<p>Hello {{ first_name|default:"there" }}</p>')
    return campaign


def test_default_layout_has_the_unsubscribe_footer_and_the_campaign_passes_its_check(campaign):
    assert EmailLayout.objects.filter(is_default=True).exists() and ContentBlock.objects.filter(key="footer").exists()
    assert [p.message for p in actions.check_campaign(campaign)] == []


def test_campaign_without_topic_audience_or_content_cannot_be_scheduled(db):
    campaign = Campaign.objects.create(name="Empty")
    messages = [p.message for p in actions.check_campaign(campaign)]
    assert messages == ["Choose the topic this campaign belongs to (what people subscribed to).",
                        "Choose at least one segment to send to.",
                        "Write the message: the campaign has no content yet."]


def test_language_version_is_chosen_by_the_subscribers_language(campaign, make_subscriber):
    variant = campaign.variants.get()
    VariantTranslation.objects.create(variant=variant, language="lv", subject="Sveiki {{ first_name|default:'' }}",
                                      html="<p>Labdien</p>")
    anna = make_subscriber(first_name="Anna", language="lv")
    ben = make_subscriber(first_name="Ben", language="pl")
    assert actions.preview_variant(variant, subscriber_id=anna.pk).rendered.subject == "Sveiki Anna"
    assert actions.preview_variant(variant, subscriber_id=ben.pk).rendered.subject == "Hi Ben"
    assert actions.preview_variant(variant).rendered.subject == "Hi there"


def test_send_test_goes_to_staff_addresses(campaign, make_subscriber, settings):
    ann = make_subscriber(first_name="Ann")
    assert actions.send_test(campaign.variants.get(), to=["me@example.com"], subscriber_id=ann.pk) == 1
    [message] = mail.outbox
    assert message.subject == "[Test] Hi Ann" and message.to == ["me@example.com"]
    assert "Hello Ann" in message.alternatives[0][0] and "Unsubscribe" in message.alternatives[0][0]
    settings.TEST_SEND_ADDRESSES = ["team@example.com"]
    with pytest.raises(ContentError):
        actions.send_test(campaign.variants.get(), to=["stranger@example.com"])


def test_segment_used_by_a_campaign_cannot_be_deleted(campaign):
    leads = Segment.objects.get(name="Leads")
    with pytest.raises(segment_actions.SegmentInUse, match="November news"):
        segment_actions.delete_segment(leads)


# --- admin -------------------------------------------------------------------------


def test_admin_rejects_a_variant_that_does_not_compile_naming_the_line(admin_client, topic):
    response = admin_client.post("/admin/campaigns/campaign/add/", {
        "name": "Broken", "topic": topic.pk, "from_name": "", "from_email": "", "reply_to": "", "layout": "",
        "sensitive_justification": "",
        "audience-TOTAL_FORMS": "0", "audience-INITIAL_FORMS": "0",
        "variants-TOTAL_FORMS": "1", "variants-INITIAL_FORMS": "0", "variants-MIN_NUM_FORMS": "1",
        "variants-0-label": "A", "variants-0-subject": "Hi", "variants-0-preheader": "", "variants-0-from_name": "",
        "variants-0-html": "<p>one</p>\n{% if %}", "variants-0-text": "",
    })
    page = response.content.decode()
    assert response.status_code == 200 and "Line 2: Unexpected end of expression in if tag." in page
    assert not Campaign.objects.filter(name="Broken").exists()


def test_admin_preview_as_subscriber_and_empty_and_send_test(admin_client, campaign, make_subscriber):
    ann = make_subscriber(first_name="Ann", email="ann@example.com")
    page = admin_client.get(f"/admin/campaigns/campaign/{campaign.pk}/preview/").content.decode()
    assert "✓ Ready" in page and "Hi there" in page and "every field empty" in page
    page = admin_client.get(f"/admin/campaigns/campaign/{campaign.pk}/preview/",
                            {"subscriber": "ann@example.com"}).content.decode()
    assert "Hi Ann" in page and "As <a" in page
    admin_client.post(f"/admin/campaigns/campaign/{campaign.pk}/preview/",
                      {"subscriber": str(ann.pk), "to": "me@example.com, you@example.com"})
    assert len(mail.outbox) == 1 and mail.outbox[0].to == ["me@example.com", "you@example.com"]
    # Ann's own unsubscribe and preference links stay out of the preview and the test email: a colleague
    # clicking them must not change her subscription. The preview links change nothing.
    from preferences.api import preference_links

    own = preference_links(subscriber_ids=[ann.pk])[ann.pk]
    sent = mail.outbox[0].body + mail.outbox[0].alternatives[0][0]
    assert own.unsubscribe_url not in page + sent and own.preference_url not in page + sent
    assert "/unsubscribe/preview/" in sent and "/preferences/preview/" in sent
    client = Client()
    for path in ("/unsubscribe/preview/", "/preferences/preview/"):
        assert client.get(path).status_code == 404
    assert client.post("/unsubscribe/preview/").status_code == 404
    ann.refresh_from_db()
    assert ann.status == "subscribed"


def test_a_dynamic_block_naming_no_segment_is_an_error(campaign):
    variant = campaign.variants.get()
    variant.html = '{% ifsegment "Loyal custmers" %}<p>VIP</p>{% else %}<p>Hi</p>{% endifsegment %}'
    variant.save()
    messages = [p.message for p in actions.check_campaign(campaign)]
    assert messages == ['Variant A: {% ifsegment "Loyal custmers" %} names no segment; check the spelling '
                        "(everyone would get the other part)."]


def test_a_loop_over_table_rows_stays_in_the_table_when_css_is_inlined():
    layout = ("<html><head><style>td { color: #123456; }</style></head><body>{{ content }}</body></html>")
    html = ('<table>{% for p in recommendations %}<tr><td class="{% if p.price %}priced{% endif %}">'
            '{{ p.name|default:"A product" }}</td></tr>{% endfor %}</table>')
    compiled = compile_message(subject="s", html=html, layout=layout)
    rendered = compiled.render({"recommendations": [{"name": "Boots", "price": 1}, {"name": "Scarf"}]}).html
    table = rendered[rendered.index("<table"):rendered.index("</table>")]
    assert "Boots" in table and "Scarf" in table
    assert 'class="priced" style="color: #123456;"' in table
