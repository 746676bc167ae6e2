// PRIVILEGED. Grants the Cosmos DB CMK rollout app's identity what it needs across the fleet. Not run by `azd up`:
// run it yourself, as someone allowed to create custom roles and role assignments at the scopes you name
// (Owner or User Access Administrator / Role Based Access Control Administrator), e.g.
//
//   az deployment mg create --management-group-id <mg> --location <region> \
//     --template-file infra/fleet-access/main.bicep --parameters @fleet-access.parameters.json
//
// (docs/deploy.md has the full walk-through.) It creates three custom roles at this management group and assigns:
//   - the operator role at the management group itself (assignOperatorAtManagementGroup), at each subscription in
//     subscriptionIds and at each resource group in resourceGroupIds: where the accounts are, plus the
//     subscriptions of the key vaults (the app lists vaults per subscription to find a key's vault);
//   - the operation-status reader role at each subscription of resourceGroupIds that no operator assignment covers
//     (not with assignOperatorAtManagementGroup): a PATCH's Azure-AsyncOperation URL is a subscription-level path;
//   - the key-vault role-assigner role, with its condition, on each vault in keyVaultIds and each resource group in
//     keyVaultResourceGroupIds, and NOWHERE else: only RBAC-model vaults need it (access-policy vaults need the
//     operator role's accessPolicies/write only), and it must not reach beyond the vaults;
//   - optionally, the Cosmos DB Built-in Data Reader SQL role on each account in cosmosAccountIds (the preflight's
//     document-id query; per account; docs/deploy.md also has a CLI loop for whole fleets).
// Every assignment has a deterministic name and a description, so running this again is idempotent and the
// assignments can be found and removed later. Subscription-level alternative: ./subscriptions.bicep.
targetScope = 'managementGroup'

import { cmkOperationStatusActions, cmkOperatorActions, keyVaultRoleAssignerActions, keyVaultRoleAssignmentCondition } from './roles.bicep'

@description('Principal (object) id of the app\'s user-assigned identity: azd output APP_IDENTITY_PRINCIPAL_ID.')
param appPrincipalId string

@minLength(1)
@maxLength(40)
@description('Names this installation (e.g. the azd environment name): custom role names are unique per tenant.')
param installationName string

@description('Assign the operator role at this management group (every subscription below it, now and later).')
param assignOperatorAtManagementGroup bool = false

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

var operatorRoleGuid = guid(managementGroup().id, 'cosmos-cmk-rollout-operator', installationName)
var keyVaultRoleAssignerRoleGuid = guid(managementGroup().id, 'cosmos-cmk-rollout-key-vault-role-assigner', installationName)
var operationStatusRoleGuid = guid(managementGroup().id, 'cosmos-cmk-rollout-operation-status-reader', installationName)
// The subscriptions of resourceGroupIds that no operator assignment covers whole (status URLs live there).
var lowerSubscriptionIds = map(subscriptionIds, id => toLower(id))
var operationStatusSubscriptionIds = assignOperatorAtManagementGroup ? [] : filter(union(map(resourceGroupIds, id => toLower(split(id, '/')[2])), []), id => !contains(lowerSubscriptionIds, id))
var assignmentDescription = 'Cosmos DB CMK rollout (${installationName}): made by infra/fleet-access; remove with the role.'

resource operatorRole 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: operatorRoleGuid
  properties: {
    roleName: 'Cosmos DB CMK Rollout Operator (${installationName})'
    description: 'Enable customer-managed keys on existing Cosmos DB accounts: exactly the ARM actions of cmk/permissions.py, without role assignments.'
    type: 'CustomRole'
    assignableScopes: [
      managementGroup().id
    ]
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
    assignableScopes: [
      managementGroup().id
    ]
    permissions: [
      {
        actions: keyVaultRoleAssignerActions
        notActions: []
      }
    ]
  }
}

resource managementGroupOperator 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (assignOperatorAtManagementGroup) {
  name: guid(managementGroup().id, operatorRoleGuid, appPrincipalId)
  properties: {
    roleDefinitionId: operatorRole.id
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
    description: assignmentDescription
  }
}

resource operationStatusRole 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: operationStatusRoleGuid
  properties: {
    roleName: 'Cosmos DB CMK Operation Status Reader (${installationName})'
    description: 'Read the status URLs (Azure-AsyncOperation) of the app\'s Cosmos DB PATCHes: subscription-level paths that resource-group assignments of the operator role do not reach.'
    type: 'CustomRole'
    assignableScopes: [
      managementGroup().id
    ]
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
