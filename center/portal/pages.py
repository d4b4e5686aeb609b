"""The customer's portal (личный кабинет): server-rendered pages under /portal over the member
services (center/members/: sign-in by one-time code, balances, history, offers, coupons,
categories, stores, notifications, the e-card), the chain's live promotions and the advertising
blocks of the customer's segment (center/advertising/).

Every page but the two sign-in steps needs a signed-in member: the session (center/portal/
session.py) holds the member's tokens; without one a page sends the browser to the sign-in
page. Routes are public to the staff middleware (a member has no staff credentials); each
handler authenticates the member itself and every form carries the browser's CSRF token.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from datetime import date, datetime
from decimal import Decimal
from functools import wraps
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import aiohttp_jinja2
from aiohttp import web
from babel.dates import format_date
from babel.numbers import format_decimal

from center.access.permissions import PUBLIC, Requirement
from center.errors import RequestError, TooManyAttempts, Unauthorized
from center.members import TokenClaims, parse_address
from center.portal import history as purchases
from center.portal.ecard import barcode_svg, qr_svg
from center.portal.session import (
    CSRF_FIELD,
    caller_ip,
    check_csrf,
    clear_session,
    csrf_of,
    language_of,
    member_of,
    store_tokens,
    write_cookies,
)
from center.web import i18n
from center.web.keys import CLOCK_KEY, STORAGE_KEY
from center.web.pages import TRANSLATIONS_KEY
from center.web.request import ID_PATTERN, in_db

__all__ = ["CSP", "MENU", "PERMISSIONS", "add_routes"]

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: https:; "
    "media-src https:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
)
"""Scripts and styles only from /static; advertising media from any https host."""


def N_(text: str) -> str:
    """Mark a text for the catalogues; the template translates it when shown."""
    return text


MENU: tuple[tuple[str, str, str], ...] = (
    ("home", "/portal", N_("Home")),
    ("offers", "/portal/offers", N_("Promotions and offers")),
    ("coupons", "/portal/coupons", N_("Coupons")),
    ("categories", "/portal/categories", N_("Favourite categories")),
    ("stores", "/portal/stores", N_("Stores")),
    ("history", "/portal/history", N_("Purchase history")),
    ("notifications", "/portal/notifications", N_("Notifications")),
    ("accruals", "/portal/accruals", N_("Bonus history")),
    ("about", "/portal/about", N_("About the loyalty programme")),
)
"""(key, path, title) of the menu, in the seed's order."""
KIND_NAMES = {
    "accrual": N_("accrued"),
    "spend": N_("spent"),
    "expiry": N_("burnt"),
    "adjustment": N_("adjusted"),
    "reversal": N_("reversed"),
    "debt": N_("debt"),
}
_ROUTES = (
    ("GET", "/portal/sign-in"),
    ("POST", "/portal/sign-in"),
    ("GET", "/portal/code"),
    ("POST", "/portal/code"),
    ("POST", "/portal/sign-out"),
    ("GET", "/portal"),
    ("GET", "/portal/card"),
    ("GET", "/portal/card/qr"),
    ("GET", "/portal/offers"),
    ("POST", "/portal/offers/{offer_id}/activate"),
    ("GET", "/portal/coupons"),
    ("GET", "/portal/categories"),
    ("POST", "/portal/categories"),
    ("GET", "/portal/stores"),
    ("GET", "/portal/history"),
    ("GET", "/portal/history/{sale_id}"),
    ("GET", "/portal/notifications"),
    ("POST", "/portal/notifications/{notification_id}/read"),
    ("GET", "/portal/accruals"),
    ("GET", "/portal/about"),
)
PERMISSIONS: Mapping[tuple[str, str], Requirement] = dict.fromkeys(_ROUTES, PUBLIC)
"""Public to the staff middleware: each handler needs a signed-in member (the session)."""

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_MAX_FORM = 2000
HISTORY_PAGE = 100
HISTORY_PAGES = 50
"""At most 5 000 receipts of one period are read (a year of daily shopping, many times)."""


