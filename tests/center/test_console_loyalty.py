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
