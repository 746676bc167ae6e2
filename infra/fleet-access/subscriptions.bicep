// PRIVILEGED. Subscription-level twin of ./main.bicep, for operators who cannot create custom roles at a
// management group. Not run by `azd up`: run it in one subscription you may create custom roles in, e.g.
//
//   az deployment sub create --subscription <home subscription> --location <region> \
//     --template-file infra/fleet-access/subscriptions.bicep --parameters @fleet-access.parameters.json
//
// The three custom roles are created in that subscription, assignable in it and in every subscription named by
// subscriptionIds, resourceGroupIds, keyVaultIds and keyVaultResourceGroupIds (so you need to be allowed to create
// role definitions and role assignments in all of them). The assignments are the same as ./main.bicep's, without
// the management-group one; see there for what each grants and why.
targetScope = 'subscription'

import { cmkOperationStatusActions, cmkOperatorActions, keyVaultRoleAssignerActions, keyVaultRoleAssignmentCondition } from './roles.bicep'

@description('Principal (object) id of the app\'s user-assigned identity: azd output APP_IDENTITY_PRINCIPAL_ID.')
param appPrincipalId string

@minLength(1)
@maxLength(40)
@description('Names this installation (e.g. the azd environment name): custom role names are unique per tenant.')
param installationName string

@description('Subscription ids where the operator role is assigned (accounts\' and key vaults\' subscriptions).')
param subscriptionIds array = []

@description('Resource group ids (/subscriptions/<id>/resourceGroups/<name>) where the operator role is assigned.')
param resourceGroupIds array = []

@description('Key vault resource ids where the key-vault role-assigner role is assigned (RBAC-model vaults).')
param keyVaultIds array = []

@description('Resource group ids whose key vaults all get the key-vault role-assigner role.')
param keyVaultResourceGroupIds array = []

@description('Optional: Cosmos DB account ids (API for NoSQL) that get the Built-in Data Reader SQL role.')
param cosmosAccountIds array = []

var operatorRoleGuid = guid(subscription().id, 'cosmos-cmk-rollout-operator', installationName)
var keyVaultRoleAssignerRoleGuid = guid(subscription().id, 'cosmos-cmk-rollout-key-vault-role-assigner', installationName)
var operationStatusRoleGuid = guid(subscription().id, 'cosmos-cmk-rollout-operation-status-reader', installationName)
// The subscriptions of resourceGroupIds that no operator assignment covers whole (status URLs live there).
var lowerSubscriptionIds = map(subscriptionIds, id => toLower(id))
var operationStatusSubscriptionIds = filter(union(map(resourceGroupIds, id => toLower(split(id, '/')[2])), []), id => !contains(lowerSubscriptionIds, id))
// Every subscription the roles are assigned in, lower-cased and without repeats, plus this one (where they live).
var namedSubscriptionIds = map(concat(subscriptionIds, map(concat(resourceGroupIds, keyVaultIds, keyVaultResourceGroupIds), id => split(id, '/')[2])), id => toLower(id))
var assignableScopes = map(union([
  toLower(subscription().subscriptionId)
], namedSubscriptionIds), id => '/subscriptions/${id}')
var assignmentDescription = 'Cosmos DB CMK rollout (${installationName}): made by infra/fleet-access; remove with the role.'

resource operatorRole 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: operatorRoleGuid
  properties: {
    roleName: 'Cosmos DB CMK Rollout Operator (${installationName})'
    description: 'Enable customer-managed keys on existing Cosmos DB accounts: exactly the ARM actions of cmk/permissions.py, without role assignments.'
    type: 'CustomRole'
    assignableScopes: assignableScopes
    permissions: [
      {
        actions: cmkOperatorActions
        notActions: []
      }
    ]
  }
}

resource keyVaultRoleAssignerRole 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: keyVaultRoleAssignerRoleGuid
  properties: {
    roleName: 'Cosmos DB CMK Key Vault Role Assigner (${installationName})'
    description: 'Read and write role assignments; assigned on key vaults only, with a condition allowing only Key Vault Crypto Service Encryption User for service principals.'
    type: 'CustomRole'
    assignableScopes: assignableScopes
    permissions: [
      {
        actions: keyVaultRoleAssignerActions
        notActions: []
      }
    ]
  }
}

