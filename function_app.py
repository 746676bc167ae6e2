"""The Functions app: registers one blueprint per orchestrator, activity and trigger module, and nothing else."""

import azure.durable_functions as df
import azure.functions as func

from activities import (
    collect_lane_rows,
    converge_throughput,
    discover_accounts,
    enable_cmk,
    ensure_identity,
    estimate_encryption,
    find_older_orchestration,
    grant_key_access,
    plan_throughput_raise,
    poll_operation,
    preflight,
    prepare_account_start,
    read_account_instance,
    release_account_slot,
    summarize_rollout,
    verify_cmk,
)
from orchestrators import account, rollout, rollout_lane
from triggers import (
    accounts_api,
    dashboard_api,
    enrolment,
    fallback_api,
    instances_api,
    openapi_api,
    rollouts_api,
    status_api,
)

app = df.DFApp(http_auth_level=func.AuthLevel.FUNCTION)

for module in (
    accounts_api,
    instances_api,
    openapi_api,
    rollouts_api,
    status_api,
    dashboard_api,
    enrolment,
    fallback_api,
    account,
    rollout,
    rollout_lane,
    preflight,
    ensure_identity,
    grant_key_access,
    enable_cmk,
    poll_operation,
    verify_cmk,
    discover_accounts,
    estimate_encryption,
    summarize_rollout,
    prepare_account_start,
    read_account_instance,
    find_older_orchestration,
    release_account_slot,
    collect_lane_rows,
    plan_throughput_raise,
    converge_throughput,
):
    app.register_functions(module.bp)
