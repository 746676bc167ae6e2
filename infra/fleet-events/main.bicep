// Event Grid enrolment: new and changed Cosmos DB accounts in the target subscriptions reach the app's
// enrol_from_event_grid function. Not run by `azd up` (it writes into the target subscriptions); run it after the
// app's code is deployed (Event Grid checks the function exists), as someone who may create resource groups and
// Event Grid resources there (e.g. EventGrid Contributor + Contributor on the resource group), e.g.
//
//   az deployment sub create --subscription <any subscription> --location <region> \
//     --template-file infra/fleet-events/main.bicep --parameters @fleet-events.parameters.json
//
// For each subscription: one Event Grid system topic of type Microsoft.Resources.Subscriptions (ARM writes in that
// subscription), with one event subscription delivering Microsoft.Resources.ResourceWriteSuccess events whose
// data.operationName is Microsoft.DocumentDB/databaseAccounts/write to the function (destination AzureFunction:
// Event Grid authenticates itself; no key is stored anywhere). Which accounts are then enrolled is the app's
// decision (CMK_ENROLMENT_SCOPE, CMK_KEY_POLICY); it ignores the events its own PATCHes raise (CMK_APP_PRINCIPAL_ID).
// A subscription may hold only one system topic per source: if one exists already, name it in existingTopics and
// the event subscription is added to it.
targetScope = 'subscription'

@description('Resource id of the function app: azd output AZURE_FUNCTION_APP_ID.')
param functionAppResourceId string

@description('Name of the Event Grid triggered function.')
param functionName string = 'enrol_from_event_grid'

@description('Subscriptions whose Cosmos DB account writes are delivered to the app.')
param subscriptionIds array

@description('Resource group created in each subscription to hold the system topic (when it has none yet).')
param topicResourceGroupName string = 'rg-cosmos-cmk-events'

@description('Region of that resource group (the subscription system topic itself is global).')
param location string = deployment().location

@description('Subscriptions that already have a Microsoft.Resources.Subscriptions system topic: { "<subscriptionId>": { "resourceGroupName": "...", "topicName": "..." } }.')
param existingTopics object = {}

@description('Name of the event subscription (one per topic).')
param eventSubscriptionName string = 'cosmos-cmk-enrolment'

param tags object = {}

module subscriptionEvents './modules/subscription-events.bicep' = [for subscriptionId in subscriptionIds: {
  name: 'cmk-events-${uniqueString(subscriptionId, functionAppResourceId)}'
  scope: subscription(subscriptionId)
  params: {
    createTopic: !contains(existingTopics, subscriptionId)
    resourceGroupName: contains(existingTopics, subscriptionId) ? existingTopics[subscriptionId].resourceGroupName : topicResourceGroupName
    topicName: contains(existingTopics, subscriptionId) ? existingTopics[subscriptionId].topicName : 'egst-cosmos-cmk-${uniqueString(subscriptionId)}'
    location: location
    tags: tags
    functionResourceId: '${functionAppResourceId}/functions/${functionName}'
    eventSubscriptionName: eventSubscriptionName
  }
}]