def add_routes(app: web.Application) -> None:
    """Register the portal's pages."""
    handlers: dict[tuple[str, str], Handler] = {
        ("GET", "/portal/sign-in"): sign_in_form,
        ("POST", "/portal/sign-in"): send_code,
        ("GET", "/portal/code"): code_form,
        ("POST", "/portal/code"): check_code,
        ("POST", "/portal/sign-out"): sign_out,
        ("GET", "/portal"): home,
        ("GET", "/portal/card"): card,
        ("GET", "/portal/card/qr"): card_qr,
        ("GET", "/portal/offers"): offers,
        ("POST", "/portal/offers/{offer_id}/activate"): activate_offer,
        ("GET", "/portal/coupons"): coupons,
        ("GET", "/portal/categories"): categories,
        ("POST", "/portal/categories"): set_categories,
        ("GET", "/portal/stores"): stores,
        ("GET", "/portal/history"): purchase_history,
        ("GET", "/portal/history/{sale_id}"): receipt,
        ("GET", "/portal/notifications"): notifications,
        ("POST", "/portal/notifications/{notification_id}/read"): read_notification,
        ("GET", "/portal/accruals"): accruals,
        ("GET", "/portal/about"): about,
    }
    assert set(handlers) == set(_ROUTES)
    for (method, path), handler in handlers.items():
        app.router.add_route(method, path, handler)


# -- the page frame ------------------------------------------------------------------------------


def _translate(request: web.Request) -> Callable[..., str]:
    translations: dict[str, Any] = request.app[TRANSLATIONS_KEY]
    return i18n.translator(translations, language_of(request))


def _points(amount: int, language: str) -> str:
    """Bonus points in minor units as the locale writes them (12,50)."""
    return str(format_decimal(Decimal(amount).scaleb(-2), "#,##0.00", locale=language))


def render(
    request: web.Request,
    template: str,
    context: Mapping[str, Any] | None = None,
    *,
    status: int = 200,
    member: TokenClaims | None = None,
) -> web.Response:
    """A portal page in the member's language, with the menu, `_` and the formatters."""
    language = language_of(request)
    base: dict[str, Any] = {
        "lang": language,
        "_": _translate(request),
        "money": lambda minor: i18n.money(int(minor), language),
        "points": lambda amount: _points(int(amount), language),
        "quantity": lambda milli: str(
            format_decimal(Decimal(int(milli)).scaleb(-3), "#,##0.###", locale=language)
        ),
        "number": lambda value: i18n.number(int(value), language),
        "day": lambda value: format_date(
            date.fromisoformat(str(value)[:10]) if not isinstance(value, date) else value,
            "medium",
            locale=language,
        ),
        "when": lambda value: i18n.when(value, language),
        "csrf_field": CSRF_FIELD,
        "csrf_token": csrf_of(request),
        "member": member,
        "menu": MENU,
        "path": request.path,
        "errors": {},
        "values": {},
        "notice": "",
    }
    base.update(context or {})
    response = aiohttp_jinja2.render_template(template, request, base, status=status)
    response.headers["Content-Language"] = language
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Content-Security-Policy"] = CSP
    return response


def _redirect(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location})


def _error_page(
    request: web.Request, exc: RequestError, member: TokenClaims | None
) -> web.Response:
    _ = _translate(request)
    if isinstance(exc, TooManyAttempts):
        message = _("Too many attempts: wait a little and try again.")
    elif exc.status == 404:
        message = _("Not found.")
    elif exc.status == 403:
        message = _("The form is out of date: reload the page and try again.")
    else:
        message = _("The request was refused.")
    return render(
        request,
        "portal/error.html",
        {"status": exc.status, "message": message, "detail": str(exc)},
        status=exc.status,
        member=member,
    )


