// The app's own resources, provisioned by `azd up`: a resource group holding the Flex Consumption function app,
// its user-assigned identity, the storage account of the host and the Durable task hub, Log Analytics and
// Application Insights, and (switch `durableBackend`) a Durable Task Scheduler.
//
// Nothing here reaches the Cosmos DB fleet. What the app may do to accounts and key vaults is granted by the
// separate, privileged deployment in ./fleet-access, and Event Grid enrolment is wired by ./fleet-events.
// Nothing here holds a secret: every connection is identity-based and local auth is off where it can be.
targetScope = 'subscription'

@minLength(1)
@maxLength(64)
@description('Name of the azd environment; used to derive a short unique token for resource names.')
param environmentName string

@minLength(1)
@description('Region of every resource. Must offer Flex Consumption (az functionapp list-flexconsumption-locations).')
@metadata({
  azd: {
    type: 'location'
  }
})
param location string

@description('Object id of the person (or pipeline) running azd. Only used to let them open the Durable Task Scheduler dashboard; leave empty to grant nothing.')
param principalId string = ''

@allowed([
  'User'
  'ServicePrincipal'
])
@description('Kind of principalId (azd sets AZURE_PRINCIPAL_TYPE).')
param principalType string = 'User'

// Durable backend. AzureStorage (default) keeps the task hub in the app's storage account. DurableTaskScheduler
// is the managed backend for large fleets (thousands of accounts): higher throughput, a dashboard, no storage
// polling. Switching creates a new, empty task hub: finish or terminate running orchestrations first.
@allowed([
  'AzureStorage'
  'DurableTaskScheduler'
])
@description('Durable Functions backend: AzureStorage (default) or DurableTaskScheduler (large fleets).')
param durableBackend string = 'AzureStorage'

@allowed([
  'Consumption'
  'Dedicated'
])
@description('Durable Task Scheduler SKU, when durableBackend is DurableTaskScheduler.')
param durableTaskSchedulerSku string = 'Consumption'

// Flex Consumption without a virtual network has no fixed outbound addresses, so the scheduler cannot be fenced
// by IP; access is Entra ID only (Durable Task Data Contributor on the task hub), no keys exist.
@description('IP ranges allowed to reach the Durable Task Scheduler endpoint (access also requires an Entra ID role).')
param durableTaskSchedulerIpAllowlist array = [
  '0.0.0.0/0'
]

@description('Flex Consumption instance memory (MB).')
param instanceMemoryMB int = 2048

@description('Flex Consumption scale-out ceiling.')
param maximumInstanceCount int = 100

// ---------------------------------------------------------------------------------------------------------------
// App tunables. Each becomes the app setting of the same name (cmk/settings.py); the defaults here equal
// Setting.default there (tests/infra/test_bicep_contract.py checks it). azd maps each to the environment value of
// the same name (infra/main.parameters.json): `azd env set CMK_KEY_POLICY '{...}'` then `azd provision`.
// ---------------------------------------------------------------------------------------------------------------

@description('CMK_POLL_INTERVAL_SECONDS: wait between two reads of an async operation when Azure sends no Retry-After; the encryption monitor reads at it for its first 3 minutes, then by the expected end.')
param cmkPollIntervalSeconds string = '60'

@description('CMK_POLL_MAX_INTERVAL_SECONDS: longest wait between two reads of an encryption, far from its expected end.')
param cmkPollMaxIntervalSeconds string = '1800'

@description('CMK_MONITOR_DEADLINE_HOURS: how long the monitor follows an encryption; past it the outcome is Encrypting.')
param cmkMonitorDeadlineHours string = '720'

@description('CMK_BUSY_WAIT_HOURS: how long an account busy with another operation is waited for.')
param cmkBusyWaitHours string = '24'

@description('CMK_VERIFY_WINDOW_MINUTES: how long the account is re-read until it confirms access to the key.')
param cmkVerifyWindowMinutes string = '60'

@description('CMK_MONITOR_POLLS_PER_GENERATION: polls per orchestration generation before continue_as_new.')
param cmkMonitorPollsPerGeneration string = '10'

@description('CMK_RBAC_PROPAGATION_WAIT_SECONDS: wait after creating a Key Vault role assignment before enabling CMK.')
param cmkRbacPropagationWaitSeconds string = '600'

@description('CMK_APPROVAL_TIMEOUT_HOURS: how long an orchestration started with approval "required" waits.')
param cmkApprovalTimeoutHours string = '72'

@allowed([
  'true'
  'false'
])
@description('CMK_DOCUMENT_ID_SCAN: whether preflight scans for document ids over 990 bytes (needs the Cosmos DB data-plane reader role).')
param cmkDocumentIdScan string = 'true'

