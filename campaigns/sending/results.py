"""Read a campaign's results: per variant, per audience segment, and against the hold-out group.

Counts come from the per-message totals the tracking keeps (``MessageStats``)
and the deliveries; conversions are the recipients' orders within the
campaign's conversion window after their email was sent. For A/B tests each
variant gets the probability that it is the best on the chosen metric
(Bayesian: Beta posteriors for rates, a normal approximation for revenue per
recipient), from a fixed-seed simulation so the same data always gives the
same answer; for two variants on a rate the exact value is also available
(``probability_b_beats_a``).
"""

from __future__ import annotations

import datetime as dt
import math
import random
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.db.models import Count, DecimalField, Exists, OuterRef, Q, Subquery, Sum, Value
from django.db.models.functions import Coalesce

from campaigns.content.models import Campaign
from campaigns.models import Delivery, DeliveryStatus, MessageStats
from campaigns.sending.models import Recipient, RecipientGroup, RecipientStatus

SIMULATIONS = 20_000


@dataclass
class VariantResult:
    variant_id: int
    label: str
    recipients: int = 0
    sent: int = 0
    delivered: int = 0
    unique_opens: int = 0
    machine_opens: int = 0
    unique_clicks: int = 0
    unsubscribes: int = 0
    bounces: int = 0
    complaints: int = 0
    failed: int = 0
    conversions: int = 0
    revenue: Decimal = Decimal("0")
    revenue_squares: float = 0.0
    probability_best: float | None = None
    lift: float | None = None

    @property
    def base(self) -> int:
        return self.delivered or self.sent

    def rate(self, part: int) -> float:
        return part / self.base if self.base else 0.0

    @property
    def open_rate(self) -> float:
        return self.rate(self.unique_opens)

    @property
    def click_rate(self) -> float:
        return self.rate(self.unique_clicks)

    @property
    def conversion_rate(self) -> float:
        return self.conversions / self.sent if self.sent else 0.0

    @property
    def revenue_per_recipient(self) -> float:
        return float(self.revenue) / self.sent if self.sent else 0.0

    def metric(self, name: str) -> float:
        return {"click_rate": self.click_rate, "open_rate": self.open_rate, "conversion_rate": self.conversion_rate,
                "revenue": self.revenue_per_recipient}[name]

    def successes(self, name: str) -> int:
        return {"click_rate": self.unique_clicks, "open_rate": self.unique_opens,
                "conversion_rate": self.conversions}[name]


def _orders_after(window: dt.timedelta, sent_field: str = "sent_at") -> tuple[Exists, Subquery]:
    from subscribers.models import Order

    orders = Order.objects.filter(subscriber_id=OuterRef("subscriber_id"), occurred_at__gte=OuterRef(sent_field),
                                  occurred_at__lt=OuterRef(sent_field) + window)
    revenue = Subquery(orders.order_by().values("subscriber_id").annotate(total=Sum("revenue")).values("total")[:1],
                       output_field=DecimalField())
    return Exists(orders), revenue


def variant_results(campaign: Campaign) -> list[VariantResult]:
    """Return each variant's results, with the probability of being best on the campaign's metric."""
    from campaigns.sending.actions import message_key

    window = dt.timedelta(days=campaign.conversion_window_days)
    results = []
    for variant in campaign.variants.order_by("label"):
        key = message_key(campaign.pk, variant.pk)
        stats = MessageStats.objects.filter(message_key=key).first()
        result = VariantResult(variant_id=variant.pk, label=variant.label)
        result.recipients = Recipient.objects.filter(campaign=campaign, variant=variant).count()
        converted, revenue = _orders_after(window)
        deliveries = Delivery.objects.filter(message_key=key, sent_at__isnull=False).annotate(
            converted=converted, revenue_total=Coalesce(revenue, Value(Decimal("0")), output_field=DecimalField()))
        totals = deliveries.aggregate(conversions=Count("pk", filter=Q(converted=True)),
                                      revenue=Sum("revenue_total"),
                                      machine=Count("pk", filter=Q(machine_open_count__gt=0,
                                                                   first_opened_at__isnull=True)))
        result.conversions = totals["conversions"] or 0
        result.revenue = totals["revenue"] or Decimal("0")
        result.machine_opens = totals["machine"] or 0
        result.revenue_squares = sum(float(v) ** 2 for v in deliveries.filter(converted=True)
                                     .values_list("revenue_total", flat=True))
        if stats:
            for name in ("sent", "delivered", "unique_opens", "unique_clicks", "unsubscribes", "bounces",
                         "complaints", "failed"):
                setattr(result, name, getattr(stats, name))
        results.append(result)
    if len(results) > 1:
        for result, probability in zip(results, probability_best(results, campaign.winner_metric), strict=True):
            result.probability_best = probability
    holdout = holdout_result(campaign)
    if holdout and holdout["recipients"]:
        for result in results:
            result.lift = _lift(result.conversion_rate, holdout["conversion_rate"])
    return results