def member_page(
    handler: Callable[[web.Request, TokenClaims], Awaitable[web.StreamResponse]],
) -> Handler:
    """A page of the signed-in member: to the sign-in page without a session, refusals shown
    as a page, the session's cookies written on every answer."""

    @wraps(handler)
    async def page(request: web.Request) -> web.StreamResponse:
        member: TokenClaims | None = None
        try:
            if request.method not in ("GET", "HEAD"):
                await check_csrf(request)
            member = await member_of(request)
            response = await handler(request, member)
        except Unauthorized:
            clear_session(request)
            if request.headers.get("HX-Request"):
                response = web.Response(status=401, headers={"HX-Redirect": "/portal/sign-in"})
            else:
                response = _redirect("/portal/sign-in")
        except RequestError as exc:
            response = _error_page(request, exc, member)
        write_cookies(request, response)
        return response

    return page


def public_page(handler: Handler) -> Handler:
    """A sign-in step: forms checked for CSRF, refusals shown as a page, cookies written."""

    @wraps(handler)
    async def page(request: web.Request) -> web.StreamResponse:
        try:
            if request.method not in ("GET", "HEAD"):
                await check_csrf(request)
            response = await handler(request)
        except RequestError as exc:
            response = _error_page(request, exc, None)
        write_cookies(request, response)
        return response

    return page


def _now(request: web.Request) -> datetime:
    return request.app[CLOCK_KEY]()


async def _form(request: web.Request) -> dict[str, str]:
    posted = await request.post()
    return {k: str(v)[:_MAX_FORM] for k, v in posted.items() if isinstance(v, str)}


async def _chain_zone(request: web.Request) -> ZoneInfo:
    settings = await in_db(request, request.app[STORAGE_KEY].promotions.promotion_settings)
    try:
        return ZoneInfo(str(settings.get("timezone") or "UTC"))
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


async def _ads(request: web.Request, member: TokenClaims | None, placement: str) -> list[Any]:
    repo = request.app[STORAGE_KEY].advertising
    customer_id = member.customer_id if member is not None else None
    found = await in_db(request, repo.blocks_for, customer_id, placement, "portal", _now(request))
    return [b.data for b in found]


# -- sign-in -------------------------------------------------------------------------------------


def _address_body(text: str) -> dict[str, str]:
    text = text.strip()
    return {"email": text} if "@" in text else {"phone": text}


@public_page
async def sign_in_form(request: web.Request) -> web.StreamResponse:
    """Phone or e-mail: a one-time code is sent there."""
    return render(request, "portal/sign_in.html", {"ads": await _ads(request, None, "sign_in")})


@public_page
async def send_code(request: web.Request) -> web.StreamResponse:
    """Send a one-time code (the same answer whether or not the customer exists)."""
    form = await _form(request)
    _ = _translate(request)
    values = {"address": form.get("address", "")[:200]}
    storage = request.app[STORAGE_KEY]
    try:
        address = parse_address(_address_body(values["address"]))
        answer = await in_db(
            request,
            lambda: storage.members.request_code(
                address, caller_ip(request), _now(request), language=language_of(request)
            ),
        )
    except TooManyAttempts as exc:
        errors = {"address": _("Too many codes were asked for: try again later.") + f" ({exc})"}
        return render(
            request, "portal/sign_in.html", {"values": values, "errors": errors}, status=429
        )
    except RequestError:
        errors = {"address": _("Enter a phone number (+7 999 123-45-67) or an e-mail address.")}
        return render(
            request, "portal/sign_in.html", {"values": values, "errors": errors}, status=422
        )
    return _redirect(f"/portal/code?challenge={answer['challenge_id']}&channel={answer['channel']}")


@public_page
async def code_form(request: web.Request) -> web.StreamResponse:
    """The code's form (and, for a new customer, the consents and a first name)."""
    challenge = request.query.get("challenge", "")
    if not ID_PATTERN.match(challenge):
        return _redirect("/portal/sign-in")
    channel = request.query.get("channel", "")
    return render(
        request,
        "portal/code.html",
        {"challenge": challenge, "channel": channel if channel in ("sms", "email") else ""},
    )


