"""The loyalty manager's console pages through aiohttp's test client: a receipt explained line
by line, the head-office return of chosen lines and the points it reverses, overdrafts,
leases, fraud signals, gift certificates, the tiers programme; permissions, CSRF, escaping."""

from __future__ import annotations

import re
from typing import Any

from aiohttp.test_utils import TestClient

from center.storage import Storage
from tests.center import test_console_pages as console_pages
from tests.center.center_factories import T0, make_sale
from tests.center.test_console_pages import CARD, _page, _sign_in, _token

# The console's fixtures (a Center over SQLite with olga, max, ann and root).
config = console_pages.config
db = console_pages.db
clock = console_pages.clock
client = console_pages.client

SCRIPT = "<script>alert(1)</script>"


async def _post(
    client: TestClient[Any, Any], path: str, html: str, form: dict[str, str]
) -> tuple[int, str, str]:
    response = await client.post(
        path, data={"csrf_token": _token(html), **form}, allow_redirects=False
    )
    return response.status, await response.text(), response.headers.get("Location", "")


async def test_a_receipt_explains_its_lines_and_a_head_office_return_reverses_points(
    client: TestClient[Any, Any], db: Storage
) -> None:
    sale = make_sale(1, card_no=CARD, amounts=(10000, 5000), discount=1000, accrue=140)
    db.sales.ingest([sale], T0)
    await _sign_in(client, "max")
    status, html = await _page(client, "/console/customers/c-1")
    assert status == 200 and f'href="/console/receipts/{sale.sale_id}"' in html
    status, html = await _page(client, f"/console/receipts/{sale.sale_id}")
    assert status == 200
    line = re.search(r'id="line-1">(.*?)</tr>', html, re.S)
    assert line and "10.00" in line.group(1) and "threshold-5-10" in line.group(1)
    assert re.search(r'class="kind">accrue</td><td class="num">140<', html)
    path = f"/console/receipts/{sale.sale_id}/return"
    return_id = re.search(r'name="return_id" value="([^"]+)"', html)
    assert return_id
    form = {"return_id": return_id.group(1)}
    status, text, _ = await _post(client, path, html, {**form, "qty:1": "2"})
    assert status == 422 and 'id="qty-1-error"' in text and 'value="2"' in text
    status, text, _ = await _post(client, path, html, {**form, "qty:1": "x"})
    assert status == 422 and 'id="qty-1-error"' in text
    status, text, _ = await _post(client, path, html, form)
    assert status == 422 and 'id="return-error"' in text
    assert db.returns.returned_qty(sale.sale_id) == {}
    for _ in range(2):  # the same form twice returns once
        status, _, location = await _post(client, path, html, {**form, "qty:1": "1"})
        assert status == 303 and location == f"/console/receipts/{return_id.group(1)}?done=returned"
    assert db.returns.returned_qty(sale.sale_id) == {1: 1000}
    status, html = await _page(client, location)
    assert status == 200 and 'id="notice"' in html and 'id="return-of"' in html
    kinds = re.findall(r'class="kind">([a-z_]+)</td><td class="num">(-?[0-9]+)<', html)
    assert kinds and all(int(amount) < 0 for _, amount in kinds), kinds
    balance = db.ledger.balance(CARD, T0)
    assert balance is not None and balance.wallets["bonus"] == 140 + sum(int(a) for _, a in kinds)
    _, html = await _page(client, f"/console/receipts/{sale.sale_id}")
    assert 'id="qty-1"' not in html and 'id="qty-2"' in html  # line 1 is all returned


async def test_the_call_center_sees_a_receipt_but_not_the_return_form(
    client: TestClient[Any, Any], db: Storage
) -> None:
    sale = make_sale(1, card_no=CARD, accrue=10)
    db.sales.ingest([sale], T0)
    await _sign_in(client, "olga")
    status, html = await _page(client, f"/console/receipts/{sale.sale_id}")
    assert status == 200 and 'id="qty-1"' not in html and 'id="return-submit"' not in html
    status, _, _ = await _post(
        client, f"/console/receipts/{sale.sale_id}/return", html, {"qty:1": "1", "return_id": "x"}
    )
    assert status == 403 and db.returns.returned_qty(sale.sale_id) == {}
    assert (await _page(client, "/console/receipts/nope"))[0] == 404


