// One role assignment on one key vault (in the resource group this module is scoped to), with an ABAC condition.
@description('Name of the key vault.')
param vaultName string
@description('Role definition GUID (the name of a built-in or custom role definition).')
param roleDefinitionGuid string
param principalId string
param assignmentDescription string
@description('ABAC condition (version 2.0).')
param condition string

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: vaultName
}

resource assignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(vault.id, roleDefinitionGuid, principalId)
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleDefinitionGuid)
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: assignmentDescription
    condition: condition
    conditionVersion: '2.0'
  }
}

output roleAssignmentId string = assignment.id