@public_page
async def check_code(request: web.Request) -> web.StreamResponse:
    """Sign in (or sign up, on a new address's first code) and go to the portal."""
    form = await _form(request)
    _ = _translate(request)
    challenge = form.get("challenge", "")[:64]
    code = "".join(c for c in form.get("code", "") if c.isdigit())[:6]
    consents = {
        "personal_data": form.get("personal_data") == "yes",
        "advertising": form.get("advertising") == "yes",
    }
    first_name = form.get("first_name", "").strip()[:100]
    context: dict[str, Any] = {
        "challenge": challenge,
        "channel": form.get("channel", "") if form.get("channel") in ("sms", "email") else "",
        "values": {"first_name": first_name, **{k: v for k, v in consents.items() if v}},
    }
    if not ID_PATTERN.match(challenge):
        return _redirect("/portal/sign-in")
    if len(code) != 6:
        context["errors"] = {"code": _("Enter the 6 digits of the code.")}
        return render(request, "portal/code.html", context, status=422)
    storage = request.app[STORAGE_KEY]
    profile = {"first_name": first_name} if first_name and first_name.isprintable() else {}
    try:
        tokens = await in_db(
            request,
            lambda: storage.members.check_code(
                challenge,
                code,
                caller_ip(request),
                _now(request),
                consents=consents,
                profile=profile,
            ),
        )
    except TooManyAttempts:
        context["errors"] = {"code": _("Too many attempts: wait a little and try again.")}
        return render(request, "portal/code.html", context, status=429)
    except RequestError as exc:
        if exc.field == "body.consents.personal_data":
            message = _("To sign up, agree to the processing of personal data.")
            context["errors"] = {"personal_data": message}
        elif exc.field == "body.challenge_id" or "ask for a new" in str(exc):
            context["errors"] = {"code": _("This code can no longer be used: ask for a new one.")}
        else:
            context["errors"] = {"code": _("Wrong code: check it and try again.")}
        return render(request, "portal/code.html", context, status=exc.status)
    store_tokens(request, tokens)
    return _redirect("/portal/categories?welcome=1" if tokens.get("created") else "/portal")


@member_page
async def sign_out(request: web.Request, member: TokenClaims) -> web.StreamResponse:
    """End this sign-in (or every one of the member's, `everywhere=yes`)."""
    form = await _form(request)
    everywhere = form.get("everywhere") == "yes"
    storage = request.app[STORAGE_KEY]
    await in_db(
        request, lambda: storage.members.sign_out(member, _now(request), everywhere=everywhere)
    )
    clear_session(request)
    return _redirect("/portal/sign-in")


# -- pages -----------------------------------------------------------------------------------------


def _wallet_balance(balances: Mapping[str, Any], wallet: str) -> int:
    for row in balances.get("wallets", []):
        if row["wallet"] == wallet:
            return int(row["balance"])
    return 0


@member_page
async def home(request: web.Request, member: TokenClaims) -> web.StreamResponse:
    """Balance, what burns soon, the tier and the way to the next, the e-card, the blocks."""
    storage = request.app[STORAGE_KEY]
    cid, now = member.customer_id, _now(request)
    balances = await in_db(request, storage.members.balances, cid, now)
    tier = await in_db(request, storage.tiers.customer_tier, cid, now)
    profile = await in_db(request, storage.members.profile, cid, now)
    inbox = await in_db(request, storage.members.notifications, cid, now)
    unread = sum(1 for n in inbox["notifications"] if not n["read"])
    context = {
        "page": "home",
        "balances": balances,
        "bonus": _wallet_balance(balances, "bonus"),
        "tier": tier,
        "profile": profile,
        "unread": unread,
        "ads": await _ads(request, member, "home_top"),
    }
    return render(request, "portal/home.html", context, member=member)


async def _own_cards(request: web.Request, member: TokenClaims) -> list[dict[str, Any]]:
    storage = request.app[STORAGE_KEY]
    found = await in_db(request, storage.members.cards, member.customer_id, _now(request))
    return [c for c in found["cards"] if c["status"] == "active"]


async def _qr(request: web.Request, member: TokenClaims, card_no: str) -> dict[str, Any]:
    storage = request.app[STORAGE_KEY]
    answer = await in_db(
        request, storage.members.card_qr, member.customer_id, card_no, _now(request)
    )
    return {**answer, "svg": qr_svg(str(answer["qr"]))}


