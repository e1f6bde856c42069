"""Check content before it may be scheduled: fallbacks, sensitive data, links, required links, size.

``check_content`` returns problems in plain words; an "error" blocks
scheduling, a "warning" is shown. Rules:

- every merge tag has a fallback (``|default:"…"``), is inside an
  ``{% if name %}`` that tests it, or the audience provably has the value
  (no recipient lacks it);
- no sensitive attribute is used unless the campaign records why;
- every link is well-formed (http, https, mailto or tel), none uses
  ``javascript:``;
- the unsubscribe and preference-center links (``{{ unsubscribe_url }}``,
  ``{{ preferences_url }}``) are present;
- the HTML stays under Gmail's 102 KB clipping limit;
- the subject is not empty for a person with no data.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urlsplit

from django.template.base import Lexer, TokenType

from campaigns.content.personalize import ALWAYS_PRESENT, APP_NAMES, MERGE_FIELDS, empty_context
from campaigns.content.rendering import GMAIL_CLIP_BYTES, CompiledMessage


@dataclass(frozen=True)
class Problem:
    level: str  # "error" or "warning"
    message: str


@dataclass(frozen=True)
class MergeTag:
    name: str  # e.g. first_name or attributes.plan
    line: int
    has_fallback: bool
    guarded: bool


def merge_tags(source: str) -> list[MergeTag]:
    """Return every variable the template prints, with whether it has a fallback or an ``if`` around it."""
    tags: list[MergeTag] = []
    guards: list[set[str]] = []
    for token in Lexer(source).tokenize():
        if token.token_type == TokenType.BLOCK:
            bits = token.split_contents()
            if not bits:
                continue
            if bits[0] in {"if", "ifsegment", "for", "with", "recommendations", "comment"}:
                guards.append({b for b in bits[1:] if re.fullmatch(r"[a-z_][a-z0-9_.]*", b)})
            elif bits[0] in {"elif"} and guards:
                guards[-1] |= {b for b in bits[1:] if re.fullmatch(r"[a-z_][a-z0-9_.]*", b)}
            elif bits[0].startswith("end") and guards:
                guards.pop()
        elif token.token_type == TokenType.VAR:
            expression = token.contents.strip()
            name = re.split(r"[|\s]", expression, maxsplit=1)[0]
            parts = name.split(".")
            if parts[0] == "attributes" and len(parts) > 1:
                name = ".".join(parts[:2])
            elif parts[0] in MERGE_FIELDS:
                name = parts[0]
            else:
                continue
            has_fallback = bool(re.search(r"\|\s*(default|default_if_none)\s*:", expression))
            guarded = any(name in g or parts[0] in g for g in guards)
            tags.append(MergeTag(name=name, line=token.lineno, has_fallback=has_fallback, guarded=guarded))
    return tags


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in {"a", "area"}:
            href = dict(attrs).get("href")
            if href is not None:
                self.links.append(href)


def link_problems(html: str) -> list[str]:
    """Return what is wrong with the links of rendered HTML."""
    parser = _Links()
    parser.feed(html)
    problems = []
    for href in parser.links:
        link = href.strip()
        if not link:
            problems.append("A link has an empty address.")
            continue
        if link.startswith("#"):
            continue
        parts = urlsplit(link)
        scheme = parts.scheme.lower()
        if scheme == "javascript":
            problems.append(f"“{link[:60]}” runs script; links must go to a web page or an address.")
        elif scheme in {"mailto", "tel"}:
            if not parts.path:
                problems.append(f"“{link}” has no address.")
        elif scheme not in {"http", "https"} or not parts.netloc or " " in link:
            problems.append(f"“{link[:80]}” is not a full web address (it must start with https://).")
    return problems


def _sources(compiled: CompiledMessage) -> dict[str, str]:
    return {"Subject": compiled.subject.source, "HTML": compiled.html_source, "Text": compiled.text.source}


def _unguarded_tags(sources: dict[str, str]) -> dict[str, list[tuple[str, MergeTag]]]:
    """The merge tags printed with no fallback and no ``if`` around them, by name, with where they are."""
    unsafe: dict[str, list[tuple[str, MergeTag]]] = {}
    for part, source in sources.items():
        for tag in merge_tags(source):
            if tag.has_fallback or tag.guarded or tag.name in ALWAYS_PRESENT:
                continue
            unsafe.setdefault(tag.name, []).append((part, tag))
    return unsafe


def unguarded_names(compiled: CompiledMessage) -> frozenset[str]:
    """Name the merge tags a recipient must have a value for (no fallback, no ``if``), e.g. first_name."""
    return frozenset(_unguarded_tags(_sources(compiled)))


def missing_for(names: frozenset[str], context: dict[str, Any]) -> str:
    """Return the first of ``names`` this recipient's context has no value for (sorted), else ""."""
    for name in sorted(names):
        if name.startswith("attributes."):
            value = (context.get("attributes") or {}).get(name.split(".", 1)[1])
        else:
            value = context.get(name)
        if value is None or (isinstance(value, str) and not value.strip()) or value == []:
            return name
    return ""


