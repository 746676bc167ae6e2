// The function app: Flex Consumption, Python 3.11, one user-assigned identity for everything, identity-based host
// storage and telemetry. The caller's appSettings (what the code reads) are merged under the platform settings
// below, so a caller cannot override them.
param name string
param location string = resourceGroup().location
param tags object = {}
@description('azd service name (azure.yaml services.<name>); azd finds the app by this tag.')
param serviceName string = 'api'
param appServicePlanId string
param applicationInsightsName string
param storageAccountName string
param deploymentStorageContainerName string
@description('Resource id of the user-assigned identity.')
param identityId string
@description('Client id of the user-assigned identity.')
param identityClientId string
param instanceMemoryMB int = 2048
param maximumInstanceCount int = 100
@description('App settings the code reads (cmk/settings.py).')
param appSettings object = {}
@description('Client id of the API\'s Entra ID app registration. Set: App Service Authentication with Microsoft Entra ID in front of the app (CMK_AUTH_MODE=entra). Empty: none (functionKey mode).')
param authClientId string = ''

resource stg 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

// Settings the Functions platform reads (cmk/settings.py PLATFORM_SETTINGS). Host storage by identity in the
// documented __accountName form (the per-service URI form has reported 401s on Flex); no key anywhere.
var baseAppSettings = {
  AzureWebJobsStorage__accountName: stg.name
  AzureWebJobsStorage__credential: 'managedidentity'
  AzureWebJobsStorage__clientId: identityClientId
  // Not a secret: App Insights local auth is off, so ingestion needs the Entra ID token named below.
  APPLICATIONINSIGHTS_CONNECTION_STRING: applicationInsights.properties.ConnectionString
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identityClientId};Authorization=AAD'
}

var allAppSettings = union(appSettings, baseAppSettings)

module functionApp 'br/public:avm/res/web/site:0.15.1' = {
  name: '${serviceName}-flex-consumption'
  params: {
    kind: 'functionapp,linux'
    name: name
    location: location
    tags: union(tags, {
      'azd-service-name': serviceName
    })
    serverFarmResourceId: appServicePlanId
    managedIdentities: {
      userAssignedResourceIds: [
        identityId
      ]
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${stg.properties.primaryEndpoints.blob}${deploymentStorageContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        instanceMemoryMB: instanceMemoryMB
        maximumInstanceCount: maximumInstanceCount
      }
      // Flex takes the runtime here: no FUNCTIONS_WORKER_RUNTIME setting, no linuxFxVersion.
      runtime: {
        name: 'python'
        version: '3.11'
      }
    }
    siteConfig: {
      alwaysOn: false
      minTlsVersion: '1.2'
      ftpsState: 'Disabled'
    }
    appSettingsKeyValuePairs: allAppSettings
  }
}

// No publishing passwords: azd deploys with an Entra ID token to the identity-secured deployment container.
resource site 'Microsoft.Web/sites@2023-12-01' existing = {
  name: name
}

resource ftpBasicAuth 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2023-12-01' = {
  parent: site
  name: 'ftp'
  properties: {
    allow: false
  }
  dependsOn: [
    functionApp
  ]
}

resource scmBasicAuth 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2023-12-01' = {
  parent: site
  name: 'scm'
  properties: {
    allow: false
  }
  dependsOn: [
    functionApp
  ]
}

// App Service Authentication (Easy Auth) with Microsoft Entra ID: every request needs a token for the API's app
// registration (401 without one) and reaches the app with the caller's claims in X-MS-CLIENT-PRINCIPAL, from which
// the app reads its app roles. Excluded: the Event Grid webhook and the Durable extension's endpoints, which are
// called with their system keys (Event Grid's AzureFunction destination, the Durable management API) and keep
// checking them; and the dashboard's page and files, which hold no data: a browser must load the page to sign in
// (/.auth/login/aad) or to be given a token, and every API call it makes is authenticated and role-checked.
resource authSettings 'Microsoft.Web/sites/config@2023-12-01' = if (!empty(authClientId)) {
  parent: site
  name: 'authsettingsV2'
  properties: {
    platform: {
      enabled: true
    }
    globalValidation: {
      requireAuthentication: true
      unauthenticatedClientAction: 'Return401'
      // An entry is its exact path; with a trailing /* every path below it (MicrosoftDocs/azure-docs#86514).
      excludedPaths: [
        '/runtime/webhooks/eventgrid'
        '/runtime/webhooks/durabletask/*'
        '/api/cmk/dashboard'
        '/api/cmk/dashboard/*'
      ]
    }
    identityProviders: {
      azureActiveDirectory: {
        enabled: true
        registration: {
          clientId: authClientId
          openIdIssuer: '${environment().authentication.loginEndpoint}${tenant().tenantId}/v2.0'
        }
        validation: {
          allowedAudiences: [
            authClientId
            'api://${authClientId}'
          ]
        }
      }
    }
    login: {
      tokenStore: {
        enabled: false
      }
    }
    httpSettings: {
      requireHttps: true
    }
  }
  dependsOn: [
    functionApp
  ]
}

output name string = functionApp.outputs.name
output resourceId string = functionApp.outputs.resourceId
output defaultHostname string = functionApp.outputs.defaultHostname