@member_page
async def card(request: web.Request, member: TokenClaims) -> web.StreamResponse:
    """The e-card: the barcode and the QR code that changes every 30 s (refreshed by htmx)."""
    cards = await _own_cards(request, member)
    chosen = request.query.get("card_no", "")
    current = next((c for c in cards if c["card_no"] == chosen), cards[0] if cards else None)
    context: dict[str, Any] = {"page": "card", "cards": cards, "current": current}
    if current is not None:
        context["barcode"] = barcode_svg(current["card_no"])
        context["qr"] = await _qr(request, member, current["card_no"])
    return render(request, "portal/card.html", context, member=member)


@member_page
async def card_qr(request: web.Request, member: TokenClaims) -> web.StreamResponse:
    """The QR code of this moment (an htmx fragment)."""
    card_no = request.query.get("card_no", "")
    if not ID_PATTERN.match(card_no):
        card_no = ""
    qr = await _qr(request, member, card_no)
    return render(request, "portal/card_qr.html", {"qr": qr}, member=member)


def _segments_of(doc: Mapping[str, Any]) -> list[str]:
    """The segments a promotion is limited to (none: everyone)."""
    found = doc.get("segments")
    customer = doc.get("customer")
    if not found and isinstance(customer, Mapping):
        found = customer.get("segments")
    return [str(s) for s in found] if isinstance(found, list) else []


def supplier_funded(doc: Mapping[str, Any]) -> bool:
    """Whether a promotion is paid for by a supplier (`funding.by` = `supplier:<id>`)."""
    funding = doc.get("funding")
    return isinstance(funding, Mapping) and str(funding.get("by", "")).startswith("supplier:")


@member_page
async def offers(request: web.Request, member: TokenClaims) -> web.StreamResponse:
    """The chain's live promotions this member may get, and their personal offers to
    activate; supplier-funded ones are labelled so."""
    storage = request.app[STORAGE_KEY]
    cid, now = member.customer_id, _now(request)
    personal = await in_db(request, storage.members.offers, cid, now)
    version = await in_db(request, storage.versions.current)
    live = await in_db(request, storage.promotions.promotion_set, version)
    viewer = await in_db(request, storage.advertising.viewer, cid)
    promotions = []
    for promotion_id, doc in live:
        wanted = _segments_of(doc)
        if wanted and not viewer.segments.intersection(wanted):
            continue  # a promotion for other segments is not this member's to see
        if doc.get("kind") in ("restriction", "coupon_restriction"):
            continue
        promotions.append(
            {
                "promotion_id": promotion_id,
                "title": str(doc.get("title") or promotion_id),
                "description": str(doc.get("description") or ""),
                "supplier": supplier_funded(doc),
            }
        )
    context = {
        "page": "offers",
        "promotions": promotions,
        "offers": personal["offers"],
        "done": request.query.get("done", "") == "activated",
        "ads": await _ads(request, member, "offers"),
    }
    return render(request, "portal/offers.html", context, member=member)


@member_page
async def activate_offer(request: web.Request, member: TokenClaims) -> web.StreamResponse:
    """Activate one of the member's personal offers."""
    offer_id = request.match_info["offer_id"]
    if not ID_PATTERN.match(offer_id):
        return _redirect("/portal/offers")
    storage = request.app[STORAGE_KEY]
    await in_db(
        request, storage.members.activate_offer, member.customer_id, offer_id, _now(request)
    )
    return _redirect("/portal/offers?done=activated")


@member_page
async def coupons(request: web.Request, member: TokenClaims) -> web.StreamResponse:
    """The member's coupons: active, used, expired."""
    storage = request.app[STORAGE_KEY]
    found = await in_db(request, storage.members.coupons, member.customer_id, _now(request))
    return render(
        request, "portal/coupons.html", {"page": "coupons", "coupons": found}, member=member
    )


