"""Azure Monitor platform metrics of an account (`{account}/providers/Microsoft.Insights/metrics`), served from the
world's accountData: what the product reads to estimate how long an account's encryption will take.

Only the three metrics the estimate needs are served: DataUsage (bytes), ProvisionedThroughput (RU/s) and
NormalizedRUConsumption (%). The simulator does not model request load, so consumption is reported as 0% and the
provisioned throughput is the account's spare RU/s; an account without accountData reports the encryption model's
defaults, which are also what its encryption will take.
"""

from __future__ import annotations

from sandbox.azure.errors import ArmError, resource_not_found
from sandbox.azure.ids import ACCOUNT_TYPE
from sandbox.azure.messages import Reply, RequestContext, iso
from sandbox.azure.routing import RouteMatch, RouteTable
from sandbox.azure.state import CloudState
from sandbox.azure.throughput_model import raised_ru_per_second

SERVED = {
    "DataUsage": ("Data Usage", "Bytes"),
    "ProvisionedThroughput": ("Provisioned Throughput", "Count"),
    "NormalizedRUConsumption": ("Normalized RU Consumption", "Percent"),
}


ROUTES = RouteTable()


@ROUTES.route("GET", "/subscriptions/{resource:path}/providers/Microsoft.Insights/metrics")
def account_metrics(state: CloudState, context: RequestContext, match: RouteMatch) -> Reply:
    """Azure Monitor's extension route on a resource (only accounts have metrics here)."""
    account_path = "/subscriptions/" + match["resource"]
    account = state.resources.get(account_path)
    if account is None or str(account.get("type", "")).lower() != ACCOUNT_TYPE:
        raise resource_not_found(account_path)
    requested = [name.strip() for name in (context.query.get("metricnames") or "").split(",") if name.strip()]
    unknown = [name for name in requested if name not in SERVED]
    if not requested or unknown:
        raise ArmError(
            400,
            "BadRequest",
            f"Failed to find metric configuration for provider: Microsoft.DocumentDB, resource Type: "
            f"databaseAccounts, metric: {', '.join(unknown) or '(none)'}; served: {', '.join(SERVED)}.",
        )
    facts = state.accounts.facts(account_path)
    model = state.settings.encryption
    size_gib = facts.data_size_gib if facts.data_size_gib is not None else model.default_data_size_gib
    spare = facts.spare_ru_per_second if facts.spare_ru_per_second is not None else model.default_spare_ru_per_second
    spare += raised_ru_per_second(state, account_path)  # a throughput raise is provisioned and spare alike
    values = {"DataUsage": size_gib * 2**30, "ProvisionedThroughput": spare, "NormalizedRUConsumption": 0.0}
    now = state.now()
    start = now - 3600
    metrics = [
        {
            "id": f"{account['id']}/providers/Microsoft.Insights/metrics/{name}",
            "type": "Microsoft.Insights/metrics",
            "name": {"value": name, "localizedValue": SERVED[name][0]},
            "unit": SERVED[name][1],
            "timeseries": [{"metadatavalues": [], "data": [{"timeStamp": iso(start), "maximum": values[name]}]}],
            "errorCode": "Success",
        }
        for name in requested
    ]
    body = {
        "cost": 0,
        "timespan": f"{iso(start)}/{iso(now)}",
        "interval": "PT1H",
        "value": metrics,
        "namespace": "Microsoft.DocumentDB/databaseAccounts",
        "resourceregion": str(account.get("location", "")).replace(" ", "").lower(),
    }
    return Reply(200, body)
