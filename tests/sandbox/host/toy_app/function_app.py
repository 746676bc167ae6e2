"""Toy function app for the local host's tests, registered the way the product registers its modules.

The host imports this file as the top-level module `function_app` with this directory on `sys.path`, as the
Functions worker does; type checkers see it as part of the test package, hence the import ignores.
"""

import azure.durable_functions as df
import azure.functions as func
from toyapp_activities import bp as activities  # type: ignore[import-not-found]
from toyapp_flows import bp as flows  # type: ignore[import-not-found]
from toyapp_triggers import bp as triggers  # type: ignore[import-not-found]

app = df.DFApp(http_auth_level=func.AuthLevel.FUNCTION)
app.register_functions(flows)
app.register_functions(activities)
app.register_functions(triggers)