async def _categories_page(
    request: web.Request,
    member: TokenClaims,
    *,
    errors: Mapping[str, str] | None = None,
    status: int = 200,
    notice: str = "",
) -> web.Response:
    storage = request.app[STORAGE_KEY]
    found = await in_db(request, storage.members.categories, member.customer_id, _now(request))
    context = {
        "page": "categories",
        "categories": found,
        "errors": errors or {},
        "notice": notice,
        "welcome": request.query.get("welcome") == "1",
    }
    return render(request, "portal/categories.html", context, status=status, member=member)


@member_page
async def categories(request: web.Request, member: TokenClaims) -> web.StreamResponse:
    """The chain's categories with the member's favourites ticked."""
    done = request.query.get("done") == "saved"
    return await _categories_page(request, member, notice="saved" if done else "")


@member_page
async def set_categories(request: web.Request, member: TokenClaims) -> web.StreamResponse:
    """Save the favourites (as many changes per period as the chain allows)."""
    posted = await request.post()
    chosen = [str(v)[:100] for v in posted.getall("category", []) if isinstance(v, str)][:20]
    storage = request.app[STORAGE_KEY]
    _ = _translate(request)
    try:
        await in_db(
            request, storage.members.set_categories, member.customer_id, chosen, _now(request)
        )
    except RequestError as exc:
        if exc.status == 409:
            message = _("You have used up the changes allowed for this period.")
        else:
            message = _("Choose categories from the list.")
        return await _categories_page(
            request, member, errors={"categories": message}, status=exc.status
        )
    return _redirect("/portal/categories?done=saved")


@member_page
async def stores(request: web.Request, member: TokenClaims) -> web.StreamResponse:
    """The chain's stores."""
    storage = request.app[STORAGE_KEY]
    found = await in_db(request, storage.members.stores, member.customer_id, _now(request), None)
    return render(
        request, "portal/stores.html", {"page": "stores", "stores": found["stores"]}, member=member
    )


async def _period_receipts(
    request: web.Request, member: TokenClaims, first: datetime
) -> list[dict[str, Any]]:
    """The member's receipts closed at or after `first`, newest first (whole pages of the
    receipts service until one reaches before it)."""
    storage = request.app[STORAGE_KEY]
    cid, now = member.customer_id, _now(request)

    def run() -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        cursor = None
        for _ in range(HISTORY_PAGES):
            page = storage.customers.customer_receipts(cid, limit=HISTORY_PAGE, cursor=cursor)
            if page is None:
                break
            rows = page["receipts"]
            out += [r for r in rows if datetime.fromisoformat(r["closed_at"]) >= first]
            cursor = page.get("next_cursor")
            if not cursor or not rows or datetime.fromisoformat(rows[-1]["closed_at"]) < first:
                break
        storage.members.audit_read(cid, "read_receipts", None, now)
        return out

    return await in_db(request, run)


@member_page
async def purchase_history(request: web.Request, member: TokenClaims) -> web.StreamResponse:
    """Receipts of this week, this month or a period, with the totals per day and their chart."""
    zone = await _chain_zone(request)
    now = _now(request)
    today = now.astimezone(zone).date()
    kind = request.query.get("period", "week")
    kind = kind if kind in purchases.PERIODS else "week"
    date_from = request.query.get("from", "")[:20]
    date_to = request.query.get("to", "")[:20]
    _ = _translate(request)
    errors: dict[str, str] = {}
    try:
        period = purchases.parse_period(kind, date_from, date_to, today)
    except RequestError as exc:
        errors = {exc.field: _("Enter a period of at most a year, its end after its start.")}
        period = purchases.parse_period("week", "", "", today)
    first = datetime.combine(period.first, datetime.min.time(), tzinfo=zone)
    receipts = [
        r
        for r in await _period_receipts(request, member, first)
        if datetime.fromisoformat(r["closed_at"]).astimezone(zone).date() <= period.last
    ]
    days = purchases.day_totals(receipts, period, zone)
    language = language_of(request)
    chart = purchases.chart_svg(
        days,
        title=_("Paid per day"),
        money=lambda minor: i18n.money(minor, language),
        day_label=lambda d: format_date(d, "d MMM", locale=language),
        empty=_("No purchases in this period."),
    )
    for r in receipts:
        r["bonus_earned"], r["bonus_spent"] = purchases.bonus_of(r)
        r["local_day"] = datetime.fromisoformat(r["closed_at"]).astimezone(zone).date()
    context = {
        "page": "history",
        "period": period,
        "kind": kind,
        "date_from": date_from or period.first.isoformat(),
        "date_to": date_to or period.last.isoformat(),
        "errors": errors,
        "days": [d for d in days if d.receipts or d.net_minor],
        "chart": chart,
        "receipts": receipts,
        "totals": {
            "receipts": sum(d.receipts for d in days),
            "net_minor": sum(d.net_minor for d in days),
            "discount_minor": sum(d.discount_minor for d in days),
            "bonus_earned": sum(d.bonus_earned for d in days),
            "bonus_spent": sum(d.bonus_spent for d in days),
        },
        "ads": await _ads(request, member, "history"),
    }
    return render(request, "portal/history.html", context, member=member)


