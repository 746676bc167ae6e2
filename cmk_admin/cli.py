"""cmk-admin: start a rollout or one account, watch it with progress bars, list, approve, terminate, report."""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any, TextIO

from cmk.phases import PHASES
from cmk_admin.api import Api, ApiError

DEFAULT_URL = "http://127.0.0.1:7071"
FINAL_STATUSES = {"Completed", "Failed", "Terminated"}
GOOD_OUTCOMES = {"Enabled", "AlreadyEnabled", "Planned"}
BAR_WIDTH = 30
ROLES = ("CMK.Reader", "CMK.Operator", "CMK.Approver")
LOCAL_AUDIENCE = "api://cmk-rollout-local"
LOCAL_PRINCIPALS = uuid.UUID("0b7c62a4-3f1e-4d8a-9c55-2e6f1a9d7b31")


def local_token(user: str, roles: list[str], lifetime_seconds: int = 3600) -> str:
    """An unsigned token as `python -m sandbox serve --auth entra` accepts it (never Azure): the app roles, a
    name, and an object id derived from the name, so one name is one principal (separation of duties)."""
    now = int(time.time())
    object_id = str(uuid.uuid5(LOCAL_PRINCIPALS, user.lower()))
    claims: dict[str, Any] = {"aud": LOCAL_AUDIENCE, "oid": object_id, "sub": object_id, "name": user}
    claims["roles"] = sorted(set(roles))
    claims.update({"iat": now, "nbf": now, "exp": now + lifetime_seconds, "ver": "2.0"})

    def encode(part: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(part).encode()).rstrip(b"=").decode()

    return f"{encode({'alg': 'none', 'typ': 'JWT'})}.{encode(claims)}."


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    token = args.token
    if args.as_role:
        token = local_token(args.as_user, args.as_role)
    api = Api(args.url, args.key, token)
    try:
        result: int = args.handler(api, args)
        return result
    except ApiError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cmk-admin", description=__doc__)
    parser.add_argument(
        "--url",
        default=os.environ.get("CMK_API_URL", DEFAULT_URL),
        help="base URL of the app (env CMK_API_URL; default %(default)s)",
    )
    parser.add_argument(
        "--key",
        default=os.environ.get("CMK_FUNCTION_KEY"),
        help="function key (env CMK_FUNCTION_KEY), when the app runs with CMK_AUTH_MODE=functionKey",
    )
    parser.add_argument(
        "--token",
        default=os.environ.get("CMK_API_TOKEN"),
        help="Entra ID access token for the app (env CMK_API_TOKEN), when it runs with CMK_AUTH_MODE=entra: "
        "az account get-access-token --resource <app client id> --query accessToken -o tsv",
    )
    parser.add_argument(
        "--as-role",
        action="append",
        choices=ROLES,
        help="local host only (serve --auth entra): call with an unsigned local token carrying this app role "
        "(repeatable)",
    )
    parser.add_argument(
        "--as-user",
        default=os.environ.get("USER") or "local-user",
        help="with --as-role: the local principal's name (its object id derives from it; default $USER)",
    )
    commands = parser.add_subparsers(required=True, metavar="command")

    enable = commands.add_parser("enable", help="enable CMK on one account")
    enable.add_argument("account_id")
    enable.add_argument("--key-uri", required=True)
    enable.add_argument("--identity", help='"SystemAssigned" or a user-assigned identity id')
    enable.add_argument("--dry-run", action="store_true")
    enable.add_argument("--approval", action="store_true", help="wait for approve before the irreversible PATCH")
    enable.add_argument("--watch", action="store_true")
    enable.set_defaults(handler=_enable)

    rollout = commands.add_parser("rollout", help="enable CMK on many accounts")
    rollout.add_argument("--account", action="append", default=[], help="an account id (repeatable)")
    rollout.add_argument("--accounts-file", type=Path, help="a file with one account id per line")
    rollout.add_argument("--subscription", action="append", default=[], help="scope subscription (repeatable)")
    rollout.add_argument("--resource-group", action="append", default=[], help="scope resource group name")
    rollout.add_argument("--tag", action="append", default=[], help="scope tag filter name=value")
    keys = rollout.add_mutually_exclusive_group()
    keys.add_argument("--key-uri")
    keys.add_argument("--key-policy", type=Path, help="JSON key policy file")
    rollout.add_argument("--identity")
    rollout.add_argument("--max-concurrency", type=int)
    rollout.add_argument("--max-per-subscription", type=int)
    rollout.add_argument("--max-preparing", type=int, help="accounts prepared ahead of their slot at once")
    rollout.add_argument("--dry-run", action="store_true")
    rollout.add_argument("--watch", action="store_true")
    rollout.set_defaults(handler=_rollout)

    watch = commands.add_parser("watch", help="follow an instance with live progress until it ends")
    watch.add_argument("instance_id")
    watch.add_argument("--interval", type=float, default=2.0, help="seconds between refreshes")
    watch.set_defaults(handler=_watch)

    status = commands.add_parser("status", help="print an instance's status as JSON")
    status.add_argument("instance_id")
    status.set_defaults(handler=_status)

    listing = commands.add_parser("list", help="list instances")
    listing.add_argument("--status", help="comma-separated runtime statuses")
    listing.add_argument("--prefix")
    listing.add_argument("--top", type=int, default=100)
    listing.add_argument("--all", action="store_true", help="follow continuation tokens to the end")
    listing.set_defaults(handler=_list)

    for name, approved in (("approve", True), ("reject", False)):
        decide = commands.add_parser(name, help=f"{name} an instance waiting for approval")
        decide.add_argument("instance_id")
        decide.add_argument("--comment")
        decide.set_defaults(handler=_decide, approved=approved)

    terminate = commands.add_parser("terminate", help="stop an instance (Azure keeps encrypting)")
    terminate.add_argument("instance_id")
    terminate.add_argument("--reason")
    terminate.set_defaults(handler=_terminate)

    report = commands.add_parser("report", help="print or save a finished rollout's report")
    report.add_argument("rollout_id")
    report.add_argument("--output", type=Path, help="write the report here instead of printing it")
    report.add_argument("--json", action="store_true")
    report.set_defaults(handler=_report)
    return parser


