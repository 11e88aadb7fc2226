"""The key manager driven by hvac, an independent Python client. The same script runs
against real OpenBao and against `strongroom server` (crates/strongroom/tests/kms_clients.rs)
so both give the same answers.

usage: hvac_kms.py ADDR STATE_FILE before-restart|after-restart
"""
import json
import sys

import hvac
from hvac import exceptions as hx

addr, state_file, phase = sys.argv[1], sys.argv[2], sys.argv[3]
checks = 0


def check(cond, what):
    global checks
    checks += 1
    if not cond:
        raise AssertionError(what)


def raises(exc, fn, what):
    try:
        fn()
    except exc:
        check(True, what)
        return
    except Exception as e:  # noqa: BLE001
        raise AssertionError(f"{what}: raised {type(e).__name__}: {e}")
    raise AssertionError(f"{what}: no exception")


c = hvac.Client(url=addr)


def kv2_first_write(fn):
    """OpenBao's fresh kv-v2 mount answers 400 "Upgrading from non-versioned to versioned
    data" for a moment after it is enabled (a documented, client-visible state): retry only
    that answer, for up to 10 s."""
    import time
    deadline = time.time() + 10
    while True:
        try:
            return fn()
        except hx.InvalidRequest as e:
            if "Upgrading from non-versioned to versioned data" not in str(e) or time.time() > deadline:
                raise
            time.sleep(0.1)


def wait_active():
    """Raft storage elects a leader after unseal (OpenBao takes ~1 s): wait for health 200."""
    import time
    import urllib.request
    for _ in range(100):
        try:
            with urllib.request.urlopen(f"{addr}/v1/sys/health") as r:
                if r.status == 200:
                    return
        except Exception:  # noqa: BLE001 - 5xx while standby/sealed
            pass
        time.sleep(0.2)
    raise AssertionError("server did not become active")


