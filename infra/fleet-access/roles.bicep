// The three custom roles of the Cosmos DB CMK rollout app, shared by ./main.bicep (management group) and
// ./subscriptions.bicep (subscriptions), which import them. The operator and role-assigner roles' actions are exactly
// cmk/permissions.py REQUIRED_ARM_ACTIONS, split in two (tests/infra/test_bicep_contract.py checks both facts); the
// operation-status reader repeats one of the operator's (tests/infra/test_fleet_access_in_simulator.py):
//
// - the operator role: everything the app does to accounts, identities, key vaults and Resource Graph, assigned
//   where the accounts (and the key vaults' subscriptions) are;
// - the operation-status reader role: Microsoft.DocumentDB/locations/operationsStatus/read only (an action the
//   operator role holds too), assigned at the subscriptions whose accounts are granted by resource group: a PATCH's
//   Azure-AsyncOperation URL is /subscriptions/{s}/providers/Microsoft.DocumentDB/locations/{region}/
//   operationsStatus/{id}, a subscription-level path that no resource-group assignment reaches;
// - the key-vault role-assigner role: Microsoft.Authorization/roleAssignments read and write ONLY. Writing role
//   assignments is the most powerful right here (whoever holds it at a scope can make anyone Owner there), so it is
//   a separate role, assigned only on the key vaults (or their resource groups) the operator names, and every such
//   assignment carries keyVaultRoleAssignmentCondition: the app may assign only Key Vault Crypto Service
//   Encryption User, only to service principals (the Cosmos DB identities), and can delete nothing.

@export()
@description('Operator role: reads and writes on database accounts, key vault reads and access-policy writes, user-assigned identity assign, Resource Graph and metrics reads, database and container throughput reads and writes (the opt-in throughput raise).')
var cmkOperatorActions = [
  'Microsoft.DocumentDB/databaseAccounts/read'
  'Microsoft.DocumentDB/databaseAccounts/write'
  'Microsoft.DocumentDB/databaseAccounts/services/read'
  'Microsoft.DocumentDB/locations/operationsStatus/read'
  'Microsoft.KeyVault/vaults/read'
  'Microsoft.KeyVault/vaults/keys/read'
  'Microsoft.KeyVault/vaults/keys/versions/read'
  'Microsoft.KeyVault/vaults/accessPolicies/write'
  'Microsoft.ManagedIdentity/userAssignedIdentities/read'
  'Microsoft.ManagedIdentity/userAssignedIdentities/assign/action'
  'Microsoft.ResourceGraph/resources/read'
  'Microsoft.Insights/metrics/read'
  'Microsoft.DocumentDB/databaseAccounts/sqlDatabases/read'
  'Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers/read'
  'Microsoft.DocumentDB/databaseAccounts/sqlDatabases/throughputSettings/read'
  'Microsoft.DocumentDB/databaseAccounts/sqlDatabases/throughputSettings/write'
  'Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers/throughputSettings/read'
  'Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers/throughputSettings/write'
  'Microsoft.DocumentDB/databaseAccounts/mongodbDatabases/read'
  'Microsoft.DocumentDB/databaseAccounts/mongodbDatabases/collections/read'
  'Microsoft.DocumentDB/databaseAccounts/mongodbDatabases/throughputSettings/read'
  'Microsoft.DocumentDB/databaseAccounts/mongodbDatabases/throughputSettings/write'
  'Microsoft.DocumentDB/databaseAccounts/mongodbDatabases/collections/throughputSettings/read'
  'Microsoft.DocumentDB/databaseAccounts/mongodbDatabases/collections/throughputSettings/write'
  'Microsoft.DocumentDB/databaseAccounts/gremlinDatabases/read'
  'Microsoft.DocumentDB/databaseAccounts/gremlinDatabases/graphs/read'
  'Microsoft.DocumentDB/databaseAccounts/gremlinDatabases/throughputSettings/read'
  'Microsoft.DocumentDB/databaseAccounts/gremlinDatabases/throughputSettings/write'
  'Microsoft.DocumentDB/databaseAccounts/gremlinDatabases/graphs/throughputSettings/read'
  'Microsoft.DocumentDB/databaseAccounts/gremlinDatabases/graphs/throughputSettings/write'
  'Microsoft.DocumentDB/databaseAccounts/tables/read'
  'Microsoft.DocumentDB/databaseAccounts/tables/throughputSettings/read'
  'Microsoft.DocumentDB/databaseAccounts/tables/throughputSettings/write'
]

@export()
@description('Operation-status reader role: the status URLs of the app\'s PATCHes, which live at subscription level.')
var cmkOperationStatusActions = [
  'Microsoft.DocumentDB/locations/operationsStatus/read'
]

@export()
@description('Key-vault role-assigner role: role assignments only; assigned at key-vault scope only, with a condition.')
var keyVaultRoleAssignerActions = [
  'Microsoft.Authorization/roleAssignments/read'
  'Microsoft.Authorization/roleAssignments/write'
]

@export()
@description('Key Vault Crypto Service Encryption User: the only role the app may assign (get, wrapKey, unwrapKey).')
var keyVaultCryptoServiceEncryptionUserRoleId = 'e147488a-f6f5-4113-8e2d-b22465e65bf6'

// ABAC condition (constrained delegation) on the role-assigner assignments: any write must assign Key Vault Crypto
// Service Encryption User to a service principal. Reads are not constrained.
@export()
@description('Condition (version 2.0) on every key-vault role-assigner assignment.')
var keyVaultRoleAssignmentCondition = '((!(ActionMatches{\'Microsoft.Authorization/roleAssignments/write\'})) OR (@Request[Microsoft.Authorization/roleAssignments:RoleDefinitionId] ForAnyOfAnyValues:GuidEquals {e147488a-f6f5-4113-8e2d-b22465e65bf6} AND @Request[Microsoft.Authorization/roleAssignments:PrincipalType] ForAnyOfAnyValues:StringEqualsIgnoreCase {\'ServicePrincipal\'}))'

@export()
@description('Cosmos DB Built-in Data Reader (a Cosmos DB SQL role, not an Azure role): the preflight document-id query.')
var cosmosBuiltInDataReaderRoleId = '00000000-0000-0000-0000-000000000001'
