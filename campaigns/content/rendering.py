"""Compile email content once per variant and render it per recipient, fast and sandboxed.

Compiling does everything that is the same for every recipient: reusable
content blocks are inserted, the HTML goes into its layout with the
preheader, CSS is inlined (``css_inline``), the plain-text part is derived
from the HTML when it is empty, and the four parts become template objects
of the sandboxed engine (``campaigns.content.sandbox``), each then turned into
plain Python functions (``compile_renderer``) that give the engine's output
byte for byte in a third of its time. Rendering only fills in the
recipient's plain-data context.
"""

from __future__ import annotations

import copy
import functools
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from html import escape as html_escape
from html import unescape
from html.parser import HTMLParser
from typing import Any

import css_inline
from django.template import Context, Engine, Template, TemplateSyntaxError, VariableDoesNotExist
from django.template.base import (
    FilterExpression,
    Lexer,
    Node,
    NodeList,
    TextNode,
    TokenType,
    Variable,
    VariableNode,
    render_value_in_context,
)
from django.template.defaulttags import CommentNode, ForNode, IfNode, TemplateLiteral, WithNode
from django.template.smartif import Literal
from django.utils.safestring import SafeData, SafeString, mark_safe

from campaigns.content.sandbox import RECIPIENT_LOCALE, SEGMENTS_KEY, IfSegmentNode, RecommendationsNode, segments_used

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
    _html: Renderer = field(init=False, repr=False, compare=False)
    _subject: Renderer = field(init=False, repr=False, compare=False)
    _text: Renderer = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        parts = (self.html.nodelist, self.subject.nodelist, self.text.nodelist)
        shared = shared_expressions(*parts)
        self._html = compile_renderer(parts[0], autoescape=True, shared=shared)
        self._subject = compile_renderer(parts[1], autoescape=False, shared=shared)
        self._text = compile_renderer(parts[2], autoescape=False, shared=shared)

    def render(self, context: Mapping[str, Any], *, locale: str = "en", currency: str = "EUR") -> RenderedMessage:
        token = RECIPIENT_LOCALE.set((locale or "en", currency or "EUR"))
        try:
            # Localization is the sandbox filters' job (money, number, date, in the recipient's locale);
            # Django's own per-variable l10n would ask for the active language at every tag.
            # One Context for the three parts (the compiled parts escape by themselves; ``autoescape`` and
            # ``template`` are for Django's own nodes such as firstof), and the merge tags' shared values.
            ctx = Context(context, autoescape=True, use_l10n=False, use_tz=False)
            ctx.template, ctx.shared_values = self.html, {}
            html = SafeString(self._html(ctx))
            ctx.autoescape, ctx.template = False, self.subject
            subject = " ".join(self._subject(ctx).split())
            ctx.template = self.text
            text = _tidy_text(self._text(ctx))
        finally:
            RECIPIENT_LOCALE.reset(token)
        return RenderedMessage(subject=subject, html=html, text=text)

    def render_with_django(self, context: Mapping[str, Any], *, locale: str = "en",
                           currency: str = "EUR") -> RenderedMessage:
        """Render through Django's own template nodes: what ``render`` must equal, byte for byte."""
        token = RECIPIENT_LOCALE.set((locale or "en", currency or "EUR"))
        try:
            ctx = Context(context, autoescape=True, use_l10n=False, use_tz=False)
            html = self.html.render(ctx)
            text_ctx = Context(context, autoescape=False, use_l10n=False, use_tz=False)
            subject = " ".join(self.subject.render(text_ctx).split())
            text = _tidy_text(self.text.render(text_ctx))
        finally:
            RECIPIENT_LOCALE.reset(token)
        return RenderedMessage(subject=subject, html=html, text=text)


# --- Per-recipient rendering --------------------------------------------------
# Django renders each merge tag through six layers of generic code (node, filter expression, variable,
# context lookup, localization, conditional escaping), each asking again what is the same for every
# recipient: which filters need autoescaping, what a literal argument is, whether the part escapes.
# ``compile_renderer`` turns a part's node tree once into nested functions for the sandbox's tags, with
# those answers worked out and adjacent static text joined. Each function follows the Django code it
# replaces step for step (its source is named); anything unusual on the way (a missing or callable
# value, an object that is not a dict, a tag outside the sandbox's own) goes through Django's own code,
# so the output is the same byte for byte (``CompiledMessage.render_with_django`` is the reference).