if phase == "before-restart":
    check(not c.sys.is_initialized(), "fresh server is uninitialized")
    init = c.sys.initialize(secret_shares=5, secret_threshold=3)
    keys, root = init["keys"], init["root_token"]
    check(len(keys) == 5, "five shares")
    check(c.sys.is_sealed(), "sealed after init")
    # a wrong share fails at the threshold and resets progress
    c.sys.submit_unseal_key(keys[0])
    c.sys.submit_unseal_key("ab" * 33)
    raises(hx.InvalidRequest, lambda: c.sys.submit_unseal_key(keys[1]), "wrong share fails at threshold")
    check(c.sys.read_seal_status()["progress"] == 0, "progress reset")
    c.sys.submit_unseal_keys(keys[2:5])
    check(not c.sys.is_sealed(), "unsealed with 3 of 5")
    wait_active()
    c.token = root

    # KV v1
    c.sys.enable_secrets_engine("kv", path="kv1", options={"version": "1"})
    c.secrets.kv.v1.create_or_update_secret("app/db", secret={"password": "hvac-pw-1", "n": 3}, mount_point="kv1")
    r = c.secrets.kv.v1.read_secret("app/db", mount_point="kv1")
    check(r["data"] == {"password": "hvac-pw-1", "n": 3}, "kv1 round trip keeps JSON types")
    check(c.secrets.kv.v1.list_secrets("app", mount_point="kv1")["data"]["keys"] == ["db"], "kv1 list")
    c.secrets.kv.v1.delete_secret("app/db", mount_point="kv1")
    raises(hx.InvalidPath, lambda: c.secrets.kv.v1.read_secret("app/db", mount_point="kv1"), "kv1 deleted -> 404")

    # KV v2
    c.sys.enable_secrets_engine("kv", path="kv2", options={"version": "2"})
    v = kv2_first_write(lambda: c.secrets.kv.v2.create_or_update_secret("svc", secret={"token": "hvac-v1"}, mount_point="kv2"))
    check(v["data"]["version"] == 1, "kv2 v1")
    c.secrets.kv.v2.create_or_update_secret("svc", secret={"token": "hvac-v2"}, cas=1, mount_point="kv2")
    raises(hx.InvalidRequest, lambda: c.secrets.kv.v2.create_or_update_secret("svc", secret={"x": 1}, cas=1, mount_point="kv2"), "stale cas -> 400")
    r = c.secrets.kv.v2.read_secret_version("svc", mount_point="kv2", raise_on_deleted_version=True)
    check(r["data"]["data"] == {"token": "hvac-v2"} and r["data"]["metadata"]["version"] == 2, "kv2 latest")
    r = c.secrets.kv.v2.read_secret_version("svc", version=1, mount_point="kv2", raise_on_deleted_version=True)
    check(r["data"]["data"] == {"token": "hvac-v1"}, "kv2 old version")
    c.secrets.kv.v2.patch("svc", secret={"extra": "e"}, mount_point="kv2")
    r = c.secrets.kv.v2.read_secret_version("svc", mount_point="kv2", raise_on_deleted_version=True)
    check(r["data"]["data"] == {"token": "hvac-v2", "extra": "e"}, "kv2 patch merges")
    c.secrets.kv.v2.delete_latest_version_of_secret("svc", mount_point="kv2")
    raises(hx.InvalidPath, lambda: c.secrets.kv.v2.read_secret_version("svc", mount_point="kv2", raise_on_deleted_version=True), "soft-deleted -> 404")
    c.secrets.kv.v2.undelete_secret_versions("svc", versions=[3], mount_point="kv2")
    c.secrets.kv.v2.destroy_secret_versions("svc", versions=[1], mount_point="kv2")
    m = c.secrets.kv.v2.read_secret_metadata("svc", mount_point="kv2")
    check(m["data"]["current_version"] == 3 and m["data"]["versions"]["1"]["destroyed"] is True, "kv2 metadata")
    check(c.secrets.kv.v2.list_secrets("", mount_point="kv2")["data"]["keys"] == ["svc"], "kv2 list")

    # policies and denial
    c.sys.create_or_update_policy("app", 'path "kv1/app/*" {\n  capabilities = ["create", "read", "update", "list"]\n}\n')
    check("app" in c.sys.list_policies()["data"]["policies"], "policy listed")
    check('kv1/app/*' in c.sys.read_policy("app")["data"]["rules"], "policy read")
    raises(hx.InvalidRequest, lambda: c.sys.create_or_update_policy("bad", 'path "x" { capabilities = ["fly"] }'), "bad policy -> 400")

    # tokens and their lifecycle
    t = c.auth.token.create(policies=["app"], ttl="1h")["auth"]
    check(sorted(t["policies"]) == ["app", "default"] and t["lease_duration"] == 3600, "token create")
    app = hvac.Client(url=addr, token=t["client_token"])
    app.secrets.kv.v1.create_or_update_secret("app/x", secret={"v": "1"}, mount_point="kv1")
    check(app.secrets.kv.v1.read_secret("app/x", mount_point="kv1")["data"] == {"v": "1"}, "app token reads its path")
    raises(hx.Forbidden, lambda: app.secrets.kv.v1.read_secret("other", mount_point="kv1"), "app token denied elsewhere")
    raises(hx.Forbidden, lambda: app.sys.list_mounted_secrets_engines(), "app token denied sys/mounts")
    look = app.auth.token.lookup_self()["data"]
    check(look["policies"] == ["app", "default"] and 0 < look["ttl"] <= 3600, "lookup-self")
    ren = app.auth.token.renew_self(increment="30m")["auth"]
    check(ren["lease_duration"] <= 1800, "renew-self")
    check(c.auth.token.lookup_accessor(t["accessor"])["data"]["policies"] == ["app", "default"], "lookup-accessor")
    orphan = c.auth.token.create_orphan(policies=["app"])["auth"]
    check(orphan["orphan"] is True, "orphan token")
    c.auth.token.revoke(t["client_token"])
    raises(hx.Forbidden, lambda: app.auth.token.lookup_self(), "revoked token is rejected")

    # userpass
    c.sys.enable_auth_method("userpass")
    c.auth.userpass.create_or_update_user("alice", "alice-pw-hvac", policies=["app"])
    login = hvac.Client(url=addr).auth.userpass.login("alice", "alice-pw-hvac")["auth"]
    check(login["policies"] == ["app", "default"] and login["metadata"]["username"] == "alice", "userpass login")
    raises(hx.InvalidRequest, lambda: hvac.Client(url=addr).auth.userpass.login("alice", "wrong"), "wrong password -> 400")

    # data for after the restart, then seal
    c.secrets.kv.v1.create_or_update_secret("persist", secret={"k": "survives-restart"}, mount_point="kv1")
    c.sys.seal()
    check(c.sys.is_sealed(), "sealed")
    raises(hx.VaultDown, lambda: c.secrets.kv.v1.read_secret("persist", mount_point="kv1"), "sealed -> 503")
    with open(state_file, "w") as f:
        json.dump({"keys": keys, "root": root}, f)

elif phase == "after-restart":
    with open(state_file) as f:
        st = json.load(f)
    check(c.sys.is_initialized(), "still initialized")
    check(c.sys.is_sealed(), "a restarted server starts sealed")
    c.sys.submit_unseal_keys([st["keys"][4], st["keys"][0], st["keys"][2]])
    check(not c.sys.is_sealed(), "unsealed again")
    wait_active()
    c.token = st["root"]
    check(c.secrets.kv.v1.read_secret("persist", mount_point="kv1")["data"] == {"k": "survives-restart"}, "data survived")
    r = c.secrets.kv.v2.read_secret_version("svc", mount_point="kv2", raise_on_deleted_version=True)
    check(r["data"]["data"]["extra"] == "e", "kv2 survived")
    login = hvac.Client(url=addr).auth.userpass.login("alice", "alice-pw-hvac")["auth"]
    check(login["metadata"]["username"] == "alice", "userpass survived")
else:
    sys.exit(f"unknown phase {phase}")

print(f"hvac {phase}: {checks} checks passed")
