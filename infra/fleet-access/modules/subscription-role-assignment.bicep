// One role assignment at the subscription this module is scoped to (DataDog's fleet pattern: deterministic name,
// a description that says who made it and how to remove it).
targetScope = 'subscription'

@description('Role definition GUID (the name of a built-in or custom role definition).')
param roleDefinitionGuid string
param principalId string
param assignmentDescription string

resource assignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(subscription().id, roleDefinitionGuid, principalId)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleDefinitionGuid)
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: assignmentDescription
  }
}

output roleAssignmentId string = assignment.id
