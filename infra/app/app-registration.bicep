// The API's Microsoft Entra ID app registration, with the three app roles the app enforces, and its service
// principal (the "enterprise application" that role assignments go to). Created with the Microsoft Graph Bicep
// extension (infra/bicepconfig.json), which needs the deployer to hold Application.ReadWrite.All, or the Application
// Developer or Cloud Application Administrator role. Where the deployer cannot create registrations, an administrator
// creates one with these roles and main.bicep is given its client id (apiClientId): see docs/deploy.md.
extension microsoftGraphV1

@description('Graph uniqueName of the registration: stable per environment, so a re-run updates the same one.')
param uniqueName string
param displayName string
@description('Host name of the function app: the redirect URI of the browser sign-in (the dashboard).')
param appHostName string

var roles = [
  {
    value: 'CMK.Reader'
    displayName: 'CMK Reader'
    description: 'Read orchestrations, rollouts, reports, the OpenAPI document and the dashboard.'
  }
  {
    value: 'CMK.Operator'
    displayName: 'CMK Operator'
    description: 'Start enablements and rollouts (each is recorded as requested by the caller) and terminate them.'
  }
  {
    value: 'CMK.Approver'
    displayName: 'CMK Approver'
    description: 'Approve or reject the irreversible key PATCH of an account requested by someone else.'
  }
]

resource application 'Microsoft.Graph/applications@v1.0' = {
  uniqueName: uniqueName
  displayName: displayName
  signInAudience: 'AzureADMyOrg'
  api: {
    requestedAccessTokenVersion: 2
  }
  appRoles: [for role in roles: {
    id: guid(uniqueName, role.value)
    value: role.value
    displayName: role.displayName
    description: role.description
    // People (and groups) and automation (service principals, managed identities) alike.
    allowedMemberTypes: [
      'User'
      'Application'
    ]
    isEnabled: true
  }]
  web: {
    redirectUris: [
      'https://${appHostName}/.auth/login/aad/callback'
    ]
    implicitGrantSettings: {
      enableIdTokenIssuance: true
    }
  }
}

resource servicePrincipal 'Microsoft.Graph/servicePrincipals@v1.0' = {
  appId: application.appId
  // Only principals assigned an app role get a token for the API at all.
  appRoleAssignmentRequired: true
}

output clientId string = application.appId
output servicePrincipalId string = servicePrincipal.id
output roleIds object = {
  reader: guid(uniqueName, 'CMK.Reader')
  operator: guid(uniqueName, 'CMK.Operator')
  approver: guid(uniqueName, 'CMK.Approver')
}