@description('CMK_DOCUMENT_ID_SCAN_RU_PER_SECOND: request units per second the document-id scan may spend on an account (low priority, self-paced).')
param cmkDocumentIdScanRuPerSecond string = '100'

@description('CMK_DOCUMENT_ID_SCAN_SECONDS: time budget of the document-id scan; past it preflight warns DOCUMENT_ID_SCAN_UNAVAILABLE.')
param cmkDocumentIdScanSeconds string = '120'

@description('CMK_DOCUMENT_ID_SCAN_PAGE_SIZE: items per page of the document-id queries; each 429 halves it for the next queries.')
param cmkDocumentIdScanPageSize string = '100'

@description('CMK_KEY_VAULT_SUBSCRIPTIONS: optional narrowing of the key vault search to the account\'s subscription and these (empty: every readable subscription).')
param cmkKeyVaultSubscriptions array = []

@description('CMK_ACTIVITY_MAX_ATTEMPTS: attempts of an activity that fails after the SDK\'s own retries.')
param cmkActivityMaxAttempts string = '4'

@description('CMK_ACTIVITY_RETRY_SECONDS: first wait between activity attempts.')
param cmkActivityRetrySeconds string = '30'

@description('CMK_KEY_POLICY: key policy for rollouts and enrolment ({"default", "bySubscription", "byRegion", "accountTag"}). Empty: every request names its key.')
param cmkKeyPolicy object = {}

@description('CMK_ENROLMENT_SCOPE: subscription or resource-group ids whose new accounts are enrolled from Event Grid. Empty: enrolment is off.')
param cmkEnrolmentScope array = []

@description('CMK_ROLLOUT_MAX_CONCURRENCY: accounts a rollout works on at once, unless the request says otherwise.')
param cmkRolloutMaxConcurrency string = '20'

@description('CMK_ROLLOUT_MAX_CONCURRENCY_PER_SUBSCRIPTION: accounts of one subscription a rollout works on at once.')
param cmkRolloutMaxConcurrencyPerSubscription string = '10'

@description('CMK_ARM_READS_PER_SECOND: ARM reads per second and subscription the app allows itself, all instances together (ARM refills 25).')
param cmkArmReadsPerSecond string = '20'

@description('CMK_ARM_WRITES_PER_SECOND: ARM writes per second and subscription the app allows itself, all instances together (ARM refills 10).')
param cmkArmWritesPerSecond string = '8'

@description('CMK_ARM_PACING_INSTANCES: instances that run activities at once; each paces itself to its share of the two above.')
param cmkArmPacingInstances string = '1'

@description('Microsoft Entra ID in front of the API (App Service Authentication) and app roles inside (CMK_AUTH_MODE=entra). false: function keys only (CMK_AUTH_MODE=functionKey), not for production.')
param entraAuth bool = true

@description('Client id of an existing app registration for the API, with the app roles CMK.Reader, CMK.Operator and CMK.Approver (docs/deploy.md). Empty: this deployment creates it (infra/app/app-registration.bicep), which needs rights to create app registrations.')
param apiClientId string = ''

@description('CMK_APPROVAL_SEPARATION: the approver of an account must not be the principal that requested it.')
param cmkApprovalSeparation string = 'true'

var abbrs = loadJsonContent('./abbreviations.json')
var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var tags = {
  'azd-env-name': environmentName
}
var functionAppName = '${abbrs.webSitesFunctions}cmk-${resourceToken}'
var deploymentStorageContainerName = 'app-package-${take(functionAppName, 32)}-${take(toLower(uniqueString(functionAppName, resourceToken)), 7)}'
// One task hub per environment: letters and digits, starts with a letter, 3-45 characters.
var taskHubName = 'cmk${resourceToken}'
var useDurableTaskScheduler = durableBackend == 'DurableTaskScheduler'

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: '${abbrs.resourcesResourceGroups}${environmentName}'
  location: location
  tags: tags
}

// The app's one identity: host storage, telemetry, the deployment container, the Durable backend, and every ARM
// call the code makes (DefaultAzureCredential with AZURE_CLIENT_ID). Fleet permissions are granted to its
// principal id by ./fleet-access, not here.
module appIdentity 'br/public:avm/res/managed-identity/user-assigned-identity:0.4.1' = {
  name: 'appIdentity'
  scope: rg
  params: {
    name: '${abbrs.managedIdentityUserAssignedIdentities}cmk-${resourceToken}'
    location: location
    tags: tags
  }
}