def holdout_result(campaign: Campaign) -> dict[str, Any] | None:
    """Return the hold-out group's conversions in the window after the campaign started (it got nothing)."""
    if not campaign.holdout_percent or campaign.started_at is None:
        return None
    from subscribers.models import Order

    window = dt.timedelta(days=campaign.conversion_window_days)
    held = Recipient.objects.filter(campaign=campaign, group=RecipientGroup.HOLDOUT)
    converted = Exists(Order.objects.filter(subscriber_id=OuterRef("subscriber_id"),
                                            occurred_at__gte=campaign.started_at,
                                            occurred_at__lt=campaign.started_at + window))
    totals = held.annotate(converted=converted).aggregate(n=Count("pk"), conversions=Count("pk",
                                                                                           filter=Q(converted=True)))
    revenue = Order.objects.filter(subscriber_id__in=held.values("subscriber_id"),
                                   occurred_at__gte=campaign.started_at,
                                   occurred_at__lt=campaign.started_at + window).aggregate(r=Sum("revenue"))["r"]
    n = totals["n"] or 0
    return {"recipients": n, "conversions": totals["conversions"] or 0,
            "conversion_rate": (totals["conversions"] or 0) / n if n else 0.0,
            "revenue": revenue or Decimal("0"),
            "revenue_per_recipient": float(revenue or 0) / n if n else 0.0}


def _lift(rate: float, baseline: float) -> float | None:
    return (rate - baseline) / baseline if baseline else None


def probability_best(results: list[VariantResult], metric: str, *, seed: int = 1) -> list[float]:
    """Return, per variant, the probability that it is the best on ``metric`` (fixed-seed simulation)."""
    rng = random.Random(seed)
    if metric == "revenue":
        params = []
        for r in results:
            n = max(r.sent, 1)
            mean = float(r.revenue) / n
            variance = max(r.revenue_squares / n - mean ** 2, 0.0)
            params.append((mean, math.sqrt(variance / n) if n > 1 else 0.0))

        def draw(i: int) -> float:
            mean, spread = params[i]
            return rng.gauss(mean, spread) if spread else mean
    else:
        shapes = [(1 + r.successes(metric), 1 + max(r.base - r.successes(metric), 0)) for r in results]

        def draw(i: int) -> float:
            return rng.betavariate(*shapes[i])
    wins = [0] * len(results)
    for _ in range(SIMULATIONS):
        values = [draw(i) for i in range(len(results))]
        wins[values.index(max(values))] += 1
    return [w / SIMULATIONS for w in wins]


def probability_b_beats_a(successes_a: int, trials_a: int, successes_b: int, trials_b: int) -> float:
    """Return P(rate B > rate A) exactly for Beta(1+s, 1+n−s) posteriors (Evan Miller's closed form)."""
    alpha_a, beta_a = 1 + successes_a, 1 + trials_a - successes_a
    alpha_b, beta_b = 1 + successes_b, 1 + trials_b - successes_b

    def log_beta(a: float, b: float) -> float:
        return math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)

    total = 0.0
    for i in range(alpha_b):
        total += math.exp(log_beta(alpha_a + i, beta_a + beta_b) - math.log(beta_b + i)
                          - log_beta(1 + i, beta_b) - log_beta(alpha_a, beta_a))
    return total


def progress(campaign: Campaign) -> dict[str, Any]:
    """Return how far sending got: recipients by status, and skips and deferrals by reason."""
    by_status = dict(Recipient.objects.filter(campaign=campaign).values_list("status").annotate(n=Count("pk"))
                     .values_list("status", "n"))
    reasons = list(Recipient.objects.filter(campaign=campaign, status__in=[RecipientStatus.SKIPPED,
                                                                            RecipientStatus.FAILED])
                   .values_list("reason").annotate(n=Count("pk")).order_by("-n").values_list("reason", "n")[:12])
    deferred = list(Recipient.objects.filter(campaign=campaign, status=RecipientStatus.PENDING)
                    .exclude(reason="").values_list("reason").annotate(n=Count("pk")).order_by("-n")
                    .values_list("reason", "n")[:6])
    total = sum(by_status.values())
    done = sum(by_status.get(s, 0) for s in (RecipientStatus.SENT, RecipientStatus.SKIPPED, RecipientStatus.FAILED,
                                             RecipientStatus.HELD_OUT))
    return {"total": total, "by_status": by_status, "done": done,
            "percent": round(100 * done / total) if total else 0, "reasons": reasons, "deferred": deferred}


def segment_results(campaign: Campaign) -> list[dict[str, Any]]:
    """Return sent, opens, clicks and conversions per included audience segment (one query each)."""
    from campaigns.segments import actions as segment_actions

    window = dt.timedelta(days=campaign.conversion_window_days)
    rows = []
    for use in campaign.audience.filter(exclude=False).select_related("segment"):
        converted, _ = _orders_after(window)
        deliveries = Delivery.objects.filter(message_key__startswith=f"campaign:{campaign.pk}:",
                                             sent_at__isnull=False,
                                             subscriber__in=segment_actions.members(use.segment).values("pk"))
        totals = deliveries.annotate(converted=converted).aggregate(
            sent=Count("pk"), opens=Count("pk", filter=Q(first_opened_at__isnull=False)),
            clicks=Count("pk", filter=Q(first_clicked_at__isnull=False)),
            unsubscribes=Count("pk", filter=Q(status=DeliveryStatus.UNSUBSCRIBED)),
            conversions=Count("pk", filter=Q(converted=True)))
        sent = totals["sent"] or 0
        rows.append({"segment": use.segment.name, **totals,
                     "open_rate": totals["opens"] / sent if sent else 0.0,
                     "click_rate": totals["clicks"] / sent if sent else 0.0})
    return rows