def _started(api: Api, body: dict[str, Any], path: str, watch: bool) -> int:
    started = api.json("POST", path, body)
    print(started["id"])
    if not watch:
        return 0
    return _follow(api, started["id"], 2.0, sys.stdout)


def _enable(api: Api, args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"accountId": args.account_id, "keyUri": args.key_uri}
    if args.identity:
        body["identity"] = args.identity
    if args.dry_run:
        body["dryRun"] = True
    if args.approval:
        body["approval"] = "required"
    return _started(api, body, "cmk/accounts", args.watch)


def _rollout(api: Api, args: argparse.Namespace) -> int:
    body: dict[str, Any] = {}
    accounts = list(args.account)
    if args.accounts_file:
        accounts += [line.strip() for line in args.accounts_file.read_text().splitlines() if line.strip()]
    if accounts:
        body["accounts"] = accounts
    if args.subscription:
        scope: dict[str, Any] = {"subscriptions": args.subscription}
        if args.resource_group:
            scope["resourceGroups"] = args.resource_group
        if args.tag:
            scope["tags"] = dict(tag.split("=", 1) for tag in args.tag)
        body["scope"] = scope
    if args.key_uri:
        body["keyUri"] = args.key_uri
    if args.key_policy:
        body["keyPolicy"] = json.loads(args.key_policy.read_text())
    for field, value in (
        ("identity", args.identity),
        ("maxConcurrency", args.max_concurrency),
        ("maxConcurrencyPerSubscription", args.max_per_subscription),
        ("maxPreparing", args.max_preparing),
    ):
        if value is not None:
            body[field] = value
    if args.dry_run:
        body["dryRun"] = True
    return _started(api, body, "cmk/rollouts", args.watch)


def _watch(api: Api, args: argparse.Namespace) -> int:
    return _follow(api, args.instance_id, args.interval, sys.stdout)


def _follow(api: Api, instance_id: str, interval: float, out: TextIO) -> int:
    """Redraw the instance's progress until it ends; exit 0 when every outcome is a good one."""
    drawn = 0
    live = out.isatty()
    last = ""
    while True:
        status = api.json("GET", f"cmk/instances/{instance_id}")
        lines = render(status)
        text = "\n".join(lines)
        if live:
            if drawn:
                out.write(f"\x1b[{drawn}F\x1b[J")
            out.write(text + "\n")
            drawn = len(lines)
        elif text != last:
            out.write(text + "\n")
        out.flush()
        last = text
        if status["runtimeStatus"] in FINAL_STATUSES:
            return 0 if succeeded(status) else 1
        time.sleep(interval)


def succeeded(status: dict[str, Any]) -> bool:
    output = status.get("output")
    if status.get("runtimeStatus") != "Completed" or not isinstance(output, dict):
        return False
    if "totals" in output:
        return not output["totals"].get("Failed") and not unseen_subscriptions(output)
    return output.get("outcome") in GOOD_OUTCOMES