#: ``html.escape`` for merge-tag values, kept per value: names, cities, product names and links recur from one
#: recipient to the next, and a message escapes about twenty values.
escape = functools.lru_cache(maxsize=8192)(html_escape)


Renderer = Callable[[Context], str]


def compile_renderer(nodelist: NodeList, *, autoescape: bool, shared: frozenset[Key] = frozenset()) -> Renderer:
    """Return a function rendering ``nodelist`` (of the sandbox engine) for a context, as NodeList.render.

    The values of the ``shared`` expressions are kept in the context's
    ``shared_values`` dict the first time they are resolved.
    """
    parts: list[Any] = []
    for node in nodelist:
        if isinstance(node, (TextNode, CommentNode)):
            text = node.s if isinstance(node, TextNode) else ""
            if parts and isinstance(parts[-1], str):
                parts[-1] += text
            else:
                parts.append(text)
        else:
            parts.append(_compile_node(node, autoescape, shared))
    if not parts:
        return lambda context: ""
    if len(parts) == 1:
        only = parts[0]
        return only if callable(only) else lambda context: only
    slots = [(i, part) for i, part in enumerate(parts) if callable(part)]
    template = [part if isinstance(part, str) else "" for part in parts]

    def render(context: Context) -> str:
        out = template.copy()
        for i, part in slots:
            out[i] = part(context)
        return "".join(out)

    return render


def _compile_node(node: Node, autoescape: bool, shared: frozenset[Key]) -> Renderer:
    kind = type(node)
    if kind is VariableNode:
        return _compile_variable_node(node, autoescape, shared)
    if kind is IfNode:
        return _compile_if(node, autoescape, shared)
    if kind is ForNode:
        return _compile_for(node, autoescape)
    if kind is WithNode:
        return _compile_with(node, autoescape)
    if kind is IfSegmentNode:
        return _compile_ifsegment(node, autoescape, shared)
    if kind is RecommendationsNode:
        return _compile_recommendations(node, autoescape)
    return node.render_annotated  # firstof and anything else: Django's own node


Key = tuple[str, bool]


def _key(expression: FilterExpression, ignore_failures: bool) -> Key | None:
    """What names an expression's value in ``shared_values``; None when it depends on the part's escaping."""
    if any(getattr(func, "needs_autoescape", False) for func, _ in expression.filters):
        return None
    return (expression.token, ignore_failures)


def shared_expressions(*nodelists: NodeList) -> frozenset[Key]:
    """Return the expressions a message's parts resolve more than once in the same scope.

    Within one message the HTML, the subject and the text read the same
    context, so ``{{ first_name|default:"there" }}`` in the HTML and in the
    text has the same value: it is resolved once and escaped per part.
    Only outside loops and ``with`` blocks (where names change), for
    filters that do not depend on escaping, and only when no tag of the
    message can write to the context (``firstof … as``): otherwise nothing.
    """
    counts: dict[Key, int] = {}

    def count(key: Key | None) -> None:
        if key is not None:
            counts[key] = counts.get(key, 0) + 1

    def walk(nodelist: NodeList, top: bool) -> bool:
        for node in nodelist:
            kind = type(node)
            if kind is TextNode or kind is CommentNode:
                continue
            if kind is VariableNode:
                if top:
                    count(_key(node.filter_expression, False))
            elif kind is IfNode:
                for condition, branch in node.conditions_nodelists:
                    if top and isinstance(condition, TemplateLiteral):
                        count(_key(condition.value, True))
                    if not walk(branch, top):
                        return False
            elif kind is IfSegmentNode:
                if not (walk(node.inside, top) and walk(node.otherwise, top)):
                    return False
            elif kind is ForNode:
                if not (walk(node.nodelist_loop, False) and walk(node.nodelist_empty, False)):
                    return False
            elif kind is WithNode:
                if not walk(node.nodelist, False):
                    return False
            elif kind is RecommendationsNode:
                if not (walk(node.body, False) and walk(node.empty, False)):
                    return False
            else:
                return False
        return True

    if not all(walk(nodelist, True) for nodelist in nodelists):
        return frozenset()
    return frozenset(key for key, n in counts.items() if n > 1)


_UNSET = object()


