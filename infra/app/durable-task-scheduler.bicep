// Durable Task Scheduler backend (main.bicep durableBackend = 'DurableTaskScheduler'): a scheduler and one task
// hub named like TASKHUB_NAME, reachable by Entra ID only. The app's identity gets Durable Task Data Contributor
// on the task hub; the person running azd may get it too, to open the dashboard.
param name string
param location string = resourceGroup().location
param tags object = {}
@allowed([
  'Consumption'
  'Dedicated'
])
param skuName string = 'Consumption'
param ipAllowlist array
@description('Must equal the TASKHUB_NAME app setting (host.json hubName).')
param taskHubName string
param appPrincipalId string
@description('Optional: object id of a person or pipeline to grant dashboard access.')
param userPrincipalId string = ''
@allowed([
  'User'
  'ServicePrincipal'
])
param userPrincipalType string = 'User'

var durableTaskDataContributorRoleId = '0ad04412-c4d5-4796-b79c-f76d14c8d402' // Durable Task Data Contributor
var sku = skuName == 'Dedicated' ? {
  name: 'Dedicated'
  capacity: 1
} : {
  name: 'Consumption'
}

resource scheduler 'Microsoft.DurableTask/schedulers@2025-11-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    ipAllowlist: ipAllowlist
    sku: sku
  }
}

resource taskHub 'Microsoft.DurableTask/schedulers/taskHubs@2025-11-01' = {
  parent: scheduler
  name: taskHubName
}

resource appDataContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(taskHub.id, appPrincipalId, durableTaskDataContributorRoleId)
  scope: taskHub
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', durableTaskDataContributorRoleId)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
    description: 'Cosmos DB CMK rollout app: Durable task hub'
  }
}

resource userDataContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(userPrincipalId)) {
  name: guid(taskHub.id, userPrincipalId, durableTaskDataContributorRoleId)
  scope: taskHub
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', durableTaskDataContributorRoleId)
    principalId: userPrincipalId
    principalType: userPrincipalType
    description: 'Cosmos DB CMK rollout: Durable Task Scheduler dashboard for the deployer'
  }
}

output endpoint string = scheduler.properties.endpoint
output taskHubName string = taskHub.name
output dashboardUrl string = taskHub.properties.dashboardUrl