def check_content(compiled: CompiledMessage, *, label: str = "", audience: Any = None,
                  allow_sensitive: bool = False, sensitive_keys: set[str] | None = None) -> list[Problem]:
    """Return the problems of one compiled variant (``audience``: a queryset of recipients, if known)."""
    from campaigns.content.personalize import missing_values

    prefix = f"{label}: " if label else ""
    problems: list[Problem] = []
    sources = _sources(compiled)
    unsafe = _unguarded_tags(sources)
    if unsafe:
        plain = [n for n in unsafe if not n.startswith("attributes.")]
        missing = missing_values(audience, plain) if audience is not None else {}
        for name, tags in unsafe.items():
            where = ", ".join(dict.fromkeys(f"{part} line {t.line}" for part, t in tags))
            if audience is not None and not name.startswith("attributes.") and missing.get(name) == 0:
                continue
            if audience is not None and name.startswith("attributes."):
                key = name.split(".", 1)[1]
                if not audience.exclude(attributes__has_key=key).exists():
                    continue
            count = missing.get(name)
            who = (f"{count:,} recipients have no value" if count else "some recipients may have no value")
            problems.append(Problem("error", f"{prefix}{{{{ {name} }}}} ({where}) has no fallback and {who}; "
                                             f'write {{{{ {name}|default:"…" }}}}.'))
    sensitive_keys = sensitive_keys or set()
    used_sensitive = sorted({t.name.split(".", 1)[1] for s in sources.values() for t in merge_tags(s)
                             if t.name.startswith("attributes.") and t.name.split(".", 1)[1] in sensitive_keys})
    if used_sensitive and not allow_sensitive:
        problems.append(Problem("error", f"{prefix}uses sensitive attributes ({', '.join(used_sensitive)}); record "
                                         "why in the campaign's “sensitive justification”, or remove them."))
    everything = " ".join(sources.values())
    for name, label_text in (("unsubscribe_url", "unsubscribe"), ("preferences_url", "preference-center")):
        if not re.search(r"{{\s*" + name + r"\b", everything):
            problems.append(Problem("error", f"{prefix}the {label_text} link is missing; add "
                                             f"<a href=\"{{{{ {name} }}}}\">…</a> (the layout's footer is a good "
                                             "place)."))
    unknown = sorted(compiled.variables - set(MERGE_FIELDS) - APP_NAMES)
    if unknown:
        problems.append(Problem("warning", f"{prefix}{', '.join('{{ ' + n + ' }}' for n in unknown)} "
                                           "is not a merge field and will be empty."))
    empty = compiled.render(empty_context())
    for message in link_problems(empty.html):
        problems.append(Problem("error", prefix + message))
    size = len(empty.html.encode())
    if size > GMAIL_CLIP_BYTES:
        problems.append(Problem("error", f"{prefix}the HTML is {size / 1024:.0f} KB; Gmail clips messages over "
                                         "102 KB and hides the rest (and the unsubscribe link)."))
    elif size > GMAIL_CLIP_BYTES * 0.85:
        problems.append(Problem("warning", f"{prefix}the HTML is {size / 1024:.0f} KB, close to Gmail's 102 KB "
                                           "clipping limit."))
    if not empty.subject.strip():
        problems.append(Problem("error", f"{prefix}the subject is empty for a person with no data."))
    return problems