module appServicePlan 'br/public:avm/res/web/serverfarm:0.1.1' = {
  name: 'appServicePlan'
  scope: rg
  params: {
    name: '${abbrs.webServerFarms}${resourceToken}'
    sku: {
      name: 'FC1'
      tier: 'FlexConsumption'
    }
    reserved: true
    location: location
    tags: tags
  }
}

// Host storage and the Durable task hub (AzureStorage backend), reached by identity only.
module storage 'br/public:avm/res/storage/storage-account:0.8.3' = {
  name: 'storage'
  scope: rg
  params: {
    name: '${abbrs.storageStorageAccounts}${resourceToken}'
    skuName: 'Standard_LRS'
    allowBlobPublicAccess: false
    allowSharedKeyAccess: false // no account keys: the host, Durable and the deployment container use the identity
    dnsEndpointType: 'Standard'
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      defaultAction: 'Allow'
      bypass: 'AzureServices'
    }
    blobServices: {
      containers: [
        {
          name: deploymentStorageContainerName
        }
      ]
    }
    minimumTlsVersion: 'TLS1_2'
    location: location
    tags: tags
  }
}

module logAnalytics 'br/public:avm/res/operational-insights/workspace:0.11.1' = {
  name: 'logAnalytics'
  scope: rg
  params: {
    name: '${abbrs.operationalInsightsWorkspaces}${resourceToken}'
    location: location
    tags: tags
    dataRetention: 30
  }
}

module monitoring 'br/public:avm/res/insights/component:0.6.0' = {
  name: 'monitoring'
  scope: rg
  params: {
    name: '${abbrs.insightsComponents}${resourceToken}'
    location: location
    tags: tags
    workspaceResourceId: logAnalytics.outputs.resourceId
    disableLocalAuth: true // telemetry only with Entra ID (APPLICATIONINSIGHTS_AUTHENTICATION_STRING)
  }
}

module rbac './app/rbac.bicep' = {
  name: 'rbac'
  scope: rg
  params: {
    storageAccountName: storage.outputs.name
    appInsightsName: monitoring.outputs.name
    appPrincipalId: appIdentity.outputs.principalId
  }
}

module durableTaskScheduler './app/durable-task-scheduler.bicep' = if (useDurableTaskScheduler) {
  name: 'durableTaskScheduler'
  scope: rg
  params: {
    name: '${abbrs.durableTaskSchedulers}${resourceToken}'
    location: location
    tags: tags
    skuName: durableTaskSchedulerSku
    ipAllowlist: durableTaskSchedulerIpAllowlist
    taskHubName: taskHubName
    appPrincipalId: appIdentity.outputs.principalId
    userPrincipalId: principalId
    userPrincipalType: principalType
  }
}

// The API's app registration: created here unless one is named (apiClientId) or Entra ID is off.
module appRegistration './app/app-registration.bicep' = if (entraAuth && empty(apiClientId)) {
  name: 'app-registration'
  scope: rg
  params: {
    uniqueName: 'cmk-rollout-${resourceToken}'
    displayName: 'Cosmos DB CMK rollout (${environmentName})'
    appHostName: '${functionAppName}.azurewebsites.net'
  }
}

var authClientId = !entraAuth ? '' : (empty(apiClientId) ? appRegistration!.outputs.clientId : apiClientId)

