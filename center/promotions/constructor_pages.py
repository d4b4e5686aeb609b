"""Console pages of the marketer's promotion constructor: the form of every rule kind, preview
on a sample receipt, activate / archive, revisions with their diffs.

Every step calls what POST /v1/promotions and its siblings call (`prepare_doc`, `check_doc`,
`preview`, the promotions repository): the form only turns text into a rule document.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from aiohttp import web
from babel.numbers import format_decimal

from center.access.permissions import Requirement
from center.errors import InvalidRequest, RequestError, UnknownObject
from center.promotions.api import preview_stored
from center.promotions.constructor import (
    LIFECYCLE,
    check_doc,
    parse_sample,
    prepare_doc,
)
from center.promotions.constructor_form import (
    BOOL_CHOICES,
    KINDS,
    SECTIONS,
    STACKING_CHOICES,
    doc_from_form,
    field_for,
    form_fields,
    form_values,
    kind_fields,
    sample_lines,
)
from center.promotions.constructor_jobs import MAX_DAYS, Run, Runs, price_period
from center.promotions.simulate import SimulationReport
from center.web.keys import CLOCK_KEY, EXECUTOR_KEY, STORAGE_KEY
from center.web.pages import form_of, language_of, page_actor, render
from center.web.request import ID_PATTERN, in_db

__all__ = ["PERMISSIONS", "add_routes"]

_ONE = "/console/promotions/{promotion_id}"
PERMISSIONS: Mapping[tuple[str, str], Requirement] = {
    ("GET", "/console/promotions/new"): "promotions.write",
    ("POST", "/console/promotions/new"): "promotions.write",
    ("GET", _ONE): "promotions.read",
    ("POST", _ONE): "promotions.write",
    ("POST", _ONE + "/preview"): "promotions.write",
    ("POST", _ONE + "/activate"): "promotions.publish",
    ("POST", _ONE + "/archive"): "promotions.publish",
    ("POST", _ONE + "/simulations"): "promotions.write",
    ("GET", _ONE + "/simulations/{run_id}"): "promotions.write",
}
"""(method, canonical route path) -> the permission a caller needs."""

RUNS_KEY: web.AppKey[Runs] = web.AppKey("constructor_runs", Runs)
"""The what-if runs this Center process started."""
_MAX_TEXT = 4000
_SAMPLE = "MILK ; 2 ; 89,90\nBREAD ; 1 ; 45,00"


def add_routes(app: web.Application) -> None:
    """Register this module's routes (`new` before the id it would shadow)."""
    app.router.add_get("/console/promotions/new", new_form)
    app.router.add_post("/console/promotions/new", create)
    app.router.add_get(_ONE, promotion_page)
    app.router.add_post(_ONE, update)
    app.router.add_post(_ONE + "/preview", preview_sample)
    app.router.add_post(_ONE + "/activate", activate)
    app.router.add_post(_ONE + "/archive", archive)
    app.router.add_post(_ONE + "/simulations", start_simulation)
    app.router.add_get(_ONE + "/simulations/{run_id}", simulation)
    app[RUNS_KEY] = Runs()
    app.on_cleanup.append(_stop_runs)


def _promotion_id(request: web.Request) -> str:
    value = request.match_info["promotion_id"]
    if not ID_PATTERN.match(value):
        raise UnknownObject("promotion_id", f"unknown promotion {value[:80]!r}")
    return value


def _exponent(settings: Mapping[str, Any]) -> int:
    text = str(settings.get("currency_exponent", "2"))
    return int(text) if text in ("0", "1", "2", "3") else 2


def _points(request: web.Request) -> Callable[[int, str], str]:
    """How many units of a wallet, as the locale writes them: the `bonus` wallet counts in
    minor units (shown as 0.90), the others in whole units (3 stickers)."""
    language = language_of(request)

    def points(amount: int, wallet: str) -> str:
        if wallet == "bonus":
            return str(format_decimal(Decimal(amount).scaleb(-2), "#,##0.00", locale=language))
        return str(format_decimal(amount, locale=language))

    return points


def _base(kind: str) -> dict[str, Any]:
    return {
        "sections": SECTIONS,
        "kinds": KINDS,
        "kind": kind,
        "reward": kind_fields(kind),
        "bool_choices": BOOL_CHOICES,
        "stacking_choices": STACKING_CHOICES,
        "lifecycle": LIFECYCLE,
        "sample": _SAMPLE,
        "sample_store": "",
        "sample_card": True,
    }


