"""Compile email content once per variant and render it per recipient, fast and sandboxed.

Compiling does everything that is the same for every recipient: reusable
content blocks are inserted, the HTML goes into its layout with the
preheader, CSS is inlined (``css_inline``), the plain-text part is derived
from the HTML when it is empty, and the four parts become template objects
of the sandboxed engine (``campaigns.content.sandbox``). Rendering only fills
in the recipient's plain-data context.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from html import unescape
from html.parser import HTMLParser
from typing import Any

import css_inline
from django.template import Context, Engine, Template, TemplateSyntaxError
from django.template.base import Lexer, TokenType

from campaigns.content.sandbox import RECIPIENT_LOCALE, segments_used

SANDBOX = "campaigns.content.sandbox"
CONTENT_SLOT = "{{ content }}"
PREHEADER_SLOT = "{{ preheader }}"
GMAIL_CLIP_BYTES = 102 * 1024


class SandboxEngine(Engine):
    """A template engine with no loaders and only the sandbox library: nothing else can be loaded."""

    default_builtins: list[str] = []

    def __init__(self, *, autoescape: bool, debug: bool):
        super().__init__(loaders=[], builtins=[SANDBOX], libraries={}, autoescape=autoescape, debug=debug,
                         string_if_invalid="")


HTML_ENGINE = SandboxEngine(autoescape=True, debug=False)
TEXT_ENGINE = SandboxEngine(autoescape=False, debug=False)
CHECK_ENGINE = SandboxEngine(autoescape=True, debug=True)


class ContentError(ValueError):
    """Content that does not compile: which part, which line, what is wrong, in plain words."""

    def __init__(self, part: str, line: int | None, message: str):
        where = f"{part}, line {line}" if line else part
        super().__init__(f"{where}: {message}")
        self.part, self.line, self.message = part, line, message


@dataclass(frozen=True)
class RenderedMessage:
    subject: str
    html: str
    text: str


@dataclass
class CompiledMessage:
    """One variant (in one language), ready to render for any number of recipients."""

    subject: Template
    html: Template
    text: Template
    html_source: str
    segments: list[str] = field(default_factory=list)
    variables: set[str] = field(default_factory=set)

    def render(self, context: Mapping[str, Any], *, locale: str = "en", currency: str = "EUR") -> RenderedMessage:
        token = RECIPIENT_LOCALE.set((locale or "en", currency or "EUR"))
        try:
            # Localization is the sandbox filters' job (money, number, date, in the recipient's locale);
            # Django's own per-variable l10n would ask for the active language at every tag.
            ctx = Context(context, autoescape=True, use_l10n=False, use_tz=False)
            html = self.html.render(ctx)
            text_ctx = Context(context, autoescape=False, use_l10n=False, use_tz=False)
            subject = " ".join(self.subject.render(text_ctx).split())
            text = _tidy_text(self.text.render(text_ctx))
        finally:
            RECIPIENT_LOCALE.reset(token)
        return RenderedMessage(subject=subject, html=html, text=text)


_BLANK_RUNS = re.compile(r"[ \t]+\n")
_MANY_NEWLINES = re.compile(r"\n{3,}")


def _tidy_text(text: str) -> str:
    """Drop the blank lines that template tags leave in the plain-text part."""
    return _MANY_NEWLINES.sub("\n\n", _BLANK_RUNS.sub("\n", text)).strip() + "\n"


_BLOCK_TAG = re.compile(r"""{%\s*block_content\s+["']([a-z0-9_-]+)["']\s*%}""")
_TEMPLATE_TAG = re.compile(r"({{.*?}}|{%.*?%}|{#.*?#})", re.S)


def insert_blocks(source: str, blocks: Mapping[str, str], *, part: str = "HTML") -> str:
    """Replace ``{% block_content "key" %}`` with the block's content (one level deep)."""

    def replace(match: re.Match[str]) -> str:
        key = match.group(1)
        if key not in blocks:
            line = source.count("\n", 0, match.start()) + 1
            raise ContentError(part, line, f"there is no content block “{key}”.")
        return _BLOCK_TAG.sub("", blocks[key])

    return _BLOCK_TAG.sub(replace, source)


def _protect(source: str) -> tuple[str, list[str]]:
    """Swap template tags for plain-word markers, so HTML tools leave them untouched."""
    saved: list[str] = []

    def keep(match: re.Match[str]) -> str:
        saved.append(match.group(0))
        return f"MKTPL{len(saved) - 1}MKTPL"

    return _TEMPLATE_TAG.sub(keep, source), saved


def _restore(source: str, saved: list[str]) -> str:
    return re.sub(r"MKTPL(\d+)MKTPL", lambda m: saved[int(m.group(1))], source)


def inline_css(html: str) -> str:
    """Inline the ``<style>`` rules into ``style`` attributes, leaving template tags as they are."""
    protected, saved = _protect(html)
    inliner = css_inline.CSSInliner(keep_style_tags=False, load_remote_stylesheets=False)
    return _restore(inliner.inline(protected), saved)


class _TextExtractor(HTMLParser):
    BLOCKS = {"p", "div", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "table", "ul", "ol", "section"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.href: str | None = None
        self.skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in {"style", "script", "head", "title"}:
            self.skip += 1
        elif tag == "br":
            self.parts.append("\n")
        elif tag == "li":
            self.parts.append("\n- ")
        elif tag in self.BLOCKS:
            self.parts.append("\n\n")
        elif tag == "a":
            self.href = dict(attrs).get("href")

    def handle_endtag(self, tag: str) -> None:
        if tag in {"style", "script", "head", "title"}:
            self.skip = max(0, self.skip - 1)
        elif tag == "a" and self.href:
            if not self.href.startswith("#"):
                self.parts.append(f" ({self.href})")
            self.href = None
        elif tag in self.BLOCKS:
            self.parts.append("\n\n")

    def handle_data(self, data: str) -> None:
        if not self.skip:
            self.parts.append(re.sub(r"\s+", " ", data))


def html_to_text(html: str) -> str:
    """Derive a readable plain-text part from HTML (links kept as “text (url)”), template tags untouched."""
    protected, saved = _protect(html)
    parser = _TextExtractor()
    parser.feed(protected)
    parser.close()
    text = "".join(parser.parts)
    text = "\n".join(line.strip() for line in text.splitlines())
    text = re.sub(r"\n{3,}", "\n\n", text).strip()
    return _restore(unescape(text), saved) + "\n"


def assemble_html(html: str, *, layout: str = "", preheader: str = "") -> str:
    """Put the content into its layout with a hidden preheader (before compiling)."""
    page = layout.replace(CONTENT_SLOT, html) if layout and CONTENT_SLOT in layout else html
    if preheader:
        hidden = ('<div style="display:none;max-height:0;overflow:hidden;mso-hide:all" aria-hidden="true">'
                  f"{preheader}</div>")
        if PREHEADER_SLOT in page:
            page = page.replace(PREHEADER_SLOT, hidden)
        else:
            page = re.sub(r"(<body[^>]*>)", lambda m: m.group(1) + hidden, page, count=1) \
                if "<body" in page else hidden + page
    return page.replace(PREHEADER_SLOT, "")


def check_syntax(source: str, part: str, *, autoescape: bool = True) -> None:
    """Raise ContentError with the line and the engine's message if ``source`` does not compile."""
    try:
        CHECK_ENGINE.from_string(source)
    except TemplateSyntaxError as exc:
        info = getattr(exc, "template_debug", None) or {}
        message = str(exc)
        message = re.sub(r"Did you forget to register or load this tag\?", "This tag does not exist here.",
                         message)
        raise ContentError(part, info.get("line"), message) from None


def variables_used(source: str) -> set[str]:
    """Return the top-level names a template reads (``first_name`` for ``{{ first_name|default:"x" }}``)."""
    names: set[str] = set()
    for token in Lexer(source).tokenize():
        if token.token_type == TokenType.VAR:
            head = re.split(r"[|.\s]", token.contents.strip(), maxsplit=1)[0]
            if head:
                names.add(head)
    return names


def compile_message(*, subject: str, html: str, text: str = "", preheader: str = "", layout: str = "",
                    blocks: Mapping[str, str] | None = None) -> CompiledMessage:
    """Compile one variant's content; raises ContentError naming the part and line that fail."""
    blocks = blocks or {}
    body = insert_blocks(html, blocks, part="HTML")
    check_syntax(subject, "Subject")
    check_syntax(preheader, "Preheader")
    check_syntax(body, "HTML")
    layout_html = insert_blocks(layout, blocks, part="Layout") if layout else ""
    if layout_html:
        check_syntax(layout_html.replace(CONTENT_SLOT, "").replace(PREHEADER_SLOT, ""), "Layout")
    page = inline_css(assemble_html(body, layout=layout_html, preheader=preheader))
    # Derived from the whole page without the hidden preheader, so the layout's footer (and its
    # unsubscribe and preference links) is in the plain-text part too.
    text_source = insert_blocks(text, blocks, part="Text") if text.strip() else html_to_text(
        assemble_html(body, layout=layout_html))
    check_syntax(text_source, "Text")
    return CompiledMessage(
        subject=TEXT_ENGINE.from_string(subject),
        html=HTML_ENGINE.from_string(page),
        text=TEXT_ENGINE.from_string(text_source),
        html_source=page,
        segments=segments_used(page),
        variables=variables_used(subject) | variables_used(page) | variables_used(text_source),
    )