// Every app setting the code reads (cmk/settings.py SETTINGS), except ARM_ENDPOINT, whose empty default means the
// cloud's own endpoint (only the local simulator changes it). The platform's own settings are added by app/api.bicep.
var appSettings = {
  // The cloud this deployment runs in (AzureCloud, AzureUSGovernment, AzureChinaCloud): the app's ARM endpoint,
  // token audience and accepted key URI domains follow it.
  AZURE_CLOUD: environment().name
  AZURE_CLIENT_ID: appIdentity.outputs.clientId
  CMK_APP_PRINCIPAL_ID: appIdentity.outputs.principalId
  TASKHUB_NAME: taskHubName
  CMK_POLL_INTERVAL_SECONDS: cmkPollIntervalSeconds
  CMK_POLL_MAX_INTERVAL_SECONDS: cmkPollMaxIntervalSeconds
  CMK_MONITOR_DEADLINE_HOURS: cmkMonitorDeadlineHours
  CMK_BUSY_WAIT_HOURS: cmkBusyWaitHours
  CMK_VERIFY_WINDOW_MINUTES: cmkVerifyWindowMinutes
  CMK_MONITOR_POLLS_PER_GENERATION: cmkMonitorPollsPerGeneration
  CMK_RBAC_PROPAGATION_WAIT_SECONDS: cmkRbacPropagationWaitSeconds
  CMK_APPROVAL_TIMEOUT_HOURS: cmkApprovalTimeoutHours
  CMK_DOCUMENT_ID_SCAN: cmkDocumentIdScan
  CMK_DOCUMENT_ID_SCAN_RU_PER_SECOND: cmkDocumentIdScanRuPerSecond
  CMK_DOCUMENT_ID_SCAN_SECONDS: cmkDocumentIdScanSeconds
  CMK_DOCUMENT_ID_SCAN_PAGE_SIZE: cmkDocumentIdScanPageSize
  CMK_KEY_VAULT_SUBSCRIPTIONS: string(cmkKeyVaultSubscriptions)
  CMK_ACTIVITY_MAX_ATTEMPTS: cmkActivityMaxAttempts
  CMK_ACTIVITY_RETRY_SECONDS: cmkActivityRetrySeconds
  CMK_KEY_POLICY: empty(cmkKeyPolicy) ? '' : string(cmkKeyPolicy)
  CMK_ENROLMENT_SCOPE: string(cmkEnrolmentScope)
  CMK_ROLLOUT_MAX_CONCURRENCY: cmkRolloutMaxConcurrency
  CMK_ROLLOUT_MAX_CONCURRENCY_PER_SUBSCRIPTION: cmkRolloutMaxConcurrencyPerSubscription
  CMK_ARM_READS_PER_SECOND: cmkArmReadsPerSecond
  CMK_ARM_WRITES_PER_SECOND: cmkArmWritesPerSecond
  CMK_ARM_PACING_INSTANCES: cmkArmPacingInstances
  // entra whenever App Service Authentication is configured (the default): roles, separation of duties and a
  // record of who did what; functionKey only when this deployment turns Entra ID off.
  CMK_AUTH_MODE: empty(authClientId) ? 'functionKey' : 'entra'
  CMK_APPROVAL_SEPARATION: cmkApprovalSeparation
}

// Only with durableBackend = DurableTaskScheduler. The two AzureFunctionsJobHost__ settings override host.json's
// durableTask.storageProvider (the host reads AzureFunctionsJobHost__<path> over host.json), so the same
// host.json serves both backends.
var durableTaskSchedulerSettings = {
  DURABLE_TASK_SCHEDULER_CONNECTION_STRING: 'Endpoint=${durableTaskScheduler.outputs.endpoint};Authentication=ManagedIdentity;ClientID=${appIdentity.outputs.clientId}'
  AzureFunctionsJobHost__extensions__durableTask__storageProvider__type: 'azureManaged'
  AzureFunctionsJobHost__extensions__durableTask__storageProvider__connectionStringName: 'DURABLE_TASK_SCHEDULER_CONNECTION_STRING'
}

module api './app/api.bicep' = {
  name: 'api'
  scope: rg
  params: {
    name: functionAppName
    location: location
    tags: tags
    serviceName: 'api'
    appServicePlanId: appServicePlan.outputs.resourceId
    applicationInsightsName: monitoring.outputs.name
    storageAccountName: storage.outputs.name
    deploymentStorageContainerName: deploymentStorageContainerName
    identityId: appIdentity.outputs.resourceId
    identityClientId: appIdentity.outputs.clientId
    instanceMemoryMB: instanceMemoryMB
    maximumInstanceCount: maximumInstanceCount
    appSettings: union(appSettings, useDurableTaskScheduler ? durableTaskSchedulerSettings : {})
    authClientId: authClientId
  }
  dependsOn: [
    rbac // the host must reach storage by identity from its first start
  ]
}

// azd writes these into the environment (.azure/<env>/.env); docs/deploy.md uses them.
output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = rg.name
output SERVICE_API_NAME string = api.outputs.name
output AZURE_FUNCTION_NAME string = api.outputs.name
output AZURE_FUNCTION_APP_ID string = api.outputs.resourceId
output AZURE_FUNCTION_URL string = 'https://${api.outputs.defaultHostname}'
output APP_IDENTITY_PRINCIPAL_ID string = appIdentity.outputs.principalId
output APP_IDENTITY_CLIENT_ID string = appIdentity.outputs.clientId
output APPLICATIONINSIGHTS_CONNECTION_STRING string = monitoring.outputs.connectionString
output TASKHUB_NAME string = taskHubName
// The API's app registration: the resource to request tokens for, and where app roles are assigned.
output CMK_API_CLIENT_ID string = authClientId
output DURABLE_BACKEND string = durableBackend
output DURABLE_TASK_SCHEDULER_DASHBOARD_URL string = useDurableTaskScheduler ? durableTaskScheduler.outputs.dashboardUrl : ''
