// One role assignment at the resource group this module is scoped to, optionally with an ABAC condition.
@description('Role definition GUID (the name of a built-in or custom role definition).')
param roleDefinitionGuid string
param principalId string
param assignmentDescription string
@description('Optional ABAC condition (version 2.0).')
param condition string = ''

resource assignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(resourceGroup().id, roleDefinitionGuid, principalId)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleDefinitionGuid)
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: assignmentDescription
    condition: empty(condition) ? null : condition
    conditionVersion: empty(condition) ? null : '2.0'
  }
}

output roleAssignmentId string = assignment.id
