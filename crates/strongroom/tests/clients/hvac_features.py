"""Batch tokens, response wrapping and the identity mount through hvac, printing one JSON
document of what the client saw, normalized (random ids and times replaced by their shape),
so the same run against OpenBao and against Strongroom can be compared for equality.

usage: hvac_features.py ADDR ROOT_TOKEN
"""
import json
import re
import sys

import hvac

addr, root = sys.argv[1], sys.argv[2]
c = hvac.Client(url=addr, token=root)
seen = {}


def shape(v):
    """Replace values that differ between runs by a description of their form."""
    if isinstance(v, dict):
        return {shape(k): shape(x) for k, x in sorted(v.items())}
    if isinstance(v, list):
        return [shape(x) for x in v]
    if isinstance(v, str):
        if re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", v):
            return "<uuid>"
        if re.fullmatch(r"\d{4}-\d\d-\d\dT[\d:.]+Z", v):
            return "<time>"
        if v.startswith("b.") and len(v) > 40:
            return "<batch token>"
        if re.fullmatch(r"s\.[0-9A-Za-z]{24}", v):
            return "<service token>"
        if re.fullmatch(r"[0-9A-Za-z]{24}", v):
            return "<accessor>"
        if re.fullmatch(r"(auth_)?userpass_[0-9a-f]{8}", v):
            return "<mount accessor>"
        if re.fullmatch(r"entity_[0-9a-f]{8}(\.root)?", v):
            return "<entity name>"
    return v


def step(name, fn):
    try:
        out = fn()
        if hasattr(out, "status_code"):
            out = {"status": out.status_code}
        seen[name] = {"ok": shape(out)}
    except hvac.exceptions.VaultError as e:
        seen[name] = {"error": type(e).__name__, "errors": e.errors}
    return seen[name]


c.sys.enable_secrets_engine("kv", path="feat")
c.write("feat/a", v="wrapped-value")
c.sys.create_or_update_policy("fp", 'path "feat/*" { capabilities = ["read"] }')

# batch tokens
r = step("batch create", lambda: c.auth.token.create(type="batch", policies=["fp"], ttl="1h")["auth"])
batch = c.auth.token.create(type="batch", policies=["fp"], ttl="1h")["auth"]["client_token"]
b = hvac.Client(url=addr, token=batch)
step("batch read", lambda: b.read("feat/a")["data"])
step("batch lookup-self", lambda: {k: v for k, v in b.auth.token.lookup_self()["data"].items() if k not in ("ttl", "creation_time", "expire_time", "issue_time")})
step("batch child", lambda: b.auth.token.create(policies=["fp"]))
step("batch renew", lambda: b.auth.token.renew_self())
step("batch revoke", lambda: c.auth.token.revoke(batch))
step("batch root", lambda: c.auth.token.create(type="batch"))
step("batch period", lambda: c.auth.token.create(type="batch", policies=["fp"], period="1h"))
step("bad type", lambda: c.auth.token.create(type="bogus"))

# response wrapping
wrapped = c.auth.token.create(policies=["fp"], wrap_ttl="90s")
step("wrap token create", lambda: wrapped["wrap_info"])
step("lookup wrapped", lambda: c.sys.read_wrapping_info(wrapped["wrap_info"]["token"])["data"] if hasattr(c.sys, "read_wrapping_info") else c.write("sys/wrapping/lookup", token=wrapped["wrap_info"]["token"])["data"])
step("unwrap token", lambda: c.sys.unwrap(wrapped["wrap_info"]["token"])["auth"])
step("unwrap twice", lambda: c.sys.unwrap(wrapped["wrap_info"]["token"]))
w = c.read("feat/a", wrap_ttl="60s")
step("wrapped read", lambda: w["wrap_info"])
step("unwrap read", lambda: c.sys.unwrap(w["wrap_info"]["token"])["data"])
w = c.sys.wrap(payload={"foo": "bar"}, ttl="2m")
step("wrap payload", lambda: w["wrap_info"])
step("unwrap payload", lambda: c.sys.unwrap(w["wrap_info"]["token"])["data"])
step("unwrap bogus", lambda: c.sys.unwrap("s.AAAAAAAAAAAAAAAAAAAAAAAA"))

# identity
c.sys.enable_auth_method("userpass")
c.auth.userpass.create_or_update_user("idu", password="pw", policies=["fp"])
u = hvac.Client(url=addr)
login = u.auth.userpass.login("idu", "pw")["auth"]
step("login", lambda: login)
eid = login["entity_id"]
step("entity", lambda: c.secrets.identity.read_entity(eid)["data"])
step("entity list", lambda: c.secrets.identity.list_entities()["data"])
step("entity lookup", lambda: c.secrets.identity.lookup_entity(entity_id=eid)["data"])
step("second login same entity", lambda: u.auth.userpass.login("idu", "pw")["auth"]["entity_id"] == eid)
step("create entity", lambda: c.secrets.identity.create_or_update_entity(name="alice", policies=["fp"], metadata={"team": "a"})["data"])
step("read entity by name", lambda: c.secrets.identity.read_entity_by_name("alice")["data"])
step("delete entity", lambda: c.secrets.identity.delete_entity_by_name("alice"))
step("read deleted", lambda: c.secrets.identity.read_entity_by_name("alice"))

# the real bao CLI: -wrap-ttl, unwrap, batch tokens, identity reads
import os
import shutil
import subprocess

bao = os.environ.get("STRONGROOM_BAO_BIN") or shutil.which("bao")
env = dict(os.environ, BAO_ADDR=addr, VAULT_ADDR=addr, BAO_TOKEN=root, VAULT_TOKEN=root)
env.pop("BAO_NAMESPACE", None)


def cli(name, *args):
    p = subprocess.run([bao, *args], env=env, capture_output=True, text=True, timeout=60)
    try:
        out = shape(json.loads(p.stdout)) if p.stdout.strip() else None
    except ValueError:
        out = p.stdout.strip()
    seen[name] = {"code": p.returncode, "out": out, "stderr": p.stderr.strip().splitlines()[-1:] if p.returncode else []}
    return json.loads(p.stdout) if p.returncode == 0 and p.stdout.strip() else None


w = cli("cli read -wrap-ttl", "read", "-wrap-ttl=60s", "-format=json", "feat/a")
cli("cli unwrap", "unwrap", "-format=json", w["wrap_info"]["token"])
cli("cli unwrap again", "unwrap", "-format=json", w["wrap_info"]["token"])
cli("cli batch token", "token", "create", "-type=batch", "-policy=fp", "-format=json")
cli("cli wrapped token", "token", "create", "-policy=fp", "-wrap-ttl=2m", "-format=json")
cli("cli entity", "read", "-format=json", "identity/entity/id/" + eid)

print(json.dumps(seen, indent=1, sort_keys=True))
