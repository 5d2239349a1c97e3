"""A tablet app's story through the generated Python bindings (uniffi's
Python output stands in for Kotlin and Swift on Linux).

Run by scripts/test-bindings.sh, which builds the library, generates the
`aftercase` module into a directory and passes it and the binaries:

    story.py MODULE_DIR BIN_DIR

Against a real `aftercase-relay` on a free loopback port with real tokens:
create a case offline, sync it, receive another tablet's change live,
see a refusal's stable code (in an error and as a live event), see a
local error's code, and see the live sync stop with `revoked` when the
operator revokes the device. Any failure exits non-zero.
"""

import json
import os
import queue
import subprocess
import sys
import tempfile

MODULE_DIR, BIN_DIR = sys.argv[1], sys.argv[2]
sys.path.insert(0, MODULE_DIR)
import aftercase  # noqa: E402  (generated into MODULE_DIR)

# Waits below are for events that must come; the bound only keeps a broken
# build from hanging CI, it measures nothing.
EVENT_WAIT = 120


def run(*args, **kw):
    """Runs a command; fails the story with its output if it fails."""
    out = subprocess.run(args, capture_output=True, text=True, **kw)
    if out.returncode != 0:
        sys.exit(f"FAILED: {' '.join(args)}\n{out.stdout}\n{out.stderr}")
    return out.stdout


def check(cond, what):
    if not cond:
        sys.exit(f"FAILED: {what}")
    print(f"ok: {what}")


class Observer(aftercase.SyncObserver):
    """The app's side of the callback interface: events into a queue."""

    def __init__(self):
        self.events = queue.Queue()

    def on_event(self, event):
        self.events.put(event)

    def wait_for(self, kind, pred=lambda e: True):
        """The next event of `kind` matching `pred`, skipping others."""
        seen = []
        while True:
            try:
                e = self.events.get(timeout=EVENT_WAIT)
            except queue.Empty:
                sys.exit(f"FAILED: no {kind.__name__} event; saw {seen}")
            seen.append(e)
            if isinstance(e, kind) and pred(e):
                return e


def main():
    tmp = tempfile.mkdtemp(prefix="aftercase-bindings-")
    relay_dir = os.path.join(tmp, "relay")
    relay_bin = os.path.join(BIN_DIR, "aftercase-relay")
    cli_bin = os.path.join(BIN_DIR, "aftercase")
    env = dict(os.environ, AFTERCASE_LOG="warn")
    env.pop("AFTERCASE_JWT_SECRET", None)
    relay = subprocess.Popen(
        [relay_bin, "serve", "--listen", "127.0.0.1:0", "--data-dir", relay_dir],
        stdout=subprocess.PIPE, text=True, env=env)
    try:
        banner = relay.stdout.readline().strip()
        url = banner.rsplit(" ", 1)[-1]
        check(url.startswith("http://127.0.0.1:"), f"relay started ({banner})")
        story(tmp, relay_bin, relay_dir, cli_bin, url, env)
    finally:
        relay.terminate()
        relay.wait()
    print("bindings story: 1 passed, 0 failed")