def _shared(resolve: Callable[[Context], Any], key: Key) -> Callable[[Context], Any]:
    def resolve_once(context: Context) -> Any:
        values = context.shared_values
        value = values.get(key, _UNSET)
        if value is _UNSET:
            value = values[key] = resolve(context)
        return value

    return resolve_once


def _compile_lookup(variable: Variable) -> Callable[[Context], Any]:
    """Return ``variable.resolve`` (django.template.base.Variable) for plain data.

    Django looks the name up in the context's dicts, innermost first (a name
    in none of them raises VariableDoesNotExist), and each further part as a
    key; when that fails it tries attributes and list indexes, and it calls
    what is callable. Those cases go to Django's own code.
    """
    lookups = variable.lookups
    if lookups is None or variable.translate or _is_int(lookups[0]):
        return variable.resolve
    first, rest = lookups[0], lookups[1:]
    slow = variable.resolve

    def lookup(context: Context) -> Any:
        dicts = context.dicts
        scope = dicts[-1]  # the recipient's data, or the innermost loop's
        if first in scope:
            value = scope[first]
        else:
            for scope in reversed(dicts):
                if first in scope:
                    value = scope[first]
                    break
            else:
                raise VariableDoesNotExist("Failed lookup for key [%s] in %r", (first, context))
        for bit in rest:
            if type(value) is dict and bit in value:
                value = value[bit]
            else:
                return slow(context)
        return slow(context) if callable(value) else value

    return lookup


def _is_int(bit: str) -> bool:
    try:
        int(bit)
    except ValueError:
        return False
    return True


def _compile_expression(expression: FilterExpression, *, autoescape: bool,
                        ignore_failures: bool = False) -> Callable[[Context], Any]:
    """Return ``expression.resolve(context, ignore_failures)`` (django.template.base.FilterExpression).

    The sandbox engines render without time zones (so ``expects_localtime``
    converts nothing) and with ``string_if_invalid=""``.
    """
    invalid = None if ignore_failures else ""
    if expression.is_var:
        lookup = _compile_lookup(expression.var)
    else:
        constant = expression.var

        def lookup(context: Context) -> Any:
            return constant

    steps = []
    for func, args in expression.filters:
        # As Django: a literal argument is marked safe (it is the template author's text).
        arguments = tuple((None, mark_safe(arg)) if not is_lookup else (_compile_lookup(arg), None)  # noqa: S308
                          for is_lookup, arg in args)
        steps.append((func, arguments, bool(getattr(func, "needs_autoescape", False)),
                      bool(getattr(func, "is_safe", False))))

    if not steps:
        def resolve(context: Context) -> Any:
            try:
                return lookup(context)
            except VariableDoesNotExist:
                return invalid

        return resolve

    if len(steps) == 1 and not steps[0][2] and not steps[0][3] and all(a[0] is None for a in steps[0][1]):
        func, constants = steps[0][0], tuple(a[1] for a in steps[0][1])  # e.g. default:"there", money

        def resolve_one(context: Context) -> Any:
            try:
                value = lookup(context)
            except VariableDoesNotExist:
                value = invalid
            return func(value, *constants)

        return resolve_one

    def resolve_filtered(context: Context) -> Any:
        try:
            value = lookup(context)
        except VariableDoesNotExist:
            value = invalid
        for func, arguments, needs_autoescape, is_safe in steps:
            values = [constant if lookup is None else lookup(context) for lookup, constant in arguments]
            new = func(value, *values, autoescape=autoescape) if needs_autoescape else func(value, *values)
            value = mark_safe(new) if is_safe and isinstance(value, SafeData) else new  # noqa: S308 - as Django
        return value

    return resolve_filtered


def _compile_variable_node(node: VariableNode, autoescape: bool, shared: frozenset[Key]) -> Renderer:
    """``VariableNode.render``: resolve, then ``render_value_in_context`` (a plain str is only escaped)."""
    resolve = _compile_expression(node.filter_expression, autoescape=autoescape)
    key = _key(node.filter_expression, False)
    if key in shared:
        resolve = _shared(resolve, key)

    def render(context: Context) -> str:
        try:
            value = resolve(context)
        except UnicodeDecodeError:
            return ""
        kind = type(value)
        if kind is str:
            return escape(value) if autoescape else value
        if kind is SafeString:  # a literal fallback ({{ x|default:"…" }}): conditional_escape leaves it as it is
            return value
        return render_value_in_context(value, context)

    return render


