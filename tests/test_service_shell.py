"""The service shell is the same in every tier: error kinds, the config reader, the DB thread.

The tiers never import each other, so what they share is a deliberate copy; these tests keep
the copies equal and the error vocabulary the one docs/API.md lists.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import re
from pathlib import Path
from types import ModuleType

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

ROOT = Path(__file__).resolve().parent.parent
API = (ROOT / "docs" / "API.md").read_text()
TIERS = ("center", "store_node", "pos_agent")

# Every module of a tier that defines error classes its HTTP API answers with.
ERROR_MODULES = {
    "center": ("center.errors",),
    "store_node": ("store_node.errors", "store_node.reservations"),
    "pos_agent": ("pos_agent.errors", "pos_agent.receipts"),
}
# Classes whose kind is chosen per instance (the token's state), checked by their own tests.
PER_INSTANCE_KIND = {"EnrolmentRefused"}


def _request_errors(tier: str) -> dict[str, type]:
    base = importlib.import_module(f"{tier}.errors").RequestError
    found: dict[str, type] = {}
    for name in ERROR_MODULES[tier]:
        module = importlib.import_module(name)
        for attr, value in vars(module).items():
            if inspect.isclass(value) and issubclass(value, base) and not attr.startswith("_"):
                found[value.__name__] = value
    return found


def _documented() -> dict[str, int]:
    """kind -> status from the table of error kinds in docs/API.md."""
    section = API.split("### Error kinds", 1)[1].split("\n## ", 1)[0]
    kinds: dict[str, int] = {}
    for status, cell in re.findall(r"^\| (\d{3}) \| ([^|]+) \|", section, flags=re.MULTILINE):
        for kind in re.findall(r"`([a-z_]+)`", cell):
            kinds[kind] = int(status)
    return kinds


def test_the_error_vocabulary_is_documented() -> None:
    documented = _documented()
    assert documented["not_found"] == 404 and documented["malformed"] == 400
    for tier in TIERS:
        for name, cls in _request_errors(tier).items():
            if name in PER_INSTANCE_KIND:
                continue
            assert cls.kind in documented, f"{tier}: {name}.kind {cls.kind!r} not in docs/API.md"
            assert documented[cls.kind] == cls.status, (
                f"{tier}: {name} answers {cls.status} {cls.kind!r}, docs/API.md says "
                f"{documented[cls.kind]}"
            )


@pytest.mark.parametrize(
    "name",
    [
        "RequestError",
        "MalformedRequest",
        "Unauthorized",
        "Forbidden",
        "UnknownObject",
        "Conflict",
        "RequestTooLarge",
        "UnsupportedMediaType",
        "InvalidRequest",
    ],
)
def test_an_error_class_has_the_same_kind_and_status_in_every_tier(name: str) -> None:
    found = {
        tier: (cls.kind, cls.status)
        for tier in TIERS
        if (cls := _request_errors(tier).get(name)) is not None
    }
    assert len(found) >= 2, f"{name} is shared by fewer than two tiers: {sorted(found)}"
    assert len(set(found.values())) == 1, f"{name} differs between tiers: {found}"


@pytest.mark.parametrize(
    "same",
    [
        # The same concept under a tier's own name: a refused bonus spend, a taken coupon.
        {"store_node": "InsufficientBalance", "pos_agent": "SpendRefused"},
        {"store_node": "CouponTaken", "pos_agent": "CouponRefused"},
        {"store_node": "ReservationNotFound", "pos_agent": "ReceiptNotFound"},
        {"store_node": "ReservationClosed", "pos_agent": "ReceiptClosed"},
    ],
)
def test_errors_of_the_same_meaning_agree(same: dict[str, str]) -> None:
    found = {tier: _request_errors(tier)[name] for tier, name in same.items()}
    assert len({(cls.kind, cls.status) for cls in found.values()}) == 1, found


def test_every_unknown_object_is_not_found_but_the_store_nodes_card() -> None:
    for tier in TIERS:
        for name, cls in _request_errors(tier).items():
            if cls.status == 404 and name != "UnknownCard":
                assert cls.kind == "not_found", f"{tier}: {name} answers 404 {cls.kind!r}"
    # Registers tell an unknown card from a missing route by this kind (pos_agent/storelink.py).
    assert _request_errors("store_node")["UnknownCard"].kind == "unknown_object"


def _config_in(tmp_path: Path, example: str) -> Path:
    text = (ROOT / "installers" / "config" / example).read_text()
    text = re.sub(r'data_dir = ".*"', f'data_dir = "{tmp_path}"', text)
    path = tmp_path / example
    path.write_text(text)
    return path


EXAMPLES = {"center": "center.toml", "store_node": "store.toml", "pos_agent": "pos.toml"}


@pytest.mark.parametrize("tier", TIERS)
async def test_every_tier_refuses_a_missing_route_and_a_wrong_method_alike(
    tier: str, tmp_path: Path
) -> None:
    module = importlib.import_module(tier)
    config = module.load_config(_config_in(tmp_path, EXAMPLES[tier]))
    app: web.Application = module.create_app(config)
    app.on_startup.clear()
    app.cleanup_ctx.clear()  # no database, jobs or devices: only routing and the middlewares
    async with TestClient(TestServer(app)) as client:
        missing = await client.get("/v1/no-such-route")
        assert missing.status == 404
        assert (await missing.json())["error"] == "not_found"
        wrong = await client.request("PATCH", "/health")
        assert wrong.status == 405
        assert (await wrong.json())["error"] == "method_not_allowed"


# -- copies of shared code -------------------------------------------------------------------


def _module(name: str) -> ModuleType:
    return importlib.import_module(name)


def _top_level(module: ModuleType, names: set[str]) -> dict[str, str]:
    """The AST dumps of the named top-level classes and assignments of a module."""
    tree = ast.parse(inspect.getsource(module))
    found: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name in names:
            found[node.name] = ast.dump(node)
        elif (
            isinstance(node, ast.Assign)
            and isinstance(node.targets[0], ast.Name)
            and node.targets[0].id in names
        ):
            found[node.targets[0].id] = ast.dump(node)
    return found


DB_THREADS = ("center.web.dbthread", "store_node.dbthread", "pos_agent.dbthread")


def test_the_db_thread_is_one_copy_per_tier() -> None:
    names = {"DbThread", "_Closable", "_O", "_T"}
    copies = {name: _top_level(_module(name), names) for name in DB_THREADS}
    for name, found in copies.items():
        assert set(found) == names, f"{name} lacks {names - set(found)}"
    first, *others = copies.values()
    for name, found in zip(DB_THREADS[1:], others, strict=True):
        assert found == first, f"{name}: DbThread differs from the copy in {DB_THREADS[0]}"


async def test_the_db_thread_runs_calls_on_one_thread_and_closes_what_it_owns() -> None:
    import threading

    dbthread = _module("store_node.dbthread")

    class Box:
        def __init__(self) -> None:
            self.made_on = threading.get_ident()
            self.closed = False

        def close(self) -> None:
            self.closed = True

    owned = dbthread.DbThread("box", Box, thread_name="test-box")
    box = await owned.open()
    assert box.made_on != threading.get_ident()
    assert await owned.run(lambda b: threading.get_ident()) == box.made_on
    await owned.close()
    assert box.closed

    given = Box()
    lent = dbthread.DbThread("box", lambda: given, thread_name="test-box", owned=False)
    assert await lent.open() is given
    await lent.close()
    assert not given.closed
    with pytest.raises(RuntimeError, match="open"):
        await lent.run(lambda b: b)


CONFIGS = ("center.config", "store_node.config", "pos_agent.config")


def test_the_config_reader_is_one_copy_per_tier() -> None:
    copies = {name: _top_level(_module(name), {"ConfigReader"}) for name in CONFIGS}
    first = copies[CONFIGS[0]]
    assert first, f"{CONFIGS[0]} has no ConfigReader"
    for name in CONFIGS[1:]:
        assert copies[name] == first, f"{name}: ConfigReader differs from {CONFIGS[0]}'s"


@pytest.mark.parametrize("name", CONFIGS)
def test_each_tier_words_every_problem_the_reader_finds(name: str) -> None:
    module = _module(name)
    reader_cls = module.ConfigReader
    said = set(re.findall(r'_say\(\s*"(\w+)"', inspect.getsource(reader_cls)))
    assert said == set(reader_cls.WORDS)
    assert set(module._WORDING) == set(reader_cls.WORDS)
    reader = reader_cls(module._WORDING)
    table = {"n": "x", "s": 3, "b": "yes", "t": 0.0, "blank": " "}
    assert reader.integer(table, "sec", "n", 1, low=0, high=9) is None
    assert reader.string(table, "sec", "s") is None
    assert reader.boolean(table, "sec", "b", True) is None
    assert reader.seconds(table, "sec", "t", 1.0) is None
    assert reader.string(table, "sec", "blank") is None
    assert reader.string(table, "sec", "absent") is None
    assert reader.string(table, "sec", "absent", "dflt") == "dflt"
    reader.unknown_keys(table, "sec", ("n", "s", "b", "t"))
    # Every problem at once, each naming its key.
    wheres = [problem.split(":", 1)[0] for problem in reader.problems]
    assert wheres == [
        "sec.n",
        "sec.s",
        "sec.b",
        "sec.t",
        "sec.blank",
        "sec.absent",
        "sec.blank",
    ]


def test_a_reader_refuses_wording_that_lacks_a_message() -> None:
    module = _module("store_node.config")
    wording = dict(module._WORDING)
    del wording["too_long"]
    with pytest.raises(ValueError, match="too_long"):
        module.ConfigReader(wording)