def unseen_subscriptions(output: dict[str, Any]) -> list[dict[str, Any]]:
    """Subscriptions of a rollout's scope it could not look into (not readable, or unknown to ARM)."""
    findings = (output.get("discovery") or {}).get("scopeFindings") or []
    return [f for f in findings if f.get("code") != "NO_ACCOUNTS_IN_SCOPE"]


def bar(done: float, total: float, width: int = BAR_WIDTH) -> str:
    fraction = 0.0 if total <= 0 else min(1.0, done / total)
    filled = round(fraction * width)
    return f"[{'#' * filled}{'.' * (width - filled)}] {fraction:6.1%}"


def render(status: dict[str, Any]) -> list[str]:
    """Lines describing an instance: a rollout's counts as bars, or one account's phase and encryption."""
    custom = status.get("customStatus") or {}
    output = status.get("output")
    head = f"{status.get('instanceId')}  {status.get('runtimeStatus')}"
    if status.get("name") == "cmk_rollout":
        total = int(custom.get("total") or (output or {}).get("total") or 0)
        by_outcome = (output or {}).get("totals") if isinstance(output, dict) else None
        by_outcome = by_outcome or custom.get("byOutcome") or {}
        done = sum(by_outcome.values())
        lines = [
            f"{head}  phase {custom.get('phase')}  lanes {custom.get('lanes', 0)}",
            f"  {'finished':<16} {bar(done, total)}  {done}/{total}",
        ]
        for phase in sorted(custom.get("byPhase") or {}, key=lambda p: PHASES.index(p) if p in PHASES else len(PHASES)):
            count = custom["byPhase"][phase]
            lines.append(f"  {phase:<16} {bar(count, total)}  {count}")
        for outcome, count in sorted(by_outcome.items()):
            lines.append(f"  = {outcome:<14} {count}")
        for finding in (output or {}).get("discovery", {}).get("scopeFindings") or []:
            lines.append(f"  ! {finding.get('code')}: {finding.get('message')}")
        return lines
    phase = custom.get("phase")
    lines = [
        f"{head}  {custom.get('accountId') or ''}",
        f"  phase {phase}  operation {custom.get('operationStatus')}"
        f"  polls {custom.get('polls', 0)}  next poll {custom.get('nextPollAt') or '-'}",
    ]
    percent = custom.get("percentComplete")
    if percent is not None:
        lines.append(f"  encryption       {bar(float(percent), 100)}")
    if isinstance(output, dict) and "outcome" in output:
        lines.append(f"  outcome {output['outcome']}: {output.get('reason')}")
    elif custom.get("detail"):
        lines.append(f"  {custom['detail']}")
    return lines


def _status(api: Api, args: argparse.Namespace) -> int:
    print(json.dumps(api.json("GET", f"cmk/instances/{args.instance_id}"), indent=2))
    return 0


def _list(api: Api, args: argparse.Namespace) -> int:
    token: str | None = None
    while True:
        query = {"runtimeStatus": args.status, "prefix": args.prefix, "top": str(args.top), "continuationToken": token}
        page = api.json("GET", "cmk/instances", query={k: v for k, v in query.items() if v})
        for instance in page["instances"]:
            custom = instance.get("customStatus") or {}
            output = instance.get("output") if isinstance(instance.get("output"), dict) else {}
            summary = output.get("outcome") or custom.get("phase") or ""
            print(f"{instance['instanceId']:<56} {instance['runtimeStatus']:<12} {summary}")
        token = page.get("continuationToken")
        if not (args.all and token):
            return 0


def _decide(api: Api, args: argparse.Namespace) -> int:
    verb = "approve" if args.approved else "reject"
    body = {"comment": args.comment} if args.comment else None
    result = api.json("POST", f"cmk/instances/{args.instance_id}/{verb}", body)
    by = result.get("by") or {}
    print(f"{result['instanceId']}: {result['decision']} by {by.get('displayName', 'you')}")
    return 0


def _terminate(api: Api, args: argparse.Namespace) -> int:
    result = api.json(
        "POST", f"cmk/instances/{args.instance_id}/terminate", {"reason": args.reason} if args.reason else {}
    )
    print(f"{result['instanceId']}: terminated. {result['note']}")
    return 0


def _report(api: Api, args: argparse.Namespace) -> int:
    query = {"format": "json"} if args.json else None
    _, _, payload = api.request("GET", f"cmk/rollouts/{args.rollout_id}/report", query=query)
    if args.output:
        args.output.write_bytes(payload)
        print(f"report written to {args.output}")
    else:
        sys.stdout.write(payload.decode())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