@member_page
async def receipt(request: web.Request, member: TokenClaims) -> web.StreamResponse:
    """One e-receipt: its lines with their discounts and the promotions that gave them."""
    sale_id = request.match_info["sale_id"]
    if not ID_PATTERN.match(sale_id):
        return _redirect("/portal/history")
    storage = request.app[STORAGE_KEY]
    found = await in_db(
        request, storage.members.receipt, member.customer_id, sale_id, _now(request)
    )
    return render(
        request, "portal/receipt.html", {"page": "history", "receipt": found}, member=member
    )


@member_page
async def notifications(request: web.Request, member: TokenClaims) -> web.StreamResponse:
    """The member's inbox."""
    storage = request.app[STORAGE_KEY]
    found = await in_db(request, storage.members.notifications, member.customer_id, _now(request))
    return render(
        request,
        "portal/notifications.html",
        {"page": "notifications", "notifications": found["notifications"]},
        member=member,
    )


@member_page
async def read_notification(request: web.Request, member: TokenClaims) -> web.StreamResponse:
    """Mark one notification read."""
    notification_id = request.match_info["notification_id"]
    if ID_PATTERN.match(notification_id):
        storage = request.app[STORAGE_KEY]
        await in_db(
            request,
            storage.members.read_notification,
            member.customer_id,
            notification_id,
            _now(request),
        )
    return _redirect("/portal/notifications")


@member_page
async def accruals(request: web.Request, member: TokenClaims) -> web.StreamResponse:
    """Every accrual and spend, linked to its receipt; what is pending and what burns when."""
    storage = request.app[STORAGE_KEY]
    cid, now = member.customer_id, _now(request)
    balances = await in_db(request, storage.members.balances, cid, now)
    found = await in_db(request, lambda: storage.members.history(cid, now, limit=200))
    context = {
        "page": "accruals",
        "balances": balances,
        "bonus": _wallet_balance(balances, "bonus"),
        "history": found["history"],
        "kind_names": KIND_NAMES,
    }
    return render(request, "portal/accruals.html", context, member=member)


def _share(text: str) -> str:
    try:
        return format((Decimal(text) * 100).normalize(), "f")
    except ArithmeticError:
        return ""


@member_page
async def about(request: web.Request, member: TokenClaims) -> web.StreamResponse:
    """The programme's rules: levels and their thresholds, the share bonuses may pay, how
    often favourites change, the chain's live promotions."""
    storage = request.app[STORAGE_KEY]
    settings = await in_db(request, storage.promotions.promotion_settings)
    programme = (await in_db(request, storage.tiers.programme)).get("programme")
    found = await in_db(request, storage.members.categories, member.customer_id, _now(request))
    context = {
        "page": "about",
        "programme": programme,
        "levels": programme_levels(programme),
        "bonus_share": _share(str(settings.get("bonus_max_share", "0.5"))),
        "favourites": found,
        "chain_name": str(settings.get("chain_name", "")),
    }
    return render(request, "portal/about.html", context, member=member)


def programme_levels(programme: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """The levels of a tier programme document, lowest rank first (for the rules page)."""
    if not programme:
        return []
    return sorted(programme.get("levels", []), key=lambda level: int(level.get("rank", 0)))