async def new_form(request: web.Request) -> web.StreamResponse:
    """The kind chooser, or the empty form of the chosen kind (`?kind=`)."""
    kind = request.query.get("kind", "")
    if kind not in KINDS:
        return render(request, "promotions/constructor_kinds.html", {"kinds": KINDS})
    settings = await in_db(request, request.app[STORAGE_KEY].promotions.promotion_settings)
    context = {**_base(kind), "promotion": None, "chain": _chain_caps(settings)}
    return render(request, "promotions/constructor.html", context)


def _chain_caps(settings: Mapping[str, Any]) -> dict[str, str]:
    """The chain-wide caps every rule runs under (settings, not part of a rule), as percents."""
    out = {}
    for name, default in (("bonus_max_share", "0.5"), ("max_discount_share", "")):
        text = str(settings.get(name, default))
        try:
            out[name] = format((Decimal(text) * 100).normalize(), "f") if text else ""
        except ArithmeticError:
            out[name] = text
    return out


async def _checked(
    request: web.Request, promotion_id: str | None
) -> tuple[dict[str, Any], dict[str, str], dict[str, str], list[str], str]:
    """The posted form as a document checked as the API checks it: (doc, values, errors,
    warnings, kind)."""
    form = await form_of(request)
    storage = request.app[STORAGE_KEY]
    settings = await in_db(request, storage.promotions.promotion_settings)
    kind = str(form.get("kind", ""))[:64]
    names = {f.name for f in form_fields(kind)} | {"promotion_id"}
    values = {name: str(form.get(name, ""))[:_MAX_TEXT] for name in names}
    # Days of week come as one checkbox each.
    values["schedule.days_of_week"] = ", ".join(
        str(v)[:1] for v in form.getall("schedule.days_of_week", []) if str(v)[:1].isdigit()
    )
    if promotion_id is not None:
        values["promotion_id"] = promotion_id
    if kind not in KINDS:
        return {}, values, {"kind": f"unknown kind {kind!r:.80}"}, [], kind
    doc, errors = doc_from_form(values, kind, _exponent(settings))
    if errors:
        return doc, values, errors, [], kind
    try:
        doc = prepare_doc(doc, promotion_id)
    except RequestError as exc:
        return doc, values, {field_for(exc.field, kind) or "form": _message(exc)}, [], kind
    known = await in_db(request, storage.promotions.validation_context)
    problems, warnings = check_doc(doc, settings, known)
    for problem in problems:
        name = field_for(problem.field, kind) or "form"
        text = str(problem) if name == "form" or problem.field != name else problem.message
        errors[name] = f"{errors[name]}; {text}" if name in errors else text
    return doc, values, errors, warnings, kind


def _message(exc: RequestError) -> str:
    return str(exc).removeprefix(f"{exc.field}: ")


async def create(request: web.Request) -> web.StreamResponse:
    """Save a new draft; the form again with the errors next to their fields."""
    doc, values, errors, warnings, kind = await _checked(request, None)
    if not errors:
        storage = request.app[STORAGE_KEY]
        try:
            await in_db(
                request,
                storage.promotions.create_promotion,
                doc,
                page_actor(request),
                request.app[CLOCK_KEY](),
            )
        except RequestError as exc:
            errors = {field_for(exc.field, kind) or "form": _message(exc)}
    if errors:
        settings = await in_db(request, request.app[STORAGE_KEY].promotions.promotion_settings)
        context = {
            **_base(kind),
            "promotion": None,
            "values": values,
            "errors": errors,
            "chain": _chain_caps(settings),
        }
        return render(request, "promotions/constructor.html", context, status=422)
    del warnings  # shown on the promotion's page, which checks the saved document again
    return web.Response(
        status=303, headers={"Location": f"/console/promotions/{doc['promotion_id']}?done=saved"}
    )


