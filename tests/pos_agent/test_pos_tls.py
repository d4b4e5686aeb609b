"""The register -> store node hop over TLS: a real store node serving HTTPS with [tls], a real
POS agent trusting (or not) its certificate through store_node.ca_file."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiohttp import web
from zeroconf import ServiceInfo, Zeroconf

from pos_agent.cli import main as pos_main
from pos_agent.config import Config
from pos_agent.config import load_config as load_pos_config
from pos_agent.discovery import SERVICE_TYPE, StoreDiscovery, probe_store_node
from pos_agent.errors import ConfigError as PosConfigError
from pos_agent.errors import StoreNodeUnreachable
from pos_agent.storelink import StoreLink
from store_node.app import ADVERTISER_KEY, WORKER_KEY
from store_node.app import create_app as create_store
from store_node.cli import main as store_main
from store_node.config import load_config as load_store_config
from store_node.errors import ConfigError as StoreConfigError
from tests.pos_agent.pos_fakes import (
    BREAD,
    free_port,
    health_until,
    make_config,
    outbox_sales,
    running_agent,
    seed_replica,
    sell,
)
from tests.store_node.store_fakes import self_signed_cert


def _store_toml(folder: Path, port: int, tls: str, *, advertise: bool = False) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "store.toml"
    path.write_text(
        '[store]\nstore_id = "367"\nnode_id = "store-367"\nlisten_host = "127.0.0.1"\n'
        f'listen_port = {port}\ndata_dir = "data"\nadvertise = {str(advertise).lower()}\n\n'
        '[center]\nurl = "http://127.0.0.1:9"\n\n'
        "[security]\nrequire_signatures = true\n\n" + tls
    )
    return path


@dataclass
class TlsStore:
    url: str
    app: web.Application
    cert: Path
    toml: Path


async def _serve_store(folder: Path, *, advertise: bool = False) -> AsyncIterator[TlsStore]:
    cert, key = self_signed_cert(folder)
    port = free_port()
    toml = _store_toml(
        folder,
        port,
        f'[tls]\ncert_file = "{cert.name}"\nkey_file = "{key.name}"\n',
        advertise=advertise,
    )
    config = load_store_config(toml)
    context = config.tls.server_context()
    assert context is not None
    app = create_store(config, run_jobs=False)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, ssl_context=context).start()
    try:
        yield TlsStore(f"https://127.0.0.1:{port}", app, cert, toml)
    finally:
        await runner.cleanup()


@pytest.fixture
async def tls_store(tmp_path: Path) -> AsyncIterator[TlsStore]:
    async for store in _serve_store(tmp_path / "store"):
        yield store


def _pos_toml(folder: Path, url: str, ca_file: Path | None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "pos.toml"
    path.write_text(
        '[register]\nregister_id = "367-1"\nstore_id = "367"\ndata_dir = "data"\n\n'
        f'[store_node]\nurl = "{url}"\ntimeout_s = 2.0\n'
        + (f'ca_file = "{ca_file}"\n' if ca_file is not None else "")
    )
    return path


async def _issue_token(store: TlsStore, capsys: pytest.CaptureFixture[str]) -> str:
    capsys.readouterr()
    code = await asyncio.to_thread(
        store_main, ["enrol-register", "--config", str(store.toml), "--register-id", "367-1"]
    )
    assert code == 0
    return capsys.readouterr().out.strip()


def _fast(path: Path) -> Config:
    """The register config of pos.toml with the tests' fast timers (url and ca_file kept)."""
    loaded = load_pos_config(path)
    fast = make_config(loaded.register.data_dir, loaded.store_node.url)
    return dataclasses.replace(
        fast, store_node=dataclasses.replace(fast.store_node, ca_file=loaded.store_node.ca_file)
    )


async def _look_up_card(config: Config, url: str) -> str:
    link = StoreLink(config, lambda: url, clock=lambda: datetime.now(UTC))
    try:
        with pytest.raises(StoreNodeUnreachable) as raised:
            await asyncio.to_thread(link.card, "2000000000999")
    finally:
        link.close()
    return str(raised.value)


async def test_a_register_trusting_the_ca_enrols_and_uploads_over_tls(
    tmp_path: Path, tls_store: TlsStore, capsys: pytest.CaptureFixture[str]
) -> None:
    pos_toml = _pos_toml(tmp_path / "pos", tls_store.url, tls_store.cert)
    token = await _issue_token(tls_store, capsys)
    code = await asyncio.to_thread(pos_main, ["enrol", "--config", str(pos_toml), "--token", token])
    assert code == 0, capsys.readouterr().err
    config = _fast(pos_toml)
    seed_replica(config)
    # Card look-ups and reservations (StoreLink) use the CA too: the node itself answers
    # (over TLS, signed) that it cannot ask the Center, absent from this test.
    assert "HTTP 503" in await _look_up_card(config, tls_store.url)
    async with running_agent(config) as client:
        answer = await sell(client, [BREAD])
        health = await health_until(client, lambda h: h["queue_depth"] == 0)
    assert health["store_url"] == tls_store.url, health
    assert health["last_error"] is None
    summary = await tls_store.app[WORKER_KEY].run(lambda box: box.summary())
    assert [(row.register_id, row.receipts) for row in summary] == [("367-1", 1)]
    assert answer["sale_id"]
    assert outbox_sales(config) == []