def story(tmp, relay_bin, relay_dir, cli_bin, url, env):
    def token(user, role, store, device):
        return run(relay_bin, "token", "--data-dir", relay_dir, "--user", user,
                   "--role", role, "--store", store, "--device", device,
                   env=env).strip().splitlines()[-1]

    def cli(data_dir, *args):
        return run(cli_bin, "--data-dir", data_dir, *args, env=env)

    # The app's tablet: set up, then a case created before any sync.
    tablet = aftercase.AftercaseDevice.init(
        os.path.join(tmp, "tablet"), url, token("alice", "staff", "S1", "tab-a"),
        "story.py 1.0")
    info = tablet.info()
    check((info.user, info.role, info.store, info.device) == ("alice", "staff", "S1", "tab-a"),
          "device info comes from the token")
    check(aftercase.library_version().startswith("aftercase-client "), "library version")
    case_id = tablet.create_case("repair", "Wang Fang", "13800000000", "TV-55", "no picture")
    cases = tablet.list_cases()
    check(len(cases) == 1 and cases[0].id == case_id and cases[0].kind == "repair"
          and cases[0].customer_name == "Wang Fang", "case created offline and listed")
    check(tablet.status().pending_cases == 1, "one case waits for sync")
    shown = json.loads(tablet.case_json(case_id))
    check(shown["id"] == case_id and shown["description"] == "no picture", "case shown as JSON")
    case_no = cases[0].case_no
    check(json.loads(tablet.case_json(case_no))["id"] == case_id, "case found by its case number")

    # A local error carries a stable code.
    try:
        tablet.create_case("spaceship", "X", "1", None, None)
        sys.exit("FAILED: an unknown kind was accepted")
    except aftercase.AftercaseError.Local as e:
        check(e.code == "invalid_value", f"local error code invalid_value ({e})")
    try:
        tablet.add_note("no-such-case", "x")
        sys.exit("FAILED: a note on an unknown case was accepted")
    except aftercase.AftercaseError.Local as e:
        check(e.code == "unknown_case", f"local error code unknown_case ({e})")

    # Sync through the relay.
    report = tablet.sync_once()
    check(report.uploaded == 1, f"sync sent the case ({report})")
    status = tablet.status()
    check(status.pending_cases == 0 and status.last_sync is not None, "nothing pending after sync")

    # Another tablet (the CLI) of the same store gets it.
    other = os.path.join(tmp, "other")
    cli(other, "init", "--relay", url, "--token", token("bob", "staff", "S1", "tab-b"))
    cli(other, "sync")
    check(case_no in cli(other, "case", "list"), "the other tablet received the case")

    # Live: the other tablet's note arrives as an event.
    obs = Observer()
    tablet.start_live(obs)
    check(tablet.is_live(), "live sync running")
    try:
        tablet.start_live(Observer())
        sys.exit("FAILED: a second live sync started")
    except aftercase.AftercaseError.AlreadyLive:
        check(True, "a second live sync is refused")
    obs.wait_for(aftercase.SyncEvent.CONNECTED)
    obs.wait_for(aftercase.SyncEvent.SYNCED)
    cli(other, "case", "note", case_id, "customer called back: picture flickers")
    cli(other, "sync")
    obs.wait_for(aftercase.SyncEvent.CASE_CHANGED, lambda e: e.case_id == case_id)
    check("picture flickers" in tablet.case_json(case_id), "the other tablet's note arrived live")
    tablet.stop_live()
    stopped = obs.wait_for(aftercase.SyncEvent.STOPPED)
    check(stopped.code == "stopped" and not tablet.is_live(), "live sync stopped by the app")

    # A refusal: head office tightens the change size limit while this
    # tablet is offline; its long note is refused by the relay with a code.
    hq = os.path.join(tmp, "hq")
    cli(hq, "init", "--relay", url, "--token", token("hq", "head_office", "HQ", "hq-1"))
    policy = json.loads(cli(hq, "policy", "show"))
    policy["version"] = policy["version"] + 1
    policy["max_change_bytes"] = 4096
    policy_file = os.path.join(tmp, "policy.json")
    with open(policy_file, "w") as f:
        json.dump(policy, f)
    cli(hq, "policy", "publish", policy_file)
    long_note = "".join(chr(0x4E00 + (i * 7919) % 20000) for i in range(9000))
    tablet.add_note(case_id, long_note)
    try:
        tablet.sync_once()
        sys.exit("FAILED: the relay took a change over its size limit")
    except aftercase.AftercaseError.Refused as e:
        check(e.code == "too_large" and e.cases == 1, f"sync refused with code too_large ({e})")
    refused = tablet.status().refused
    check(len(refused) == 1 and refused[0].case_id == case_id and refused[0].code == "too_large",
          "status lists the refused case with its code")
    obs = Observer()
    tablet.start_live(obs)
    ev = obs.wait_for(aftercase.SyncEvent.REFUSED)
    check(ev.case_id == case_id and ev.code == "too_large", "live sync reports the refusal's code")

    # The operator revokes the tablet: the live sync stops with `revoked`.
    run(relay_bin, "revoke", "--data-dir", relay_dir, "--device", "tab-a", env=env)
    stopped = obs.wait_for(aftercase.SyncEvent.STOPPED)
    check(stopped.code == "revoked", f"live sync stopped: revoked ({stopped.reason})")
    check(not tablet.is_live(), "live sync no longer running")
    try:
        tablet.sync_once()
        sys.exit("FAILED: a revoked device synced")
    except aftercase.AftercaseError.Sync as e:
        check(e.code == "revoked", f"sync error code revoked ({e})")


if __name__ == "__main__":
    main()