async def _page(
    request: web.Request,
    promotion_id: str,
    *,
    values: Mapping[str, str] | None = None,
    errors: Mapping[str, str] | None = None,
    extra: Mapping[str, Any] | None = None,
    status: int = 200,
) -> web.StreamResponse:
    storage = request.app[STORAGE_KEY]
    found = await in_db(request, storage.promotions.get_promotion, promotion_id)
    if found is None:
        raise UnknownObject("promotion_id", f"unknown promotion {promotion_id!r}")
    history = await in_db(request, storage.promotions.promotion_history, promotion_id) or []
    settings = await in_db(request, storage.promotions.promotion_settings)
    known = await in_db(request, storage.promotions.validation_context)
    doc = found["doc"]
    kind = str(doc.get("kind", ""))
    _, warnings = check_doc(doc, settings, known)
    done = request.query.get("done", "")
    context = {
        **_base(kind),
        "promotion": found,
        "history": list(reversed(history)),
        "values": values
        if values is not None
        else form_values(doc, _exponent(settings), language_of(request)),
        "errors": errors or {},
        "warnings": warnings,
        "done": done if done in ("saved", "activated", "archived", "unchanged") else "",
        "points": _points(request),
        "chain": _chain_caps(settings),
        **_period_defaults(request),
        **(extra or {}),
    }
    return render(request, "promotions/constructor.html", context, status=status)


async def promotion_page(request: web.Request) -> web.StreamResponse:
    """One promotion: its form (read-only without the right to write), preview, revisions."""
    return await _page(request, _promotion_id(request))


async def update(request: web.Request) -> web.StreamResponse:
    """Save a new revision of the draft; the form again with the errors next to the fields."""
    promotion_id = _promotion_id(request)
    storage = request.app[STORAGE_KEY]
    before = await in_db(request, storage.promotions.get_promotion, promotion_id)
    if before is None:
        raise UnknownObject("promotion_id", f"unknown promotion {promotion_id!r}")
    doc, values, errors, _, kind = await _checked(request, promotion_id)
    if not errors and str(before["doc"].get("kind", "")) != kind:
        errors = {"kind": f"expected {before['doc'].get('kind')!r} (the promotion's kind)"}
    after = before
    if not errors:
        try:
            after = await in_db(
                request,
                storage.promotions.update_promotion,
                promotion_id,
                doc,
                page_actor(request),
                request.app[CLOCK_KEY](),
            )
        except RequestError as exc:
            if isinstance(exc, UnknownObject):
                raise
            errors = {field_for(exc.field, kind) or "form": _message(exc)}
    if errors:
        return await _page(request, promotion_id, values=values, errors=errors, status=422)
    done = "saved" if after["revision"] != before["revision"] else "unchanged"
    return web.Response(
        status=303, headers={"Location": f"/console/promotions/{promotion_id}?done={done}"}
    )


async def preview_sample(request: web.Request) -> web.StreamResponse:
    """The saved draft priced on a sample receipt: the engine's calculation and explanation
    (a fragment for htmx, else the whole page)."""
    promotion_id = _promotion_id(request)
    form = await form_of(request)
    storage = request.app[STORAGE_KEY]
    settings = await in_db(request, storage.promotions.promotion_settings)
    text = str(form.get("sample", ""))[:_MAX_TEXT]
    store_id = str(form.get("sample_store", ""))[:64]
    with_card = form.get("sample_card") == "yes"
    lines, problem = sample_lines(text, _exponent(settings))
    result: dict[str, Any] | None = None
    if not problem:
        body = {
            "receipt": {
                "lines": lines,
                "store_id": store_id,
                **({"card_no": "preview"} if with_card else {}),
            }
        }
        try:
            result, _ = await preview_stored(request, promotion_id, parse_sample(body))
        except InvalidRequest as exc:
            problem = str(exc)
    own = [
        a["wallet"]
        for a in (result or {}).get("calculation", {}).get("accrual", [])
        if a["rule_id"] == promotion_id
    ]
    extra = {
        "own_wallet": own[0] if own else "bonus",
        "points": _points(request),
        "result": result,
        "sample_error": problem,
        "sample": text,
        "sample_store": store_id,
        "sample_card": with_card,
    }
    if request.headers.get("HX-Request"):
        return render(request, "promotions/constructor_preview.html", extra)
    return await _page(request, promotion_id, extra=extra)


