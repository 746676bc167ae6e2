"""A local simulator of the slice of Azure this project touches, served to the real Azure SDK clients over HTTPS.

Azure Resource Manager (Cosmos DB accounts and their asynchronous PATCH, Key Vault, managed identities, role
assignments, Resource Graph), the App Service managed-identity endpoint, a read-only Cosmos DB data plane, and
Event Grid resource events — on a simulated clock, with throttling, fault injection and persistence.
"""

from sandbox.azure.simulator import AzureSimulator
from sandbox.azure.tokens import PrincipalCredential, mint_token, read_token
from sandbox.azure.world import SimulatorSettings, World, WorldError, load_world

__all__ = [
    "AzureSimulator",
    "PrincipalCredential",
    "SimulatorSettings",
    "World",
    "WorldError",
    "load_world",
    "mint_token",
    "read_token",
]