class _Operand:
    """A smartif operand whose ``eval`` is a compiled expression."""

    def __init__(self, evaluate: Callable[[Context], Any]):
        self.eval = evaluate


def _compile_condition(condition: Any, autoescape: bool,
                       shared: frozenset[Key] = frozenset()) -> Callable[[Context], Any]:
    """Return ``condition.eval``: Django's operators over compiled operands (django.template.smartif)."""
    if isinstance(condition, TemplateLiteral):
        resolve = _compile_expression(condition.value, autoescape=autoescape, ignore_failures=True)
        key = _key(condition.value, True)
        return _shared(resolve, key) if key in shared else resolve
    if isinstance(condition, Literal):
        return condition.eval
    operator = copy.copy(condition)
    for side in ("first", "second"):
        operand = getattr(condition, side, None)
        if operand is not None:
            setattr(operator, side, _Operand(_compile_condition(operand, autoescape)))
    return operator.eval


def _compile_if(node: IfNode, autoescape: bool, shared: frozenset[Key]) -> Renderer:
    """``IfNode.render``."""
    branches = [(None if condition is None else _compile_condition(condition, autoescape, shared),
                 compile_renderer(nodelist, autoescape=autoescape, shared=shared))
                for condition, nodelist in node.conditions_nodelists]

    def render(context: Context) -> str:
        for condition, body in branches:
            if condition is None:
                return body(context)
            try:
                match = condition(context)
            except VariableDoesNotExist:
                match = None
            if match:
                return body(context)
        return ""

    return render


def _compile_for(node: ForNode, autoescape: bool) -> Renderer:
    """``ForNode.render`` (django.template.defaulttags)."""
    sequence = _compile_expression(node.sequence, autoescape=autoescape, ignore_failures=True)
    body = compile_renderer(node.nodelist_loop, autoescape=autoescape)
    empty = compile_renderer(node.nodelist_empty, autoescape=autoescape)
    loopvars, is_reversed = node.loopvars, node.is_reversed
    num_loopvars = len(loopvars)
    unpack = num_loopvars > 1

    def render(context: Context) -> str:
        parentloop = context["forloop"] if "forloop" in context else {}  # noqa: SIM401 - as Django
        with context.push():
            values = sequence(context)
            if values is None:
                values = []
            if not hasattr(values, "__len__"):
                values = list(values)
            len_values = len(values)
            if len_values < 1:
                return empty(context)
            out = []
            if is_reversed:
                values = reversed(values)
            loop_dict = context["forloop"] = {"parentloop": parentloop}
            for i, item in enumerate(values):
                loop_dict["counter0"] = i
                loop_dict["counter"] = i + 1
                loop_dict["revcounter"] = len_values - i
                loop_dict["revcounter0"] = len_values - i - 1
                loop_dict["first"] = i == 0
                loop_dict["last"] = i == len_values - 1
                if unpack:
                    try:
                        len_item = len(item)
                    except TypeError:
                        len_item = 1
                    if num_loopvars != len_item:
                        raise ValueError(f"Need {num_loopvars} values to unpack in for loop; got {len_item}. ")
                    context.update(dict(zip(loopvars, item, strict=True)))
                    out.append(body(context))
                    context.pop()
                else:
                    context[loopvars[0]] = item
                    out.append(body(context))
        return "".join(out)

    return render


def _compile_with(node: WithNode, autoescape: bool) -> Renderer:
    """``WithNode.render``."""
    values = [(key, _compile_expression(value, autoescape=autoescape)) for key, value in node.extra_context.items()]
    body = compile_renderer(node.nodelist, autoescape=autoescape)

    def render(context: Context) -> str:
        with context.push(**{key: value(context) for key, value in values}):
            return body(context)

    return render


def _compile_ifsegment(node: IfSegmentNode, autoescape: bool, shared: frozenset[Key]) -> Renderer:
    """``IfSegmentNode.render`` (campaigns.content.sandbox)."""
    segment = node.segment
    inside = compile_renderer(node.inside, autoescape=autoescape, shared=shared)
    otherwise = compile_renderer(node.otherwise, autoescape=autoescape, shared=shared)

    def render(context: Context) -> str:
        members_of = context.get(SEGMENTS_KEY) or ()
        return inside(context) if segment in members_of else otherwise(context)

    return render


