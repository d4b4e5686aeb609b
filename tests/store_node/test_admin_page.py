"""GET / on the store node: its health as a page, in Russian or English, over real HTTP."""

from __future__ import annotations

from pathlib import Path

from tests.store_node.store_fakes import (
    Clock,
    heartbeat_body,
    make_config,
    make_sale,
    running_node,
)


async def test_admin_page_shows_each_register_its_devices_last_sale_and_the_center_lag(
    tmp_path: Path,
) -> None:
    clock = Clock()
    async with running_node(make_config(tmp_path), run_jobs=False, clock=clock) as node:
        await node.send(make_sale(1), make_sale(2))
        clock.advance(30)
        status, _, _ = await node.post(
            "/v1/heartbeat",
            heartbeat_body(devices={"printer": "error", "display": "ok"}),
        )
        assert status == 200
        clock.advance(15)
        async with node.session.get(node.url + "/", headers={"Accept-Language": "en"}) as r:
            assert r.status == 200 and r.content_type == "text/html"
            english = await r.text()
        async with node.session.get(node.url + "/", headers={"Accept-Language": "ru-RU"}) as r:
            russian = await r.text()
            assert r.headers["Content-Language"] == "ru"
    assert 'id="register-367-1"' in english
    assert "printer: error" in english and "display: ok" in english
    assert "#2," in english  # the last sale's seq
    assert 'id="pending">2<' in english  # both sales wait for the Center
    assert "45 s ago" in english  # the sync lag: the oldest sale waits since 45 s
    assert "Кассы" in russian and "Связь с центром" in russian


async def test_admin_page_escapes_what_registers_report(tmp_path: Path) -> None:
    async with running_node(make_config(tmp_path), run_jobs=False, clock=Clock()) as node:
        await node.post("/v1/heartbeat", heartbeat_body(devices={"printer": "<b>x</b>"}))
        async with node.session.get(node.url + "/") as response:
            html = await response.text()
    assert "<b>x</b>" not in html and "&lt;b&gt;x&lt;/b&gt;" in html
