"""nftables from Python, for every knet feature that programs the kernel's packet filter.

Through libnftables' JSON API (the `nftables` module of pip-nftables: a copy of the binding
the nftables project ships, ctypes over libnftables.so.1) — never one `nft` process per
rule. Each call is one batch, and a batch is one kernel transaction: all of it or none.

libnftables talks netlink from the calling thread's network namespace, so calls run on one
worker thread that enters the target netns (`nsutil.in_netns`), makes a fresh context (about
0.3 ms) and leaves again; the event loop's thread never changes namespace. `netns=None`
means the namespace knet runs in. `FakeNft` keeps tables in memory for unit tests; both
pass tests/unit/knet/dataplane/test_nft_contract.py.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from typing import Any, Protocol

from knet.dataplane import nsutil

__all__ = ["FakeNft", "LibNft", "Nft", "NftError", "table_objects"]

Command = Mapping[str, Any]


class NftError(OSError):
    """A batch the kernel (or libnftables' parser) refused; nothing of it was applied."""

    def __init__(self, netns: str | None, what: str, detail: str) -> None:
        where = f"netns {netns}" if netns else "the host netns"
        super().__init__(f"nftables in {where}: {what} failed: {detail.strip()} "
                         "(nothing of this batch was applied)")
        self.netns, self.detail = netns, detail.strip()


class Nft(Protocol):
    async def apply(self, netns: str | None, commands: Sequence[Command]) -> None:
        """Run `commands` ({"add": {...}}, {"delete": ...}, {"flush": ...}) as one transaction."""

    async def table(self, netns: str | None, family: str, name: str) -> list[dict[str, Any]] | None:
        """The table's objects as `list table` prints them in JSON; None when it is absent."""

    async def delete_table(self, netns: str | None, family: str, name: str) -> bool:
        """Remove the table if it exists; True when something was removed."""


def table_objects(listing: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The listing without its metainfo and without kernel handles: what a test compares."""
    out = []
    for obj in listing:
        if "metainfo" in obj:
            continue
        ((kind, body),) = obj.items()
        out.append({kind: {k: v for k, v in body.items() if k != "handle"}})
    return out


class LibNft:
    """The real kernel, through libnftables (see the module docstring)."""

    def __init__(self) -> None:
        import nftables  # type: ignore[import-untyped]  # only a real dataplane needs the .so
        self._lib = nftables
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="knet-nft")

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    def _run(self, netns: str | None, payload: dict[str, Any]) -> tuple[int, str, str]:
        with nsutil.in_netns(netns) if netns else nullcontext():
            ctx = self._lib.Nftables()
            ctx.set_json_output(True)
            rc, out, err = ctx.json_cmd(payload)
        return rc, out if isinstance(out, str) else json.dumps(out), err

    async def _call(self, netns: str | None, payload: dict[str, Any]) -> tuple[int, str, str]:
        return await asyncio.get_running_loop().run_in_executor(
            self._pool, self._run, netns, payload)

    async def apply(self, netns: str | None, commands: Sequence[Command]) -> None:
        if not commands:
            return
        rc, _, err = await self._call(netns, {"nftables": [dict(c) for c in commands]})
        if rc != 0:
            raise NftError(netns, f"a batch of {len(commands)} commands", err)

    async def table(self, netns: str | None, family: str, name: str) -> list[dict[str, Any]] | None:
        rc, out, err = await self._call(
            netns, {"nftables": [{"list": {"table": {"family": family, "name": name}}}]})
        if rc != 0:
            if "No such file or directory" in err:
                return None
            raise NftError(netns, f"list table {family} {name}", err)
        return list(json.loads(out)["nftables"])

    async def delete_table(self, netns: str | None, family: str, name: str) -> bool:
        # `add` then `delete` in one batch: idempotent, and no error when it was absent
        existed = await self.table(netns, family, name) is not None
        await self.apply(netns, [{"add": {"table": {"family": family, "name": name}}},
                                 {"delete": {"table": {"family": family, "name": name}}}])
        return existed


class FakeNft:
    """Tables in memory, per netns: add/delete/flush of tables, chains, sets, maps, rules and
    elements, applied all-or-nothing like a kernel transaction. It checks what the kernel
    checks for these (a chain, set or rule needs its table; a rule needs its chain) and
    leaves the meaning of expressions alone."""

    _KINDS = ("table", "chain", "set", "map", "rule", "element")

    def __init__(self) -> None:
        self.tables: dict[tuple[str | None, str, str], dict[str, Any]] = {}
        self.batches = 0

    async def apply(self, netns: str | None, commands: Sequence[Command]) -> None:
        staged = json.loads(json.dumps(self.tables_by_key()))
        for cmd in commands:
            ((verb, body),) = cmd.items()
            ((kind, obj),) = body.items()
            if kind not in self._KINDS or verb not in ("add", "delete", "flush"):
                raise NftError(netns, f"{verb} {kind}", f"fake: unsupported command {verb} {kind}")
            self._one(staged, netns, verb, kind, obj)
        self.tables = {tuple(json.loads(k)): v for k, v in staged.items()}
        self.batches += 1

    def tables_by_key(self) -> dict[str, dict[str, Any]]:
        return {json.dumps(list(k)): v for k, v in self.tables.items()}

    def _one(self, staged: dict[str, dict[str, Any]], netns: str | None, verb: str, kind: str,
             obj: Mapping[str, Any]) -> None:
        tname = obj["name"] if kind == "table" else obj["table"]
        key = json.dumps([netns, obj["family"], tname])
        table = staged.get(key)
        if kind == "table":
            if verb == "add":
                staged.setdefault(key, {"chains": {}, "sets": {}})
            elif verb == "delete":
                if table is None:
                    raise NftError(netns, f"delete table {obj['family']} {tname}",
                                   "No such file or directory")
                del staged[key]
            elif table is not None:
                for chain in table["chains"].values():
                    chain["rules"].clear()
                for s in table["sets"].values():
                    s["elem"] = []
            return
        if table is None:
            raise NftError(netns, f"{verb} {kind} in {obj['family']} {tname}",
                           "No such file or directory")
        if kind == "chain":
            self._chain(table, netns, verb, obj)
        elif kind in ("set", "map"):
            if verb == "add":
                table["sets"].setdefault(obj["name"], {"kind": kind, "spec": dict(obj), "elem": []})
            elif verb == "delete":
                table["sets"].pop(obj["name"], None)
            else:
                table["sets"][obj["name"]]["elem"] = []
        elif kind == "element":
            s = table["sets"].get(obj["name"])
            if s is None:
                raise NftError(netns, f"{verb} element", "No such file or directory")
            elems = list(obj.get("elem", []))
            s["elem"] = ([e for e in s["elem"] if e not in elems] if verb == "delete"
                         else s["elem"] + [e for e in elems if e not in s["elem"]])
        else:
            chain = table["chains"].get(obj["chain"])
            if chain is None:
                raise NftError(netns, f"add rule to chain {obj['chain']}",
                               "No such file or directory")
            chain["rules"].append(list(obj["expr"]))

    @staticmethod
    def _chain(table: dict[str, Any], netns: str | None, verb: str, obj: Mapping[str, Any]) -> None:
        name = obj["name"]
        if verb == "add":
            spec = {k: obj[k] for k in ("type", "hook", "prio", "policy") if k in obj}
            table["chains"].setdefault(name, {"spec": spec, "rules": []})
        elif verb == "flush":
            table["chains"][name]["rules"].clear()
        elif name in table["chains"]:
            del table["chains"][name]
        else:
            raise NftError(netns, f"delete chain {name}", "No such file or directory")

    async def table(self, netns: str | None, family: str, name: str) -> list[dict[str, Any]] | None:
        t = self.tables.get((netns, family, name))
        if t is None:
            return None
        out: list[dict[str, Any]] = [{"table": {"family": family, "name": name}}]
        for cname, chain in t["chains"].items():
            out.append({"chain": {"family": family, "table": name, "name": cname,
                                  **chain["spec"]}})
        for s in t["sets"].values():
            body = {k: v for k, v in s["spec"].items() if k not in ("elem",)}
            if s["elem"]:
                body["elem"] = s["elem"]
            out.append({s["kind"]: body})
        for cname, chain in t["chains"].items():
            for expr in chain["rules"]:
                out.append({"rule": {"family": family, "table": name, "chain": cname,
                                     "expr": expr}})
        return out

    async def delete_table(self, netns: str | None, family: str, name: str) -> bool:
        return self.tables.pop((netns, family, name), None) is not None
