"""ControllerRevision history (control/controllers/revisions.py): upstream's hash, equality,
create with collisions, adoption, rollback renumbering and truncation, on the real object
layer (LocalClient on a MemoryStore)."""

from __future__ import annotations

import logging

from control.controllers import revisions as rv
from control.models.selectors import selector_from_spec

log = logging.getLogger("test")


def sts(image: str = "nginx:1", name: str = "web", uid: str = "u-1") -> dict:
    return {"apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": name, "namespace": "default", "uid": uid,
                         "annotations": {"kubernetes.io/change-cause": f"image {image}"}},
            "spec": {"selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": "c", "image": image}]}}}}


def test_fnv1_and_safe_encoding_match_upstream() -> None:
    # FNV-1 32 test vectors (not FNV-1a): "" -> 0x811c9dc5, "a" -> 0x050c5d7e
    assert rv._fnv1_32(b"") == 0x811C9DC5
    assert rv._fnv1_32(b"a") == 0x050C5D7E
    # SafeEncodeString(fmt.Sprint(n)): each decimal digit maps to alphanums[ord(d) % 27]
    h = rv.hash_data({})
    digits = str(rv._fnv1_32(b"{}"))
    assert h == "".join("456789bcdf"[int(d)] for d in digits)


def test_hash_is_stable_and_changes_with_template_and_collisions() -> None:
    a = rv.template_patch(sts("nginx:1"))
    assert a["spec"]["template"]["$patch"] == "replace"
    assert rv.hash_data(a) == rv.hash_data(rv.template_patch(sts("nginx:1")))
    assert rv.hash_data(a) != rv.hash_data(rv.template_patch(sts("nginx:2")))
    assert rv.hash_data(a, 0) != rv.hash_data(a, 1)


def test_new_revision_shape() -> None:
    rev = rv.new_revision(sts(), 3, 0)
    h = rev["metadata"]["labels"][rv.HASH_LABEL]
    assert rev["metadata"]["name"] == f"web-{h}"
    assert rev["metadata"]["labels"]["app"] == "web"
    assert rev["metadata"]["annotations"]["kubernetes.io/change-cause"] == "image nginx:1"
    assert rev["metadata"]["ownerReferences"][0]["uid"] == "u-1"
    assert rev["revision"] == 3
    back = rv.apply_revision(sts("nginx:9"), rev)
    assert back["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1"
    assert "$patch" not in back["spec"]["template"]


def test_equality_and_sorting() -> None:
    a, b = rv.new_revision(sts("nginx:1"), 1), rv.new_revision(sts("nginx:2"), 2)
    a2 = rv.new_revision(sts("nginx:1"), 5)
    assert rv.equal_revisions(a, a2) and not rv.equal_revisions(a, b)
    assert [r["revision"] for r in rv.find_equal([a2, b, a], a)] == [1, 5]
    assert rv.next_revision_number([a, a2, b]) == 6
    assert rv.next_revision_number([]) == 1


async def _owner(client, image: str = "nginx:1") -> dict:
    return await client.create("statefulsets", sts(image) | {"metadata": {"name": "web"}})


async def test_ensure_creates_reuses_and_rolls_back(client) -> None:
    hist = rv.RevisionHistory(client, log=log, owner_kind="StatefulSet")
    owner = await _owner(client)
    r1, revs, cc = await hist.ensure(owner, [], 0)
    assert (r1["revision"], len(revs), cc) == (1, 1, 0)
    again, revs, _ = await hist.ensure(owner, revs, 0)          # idempotent
    assert again["metadata"]["name"] == r1["metadata"]["name"] and len(revs) == 1
    owner["spec"]["template"]["spec"]["containers"][0]["image"] = "nginx:2"
    r2, revs, _ = await hist.ensure(owner, revs, 0)
    assert r2["revision"] == 2 and len(revs) == 2
    owner["spec"]["template"]["spec"]["containers"][0]["image"] = "nginx:1"   # roll back
    r3, revs, _ = await hist.ensure(owner, revs, 0)
    assert r3["metadata"]["name"] == r1["metadata"]["name"] and r3["revision"] == 3
    stored = (await client.list("controllerrevisions", namespace="default")).items
    assert sorted(r["revision"] for r in stored) == [2, 3]


async def test_collision_bumps_count(client) -> None:
    hist = rv.RevisionHistory(client, log=log, owner_kind="StatefulSet")
    owner = await _owner(client)
    squatter = rv.new_revision(owner, 1, 0)
    squatter["data"] = {"spec": {"template": {"metadata": {"labels": {"x": "y"}}}}}
    squatter["metadata"].pop("ownerReferences")
    await client.create("controllerrevisions", squatter)
    created, cc = await hist.create(owner, rv.new_revision(owner, 1, 0), 0)
    assert cc == 1
    assert created["metadata"]["name"] != squatter["metadata"]["name"]
    assert created["metadata"]["name"] == rv.new_revision(owner, 1, 1)["metadata"]["name"]


async def test_claim_adopts_orphans_and_truncate_keeps_live(client) -> None:
    hist = rv.RevisionHistory(client, log=log, owner_kind="StatefulSet")
    owner = await _owner(client)
    for i in range(1, 5):
        orphan = rv.new_revision(sts(f"nginx:{i}"), i)
        orphan["metadata"].pop("ownerReferences")
        await client.create("controllerrevisions", orphan)
    stranger = rv.new_revision(sts("x", name="db"), 1)      # another selector: left alone
    stranger["metadata"].pop("ownerReferences")
    await client.create("controllerrevisions", stranger)
    listed = (await client.list("controllerrevisions", namespace="default")).items
    owned = await hist.claim(owner, listed, selector_from_spec(owner["spec"]["selector"]))
    assert [r["revision"] for r in owned] == [1, 2, 3, 4]
    assert all(r["metadata"]["ownerReferences"][0]["uid"] == owner["metadata"]["uid"]
               for r in owned)
    live = {owned[0]["metadata"]["name"], owned[3]["metadata"]["name"]}
    deleted = await hist.truncate(owner, owned, live, 1)
    assert set(deleted) == {owned[1]["metadata"]["name"]}
    left = {r["revision"] for r in (await client.list("controllerrevisions",
                                                      namespace="default")).items
            if r["metadata"]["name"].startswith("web-")}
    assert left == {1, 3, 4}


async def test_rollback_patches_owner_template(client) -> None:
    hist = rv.RevisionHistory(client, log=log, owner_kind="StatefulSet")
    owner = await _owner(client, "nginx:1")
    old = rv.new_revision(owner, 1)
    owner["spec"]["template"]["spec"]["containers"][0]["image"] = "nginx:2"
    owner["spec"]["template"]["spec"]["containers"][0]["env"] = [{"name": "A", "value": "1"}]
    owner = await client.update("statefulsets", owner)
    back = await hist.rollback("statefulsets", owner, old)
    c = back["spec"]["template"]["spec"]["containers"][0]
    assert c["image"] == "nginx:1" and "env" not in c