async def test_overdrafts_list_the_card_that_owes_points(
    client: TestClient[Any, Any], db: Storage
) -> None:
    db.sales.ingest([make_sale(1, card_no=CARD, spend=75)], T0)  # spent offline, nothing held
    await _sign_in(client, "max")
    status, html = await _page(client, "/console/loyalty")
    assert status == 200 and 'href="/console/overdrafts"' in html and 'id="go-fraud"' in html
    status, html = await _page(client, "/console/overdrafts")
    row = re.search(rf'id="overdraft-{CARD}-bonus">(.*?)</tr>', html, re.S)
    assert status == 200 and row and 'class="num debt">75<' in row.group(1)
    assert 'href="/console/customers/c-1"' in row.group(1)
    status, html = await _page(client, "/console/double-redemptions")
    assert status == 200 and 'id="no-doubles"' in html
    status, html = await _page(client, f"/console/cards/{CARD}/leases")
    assert status == 200 and 'id="no-leases"' in html
    assert (await _page(client, "/console/cards/2999999999999/leases"))[0] == 404


async def test_loyalty_manager_reviews_a_fraud_signal_with_a_note(
    client: TestClient[Any, Any], db: Storage
) -> None:
    from center.fraud.model import DETECTORS, Signal

    sale = make_sale(1, card_no=CARD, accrue=500)
    db.sales.ingest([sale], T0)
    db.fraud.record_signals(
        [
            Signal(
                DETECTORS[0], "card", CARD, "2024-03-01", "high", f"too fast {SCRIPT}",
                (sale.sale_id,),
            )
        ],
        T0,
    )  # fmt: skip
    await _sign_in(client, "max")
    status, html = await _page(client, "/console/fraud")
    assert status == 200 and SCRIPT not in html and "too fast &lt;script&gt;" in html
    link = re.search(r'class="signal-link" href="(/console/fraud/(\d+))"', html)
    assert link
    status, html = await _page(client, link.group(1))
    assert status == 200 and f'href="/console/receipts/{sale.sale_id}"' in html
    path = link.group(1) + "/review"
    status, text, _ = await _post(client, path, html, {"status": "maybe", "note": "x"})
    assert status == 422 and 'id="status-error"' in text and 'value="x"' in text
    status, _, location = await _post(
        client, path, html, {"status": "dismissed", "note": f"a family card {SCRIPT}"}
    )
    assert status == 303 and location.endswith("?done=dismissed")
    found = db.fraud.signal(int(link.group(2)))
    assert found["status"] == "dismissed" and found["reviewed_by"] == f"max via {path}"
    _, html = await _page(client, location)
    assert 'id="notice"' in html and SCRIPT not in html
    client.session.cookie_jar.clear()
    await _sign_in(client, "olga")  # call center: no fraud.read
    assert (await _page(client, "/console/fraud"))[0] == 403
    status, _, _ = await _post(client, path, html, {"status": "open"})
    assert status == 403 and db.fraud.signal(int(link.group(2)))["status"] == "dismissed"


async def test_gift_certificates_batches_a_codes_movements_and_block(
    client: TestClient[Any, Any], db: Storage
) -> None:
    from center.certificates.model import parse_batch

    batch = db.certificates.create_batch(
        parse_batch(
            {"batch_id": "gift-1", "title": "Gift 1000", "product_id": "GIFT-1000",
             "nominal_minor": 100000, "count": 2}
        ),
        "test",
        T0,
    )  # fmt: skip
    code = db.certificates.batch("gift-1", T0)["certificates"][0]["code"]  # type: ignore[index]
    assert batch
    await _sign_in(client, "max")
    status, html = await _page(client, "/console/certificates")
    assert status == 200 and 'href="/console/certificates/batches/gift-1"' in html
    assert "1,000.00" in html  # the nominal, money in the locale
    status, html = await _page(client, "/console/certificates?code=%3Cb%3E")
    assert status == 422 and 'id="code-error"' in html and "<b>" not in html
    response = await client.get(f"/console/certificates?code={code.lower()}", allow_redirects=False)
    assert response.headers["Location"] == f"/console/certificates/codes/{code}"
    status, html = await _page(client, "/console/certificates/batches/gift-1")
    assert status == 200 and f'href="/console/certificates/codes/{code}"' in html
    status, html = await _page(client, f"/console/certificates/codes/{code}")
    assert status == 200 and 'id="block"' in html
    path = f"/console/certificates/codes/{code}/block"
    status, text, _ = await _post(client, path, html, {"reason": ""})
    assert status in (400, 422) and 'id="reason-error"' in text
    status, _, location = await _post(client, path, html, {"reason": f"stolen {SCRIPT}"})
    assert status == 303
    _, html = await _page(client, location)
    assert 'id="notice"' in html and SCRIPT not in html and "stolen &lt;script&gt;" in html
    assert db.certificates.certificate(code, T0)["state"] == "blocked"  # type: ignore[index]
    assert db.audit.audit_history("certificate", code)[-1]["actor"] == f"max via {path}"