resource operationStatusRole 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: operationStatusRoleGuid
  properties: {
    roleName: 'Cosmos DB CMK Operation Status Reader (${installationName})'
    description: 'Read the status URLs (Azure-AsyncOperation) of the app\'s Cosmos DB PATCHes: subscription-level paths that resource-group assignments of the operator role do not reach.'
    type: 'CustomRole'
    assignableScopes: assignableScopes
    permissions: [
      {
        actions: cmkOperationStatusActions
        notActions: []
      }
    ]
  }
}

module subscriptionOperator './modules/subscription-role-assignment.bicep' = [for subscriptionId in subscriptionIds: {
  name: 'cmk-operator-${uniqueString(subscriptionId, installationName)}'
  scope: subscription(subscriptionId)
  params: {
    roleDefinitionGuid: operatorRole.name
    principalId: appPrincipalId
    assignmentDescription: assignmentDescription
  }
}]

module resourceGroupOperator './modules/resource-group-role-assignment.bicep' = [for resourceGroupId in resourceGroupIds: {
  name: 'cmk-operator-${uniqueString(resourceGroupId, installationName)}'
  scope: resourceGroup(split(resourceGroupId, '/')[2], split(resourceGroupId, '/')[4])
  params: {
    roleDefinitionGuid: operatorRole.name
    principalId: appPrincipalId
    assignmentDescription: assignmentDescription
  }
}]

// The operator role on a resource group does not reach the status URL of a PATCH there
// (/subscriptions/{s}/providers/Microsoft.DocumentDB/locations/{region}/operationsStatus/{id}): the operation-status
// reader role at each such subscription does, and nothing else.
module operationStatusReader './modules/subscription-role-assignment.bicep' = [for subscriptionId in operationStatusSubscriptionIds: {
  name: 'cmk-status-${uniqueString(subscriptionId, installationName)}'
  scope: subscription(subscriptionId)
  params: {
    roleDefinitionGuid: operationStatusRole.name
    principalId: appPrincipalId
    assignmentDescription: assignmentDescription
  }
}]

module keyVaultRoleAssigner './modules/key-vault-role-assignment.bicep' = [for keyVaultId in keyVaultIds: {
  name: 'cmk-kv-assigner-${uniqueString(keyVaultId, installationName)}'
  scope: resourceGroup(split(keyVaultId, '/')[2], split(keyVaultId, '/')[4])
  params: {
    vaultName: split(keyVaultId, '/')[8]
    roleDefinitionGuid: keyVaultRoleAssignerRole.name
    principalId: appPrincipalId
    assignmentDescription: assignmentDescription
    condition: keyVaultRoleAssignmentCondition
  }
}]

module keyVaultResourceGroupRoleAssigner './modules/resource-group-role-assignment.bicep' = [for resourceGroupId in keyVaultResourceGroupIds: {
  name: 'cmk-kv-assigner-${uniqueString(resourceGroupId, installationName)}'
  scope: resourceGroup(split(resourceGroupId, '/')[2], split(resourceGroupId, '/')[4])
  params: {
    roleDefinitionGuid: keyVaultRoleAssignerRole.name
    principalId: appPrincipalId
    assignmentDescription: assignmentDescription
    condition: keyVaultRoleAssignmentCondition
  }
}]

module cosmosDataReader './modules/cosmos-data-reader.bicep' = [for accountId in cosmosAccountIds: {
  name: 'cmk-data-reader-${uniqueString(accountId, installationName)}'
  scope: resourceGroup(split(accountId, '/')[2], split(accountId, '/')[4])
  params: {
    accountName: split(accountId, '/')[8]
    principalId: appPrincipalId
  }
}]

output operatorRoleDefinitionId string = operatorRole.id
output keyVaultRoleAssignerRoleDefinitionId string = keyVaultRoleAssignerRole.id
output operationStatusRoleDefinitionId string = operationStatusRole.id