@pytest.mark.parametrize("trust", ["system CAs", "another CA"])
async def test_a_register_not_trusting_the_certificate_keeps_its_sale(
    tmp_path: Path, tls_store: TlsStore, capsys: pytest.CaptureFixture[str], trust: str
) -> None:
    wrong = self_signed_cert(tmp_path / "other", "other")[0] if trust == "another CA" else None
    pos_toml = _pos_toml(tmp_path / "pos", tls_store.url, wrong)
    token = await _issue_token(tls_store, capsys)
    code = await asyncio.to_thread(pos_main, ["enrol", "--config", str(pos_toml), "--token", token])
    assert code == 1
    assert "CERTIFICATE_VERIFY_FAILED" in capsys.readouterr().err
    config = _fast(pos_toml)
    seed_replica(config)
    assert "SSLError" in await _look_up_card(config, tls_store.url)
    async with running_agent(config) as client:
        answer = await sell(client, [BREAD])
        health = await health_until(
            client, lambda h: "CERTIFICATE_VERIFY_FAILED" in (h["last_error"] or "")
        )
    assert health["queue_depth"] == 1
    assert [sale.sale_id for sale in outbox_sales(config)] == [answer["sale_id"]]
    assert await tls_store.app[WORKER_KEY].run(lambda box: box.summary()) == []


async def test_loyalty_store_serve_speaks_https_with_tls(tmp_path: Path) -> None:
    cert, key = self_signed_cert(tmp_path / "store")
    port = free_port()
    toml = _store_toml(
        tmp_path / "store", port, f'[tls]\ncert_file = "{cert}"\nkey_file = "{key}"\n'
    )
    url = f"https://127.0.0.1:{port}"
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "loyalty-store"), "serve", "--config", str(toml)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = asyncio.get_running_loop().time() + 20
        while not await asyncio.to_thread(probe_store_node, url, "367", verify=str(cert)):
            assert process.poll() is None, process.communicate()[1].decode()
            assert asyncio.get_running_loop().time() < deadline, "the node never answered"
            await asyncio.sleep(0.1)
        # Plain HTTP is not served, and a client not trusting the certificate is refused.
        assert not await asyncio.to_thread(probe_store_node, url.replace("https", "http"), "367")
        assert not await asyncio.to_thread(probe_store_node, url, "367")
    finally:
        process.terminate()
        process.communicate(timeout=20)


async def test_discovery_follows_an_https_advert_and_checks_the_certificate(
    tmp_path: Path,
) -> None:
    async for store in _serve_store(tmp_path / "store", advertise=True):
        advertiser = store.app[ADVERTISER_KEY]
        assert advertiser is not None
        assert advertiser.info.properties[b"scheme"] == b"https"
        trusting = StoreDiscovery("367", verify=str(store.cert))
        untrusting = StoreDiscovery("367")
        try:
            assert await asyncio.to_thread(trusting.find, 10.0) == store.url
            assert await asyncio.to_thread(untrusting.find, 1.5) is None
        finally:
            await asyncio.to_thread(trusting.close)
            await asyncio.to_thread(untrusting.close)


def test_an_advert_without_a_scheme_is_plain_http() -> None:
    zc = Zeroconf(interfaces=["127.0.0.1"])
    info = ServiceInfo(
        SERVICE_TYPE,
        f"store-old.{SERVICE_TYPE}",
        addresses=[socket.inet_aton("127.0.0.1")],
        port=8710,
        properties={"store_id": "406", "node_id": "old"},  # a store node from before [tls]
        server="old.local.",
    )
    discovery = StoreDiscovery("406", probe=lambda url, store_id: True)
    try:
        zc.register_service(info)
        assert discovery.find(5.0) == "http://127.0.0.1:8710"
    finally:
        discovery.close()
        zc.unregister_all_services()
        zc.close()


def test_store_tls_config_errors_name_the_key(tmp_path: Path) -> None:
    cert, key = self_signed_cert(tmp_path)
    only_cert = _store_toml(tmp_path / "a", 8710, f'[tls]\ncert_file = "{cert}"\n')
    with pytest.raises(StoreConfigError, match=r"tls: set both cert_file and key_file"):
        load_store_config(only_cert)
    missing = _store_toml(
        tmp_path / "b", 8710, f'[tls]\ncert_file = "nope.pem"\nkey_file = "{key}"\n'
    )
    with pytest.raises(StoreConfigError, match=r"tls.cert_file: .*nope.pem is not a readable"):
        load_store_config(missing)
    swapped = _store_toml(
        tmp_path / "c", 8710, f'[tls]\ncert_file = "{key}"\nkey_file = "{cert}"\n'
    )
    with pytest.raises(StoreConfigError, match=r"tls.cert_file/tls.key_file: .*not a PEM"):
        load_store_config(swapped)
    unknown = _store_toml(tmp_path / "d", 8710, '[tls]\nca_file = "x"\n')
    with pytest.raises(StoreConfigError, match=r"tls.ca_file: unknown key"):
        load_store_config(unknown)
    plain = load_store_config(_store_toml(tmp_path / "e", 8710, ""))
    assert plain.tls.server_context() is None


def test_pos_ca_file_errors_name_the_key(tmp_path: Path) -> None:
    with pytest.raises(PosConfigError, match=r"store_node.ca_file: .*nope.pem is not a readable"):
        load_pos_config(_pos_toml(tmp_path / "a", "https://127.0.0.1:8710", tmp_path / "nope.pem"))
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    with pytest.raises(PosConfigError, match=r"store_node.ca_file: .*junk.pem holds no PEM"):
        load_pos_config(_pos_toml(tmp_path / "b", "https://127.0.0.1:8710", junk))
    cert, _ = self_signed_cert(tmp_path)
    relative = tmp_path / "c" / "pos.toml"
    relative.parent.mkdir()
    relative.write_text(
        '[register]\nregister_id = "367-1"\nstore_id = "367"\ndata_dir = "data"\n\n'
        '[store_node]\nurl = "https://127.0.0.1:8710"\nca_file = "../store-cert.pem"\n'
    )
    assert load_pos_config(relative).store_node.verify == str(cert)