async def test_tiers_are_edited_with_the_apis_check_and_money_in_major_units(
    client: TestClient[Any, Any], db: Storage
) -> None:
    await _sign_in(client, "root")  # the tiers need promotions.write, as PUT /v1/tiers
    status, html = await _page(client, "/console/tiers")
    assert status == 200 and 'id="tiers"' in html
    form = {
        "period_kind": "days", "period": "365", "grace_days": "30",
        "levels[0].code": "silver", "levels[0].title.ru": "Серебро",
        "levels[0].title.en": "Silver", "levels[0].rank": "1",
        "levels[1].code": "gold", "levels[1].title.ru": "Золото",
        "levels[1].title.en": SCRIPT, "levels[1].rank": "2",
        "levels[1].spend": "30 000,50", "levels[1].visits": "12", "levels[1].require": "any",
    }  # fmt: skip
    bad = {**form, "levels[1].rank": "1", "levels[1].spend": "12x", "grace_days": "-1"}
    status, text, _ = await _post(client, "/console/tiers", html, bad)
    assert status == 422 and 'id="levels[1].spend-error"' in text
    assert 'id="grace_days-error"' in text and SCRIPT not in text
    assert db.tiers.programme()["programme"] is None  # nothing written
    status, text, _ = await _post(client, "/console/tiers", html, {**form, "levels[1].rank": "1"})
    assert status == 422 and 'id="levels[1].rank-error"' in text  # the API's own check
    status, _, location = await _post(client, "/console/tiers", html, form)
    assert status == 303 and location == "/console/tiers?done=saved"
    levels = db.tiers.programme()["programme"]["levels"]
    assert [(lv["code"], lv["spend_minor"], lv["require"]) for lv in levels] == [
        ("silver", 0, "all"),
        ("gold", 3_000_050, "any"),
    ]
    _, html = await _page(client, location)
    assert 'value="30000,50"' in html and "&lt;script&gt;" in html
    assert db.audit.audit_history("setting", "tiers.programme")[-1]["actor"] == (
        "root via /console/tiers"
    )
    client.session.cookie_jar.clear()
    await _sign_in(client, "max")  # loyalty manager: reads the programme, may not change it
    status, html = await _page(client, "/console/tiers")
    assert status == 200 and 'id="tiers-submit"' not in html and "disabled" in html
    status, _, _ = await _post(client, "/console/tiers", html, form)
    assert status == 403


async def test_every_new_page_speaks_russian(client: TestClient[Any, Any], db: Storage) -> None:
    sale = make_sale(1, card_no=CARD, spend=10)
    db.sales.ingest([sale], T0)
    await _sign_in(client, "root")
    ru = {"Accept-Language": "ru"}
    for path, word in (
        ("/console/loyalty", "Перерасходы"),
        ("/console/overdrafts", "Долг"),
        ("/console/double-redemptions", "Ни один купон"),
        (f"/console/cards/{CARD}/leases", "Аренды списания"),
        ("/console/fraud", "Сигналы о мошенничестве"),
        ("/console/certificates", "Подарочные сертификаты"),
        ("/console/tiers", "Льготные дни"),
        (f"/console/receipts/{sale.sale_id}", "Вернуть выбранное количество"),
        ("/console/customers/new", "Зарегистрировать клиента"),
        ("/console/customers/c-1", "Присоединить другого клиента"),
    ):
        response = await client.get(path, headers=ru)
        text = await response.text()
        assert response.status == 200 and word in text, path
    response = await client.get(f"/console/receipts/{sale.sale_id}", headers=ru)
    # Money in the Russian locale: a comma and the rouble sign (total 2,50 + 1,99).
    assert re.search(r'id="total">4,49\s₽<', await response.text())
