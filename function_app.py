"""The Functions app: registers one blueprint per orchestrator, activity and trigger module, and nothing else."""

import azure.durable_functions as df
import azure.functions as func

from activities import enable_cmk, ensure_identity, grant_key_access, poll_operation, preflight, verify_cmk
from orchestrators import account
from triggers import accounts_api, instances_api, openapi_api

app = df.DFApp(http_auth_level=func.AuthLevel.FUNCTION)

for module in (
    accounts_api,
    instances_api,
    openapi_api,
    account,
    preflight,
    ensure_identity,
    grant_key_access,
    enable_cmk,
    poll_operation,
    verify_cmk,
):
    app.register_functions(module.bp)