def _compile_recommendations(node: RecommendationsNode, autoescape: bool) -> Renderer:
    """``RecommendationsNode.render`` (campaigns.content.sandbox).

    Recipients share recommendations (the bestsellers of a category), so a
    loop body that reads nothing but ``product`` is rendered once per list
    of products and locale, and kept.
    """
    body = compile_renderer(node.body, autoescape=autoescape)
    empty = compile_renderer(node.empty, autoescape=autoescape)
    limit = node.limit
    kept: dict[tuple[Any, ...], str] | None = {} if _reads_only_product(node.body) else None

    def render(context: Context) -> str:
        items = list(context.get("recommendations") or [])[:limit]
        if not items:
            return empty(context)
        key = _products_key(items) if kept is not None else None
        if key is not None:
            key = (key, RECIPIENT_LOCALE.get())
            if key in kept:
                return kept[key]
        parts = []
        with context.push():
            for item in items:
                context["product"] = item
                parts.append(body(context))
        out = "".join(parts)
        if key is not None:
            if len(kept) >= 4096:
                kept.clear()
            kept[key] = out
        return out

    return render


def _reads_only_product(nodelist: NodeList) -> bool:
    """Say whether a loop body is text and merge tags of ``product`` with literal filter arguments only."""
    for node in nodelist:
        if isinstance(node, (TextNode, CommentNode)):
            continue
        if type(node) is not VariableNode:
            return False
        expression = node.filter_expression
        if not expression.is_var or not expression.var.lookups or expression.var.lookups[0] != "product":
            return False
        if any(is_lookup for _, args in expression.filters for is_lookup, _ in args):
            return False
    return True


def _products_key(items: list[Any]) -> tuple[Any, ...] | None:
    """Return what tells one list of products from another, or None for values that are not plain data.

    Numbers go in as type and text: 1.0 and 1.00 are equal but print differently.
    """
    key: list[Any] = []
    for item in items:
        if type(item) is not dict:
            return None
        for name, value in item.items():
            kind = type(value)
            if kind is str or value is None:
                key.append((name, value))
            elif kind is int or kind is float or kind is Decimal:
                key.append((name, kind, str(value)))
            else:
                return None
        key.append(None)
    return tuple(key)


_BLANK_RUNS = re.compile(r"[ \t]+\n")
_MANY_NEWLINES = re.compile(r"\n\n\n+")  # \n{3,}, written so the regex engine scans for its literal start


def _tidy_text(text: str) -> str:
    """Drop the blank lines that template tags leave in the plain-text part."""
    if " \n" in text or "\t\n" in text:  # a substring search is ten times quicker than the regex finding nothing
        text = _BLANK_RUNS.sub("\n", text)
    return _MANY_NEWLINES.sub("\n\n", text).strip() + "\n"


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


def _protect_as_comments(source: str) -> tuple[str, list[str]]:
    """Swap template tags for markers the HTML parser keeps in place: comments between elements.

    A plain-word marker between table rows is text where a table allows
    none, and an HTML parser moves it out in front of the table (so a
    ``{% for %}`` around rows would end up repeating nothing). A comment
    stays where it is. Inside a tag (an attribute value) a comment would be
    escaped, so there the plain-word marker is used.
    """
    saved: list[str] = []
    out: list[str] = []
    position = 0
    for match in _TEMPLATE_TAG.finditer(source):
        out.append(source[position:match.start()])
        saved.append(match.group(0))
        inside_tag = source.rfind("<", 0, match.start()) > source.rfind(">", 0, match.start())
        marker = f"MKTPL{len(saved) - 1}MKTPL"
        out.append(marker if inside_tag else f"<!--{marker}-->")
        position = match.end()
    out.append(source[position:])
    return "".join(out), saved


def inline_css(html: str) -> str:
    """Inline the ``<style>`` rules into ``style`` attributes, leaving template tags where they were."""
    protected, saved = _protect_as_comments(html)
    inliner = css_inline.CSSInliner(keep_style_tags=False, load_remote_stylesheets=False)
    inlined = inliner.inline(protected)
    inlined = re.sub(r"<!--MKTPL(\d+)MKTPL-->", lambda m: f"MKTPL{m.group(1)}MKTPL", inlined)
    return _restore(inlined, saved)


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
