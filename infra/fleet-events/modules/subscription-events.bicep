// One subscription: the resource group for its system topic (unless the topic exists), then the topic and the
// event subscription.
targetScope = 'subscription'

param createTopic bool
param resourceGroupName string
param topicName string
param location string
param tags object = {}
param functionResourceId string
param eventSubscriptionName string

resource topicResourceGroup 'Microsoft.Resources/resourceGroups@2024-03-01' = if (createTopic) {
  name: resourceGroupName
  location: location
  tags: tags
}

module topic './system-topic.bicep' = {
  name: 'cmk-events-topic-${uniqueString(subscription().id, topicName)}'
  scope: resourceGroup(resourceGroupName)
  params: {
    createTopic: createTopic
    topicName: topicName
    tags: tags
    functionResourceId: functionResourceId
    eventSubscriptionName: eventSubscriptionName
  }
  dependsOn: [
    topicResourceGroup
  ]
}

output eventSubscriptionId string = topic.outputs.eventSubscriptionId