async def _lifecycle(request: web.Request, action: str) -> web.StreamResponse:
    promotion_id = _promotion_id(request)
    storage = request.app[STORAGE_KEY]
    run = (
        storage.promotions.activate_promotion
        if action == "activated"
        else storage.promotions.archive_promotion
    )
    try:
        await in_db(request, run, promotion_id, page_actor(request), request.app[CLOCK_KEY]())
    except RequestError as exc:
        if isinstance(exc, UnknownObject):
            raise
        return await _page(request, promotion_id, errors={"form": str(exc)}, status=exc.status)
    return web.Response(
        status=303, headers={"Location": f"/console/promotions/{promotion_id}?done={action}"}
    )


async def activate(request: web.Request) -> web.StreamResponse:
    """Publish the latest revision to every store (the master feed carries it)."""
    return await _lifecycle(request, "activated")


async def archive(request: web.Request) -> web.StreamResponse:
    """Withdraw the promotion from every store."""
    return await _lifecycle(request, "archived")


# -- what-if ---------------------------------------------------------------------------------------


def _period_defaults(request: web.Request) -> dict[str, str]:
    today = request.app[CLOCK_KEY]().date()
    return {"sim_from": (today - timedelta(days=30)).isoformat(), "sim_to": today.isoformat()}


def _period(form: Mapping[str, Any]) -> tuple[date, date]:
    found = []
    for name in ("sim_from", "sim_to"):
        text = str(form.get(name, ""))[:40].strip()
        try:
            found.append(date.fromisoformat(text))
        except ValueError:
            raise InvalidRequest(name, f"expected a date YYYY-MM-DD, got {text!r}") from None
    date_from, date_to = found
    if date_to < date_from:
        raise InvalidRequest("sim_to", "expected a day on or after the first")
    if (date_to - date_from).days + 1 > MAX_DAYS:
        raise InvalidRequest("sim_to", f"expected at most {MAX_DAYS} days")
    return date_from, date_to


async def _run(app: web.Application, run: Run, doc: Mapping[str, Any]) -> None:
    """Price the run's days one after the other, off the event loop; the result on the run."""

    def day_done(report: SimulationReport) -> None:
        run.days_done += 1
        run.receipts = report.sales

    try:
        run.report = await price_period(
            app[STORAGE_KEY], app[EXECUTOR_KEY], doc, run.date_from, run.date_to, on_day=day_done
        )
        run.state = "done"
    except Exception as exc:  # whatever stops a run is shown on its page
        run.state = "failed"
        run.error = str(exc)[:500] or type(exc).__name__


async def _stop_runs(app: web.Application) -> None:
    for task in list(app[RUNS_KEY].tasks):
        task.cancel()


def _run_context(request: web.Request, run: Run | None, error: str = "") -> dict[str, Any]:
    return {
        "run": run,
        "own": run.own() if run is not None else {},
        "report": run.report.to_dict() if run is not None and run.report is not None else None,
        "sim_error": error,
        "points": _points(request),
    }


async def start_simulation(request: web.Request) -> web.StreamResponse:
    """Start a what-if run of the latest revision over a period (a fragment that polls)."""
    promotion_id = _promotion_id(request)
    form = await form_of(request)
    storage = request.app[STORAGE_KEY]
    found = await in_db(request, storage.promotions.get_promotion, promotion_id)
    if found is None:
        raise UnknownObject("promotion_id", f"unknown promotion {promotion_id!r}")
    run: Run | None = None
    error = ""
    try:
        date_from, date_to = _period(form)
    except InvalidRequest as exc:
        error = str(exc)
    else:
        runs = request.app[RUNS_KEY]
        run = runs.start(promotion_id, found["revision"], date_from, date_to)
        task = asyncio.create_task(_run(request.app, run, found["doc"]))
        runs.tasks.add(task)
        task.add_done_callback(runs.tasks.discard)
    context = _run_context(request, run, error)
    if request.headers.get("HX-Request"):
        return render(request, "promotions/constructor_simulation.html", context)
    return await _page(request, promotion_id, extra=context)


async def simulation(request: web.Request) -> web.StreamResponse:
    """A what-if run's progress, then its result."""
    promotion_id = _promotion_id(request)
    run = request.app[RUNS_KEY].get(request.match_info["run_id"])
    if run is None or run.promotion_id != promotion_id:
        raise UnknownObject("run_id", "unknown what-if run (a restart of the Center forgets them)")
    context = _run_context(request, run)
    if request.headers.get("HX-Request"):
        return render(request, "promotions/constructor_simulation.html", context)
    return await _page(request, promotion_id, extra=context)
