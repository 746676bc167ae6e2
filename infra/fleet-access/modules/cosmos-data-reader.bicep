// Cosmos DB data-plane read for one account (API for NoSQL only): the preflight document-id query (ids over 990
// bytes) needs it when CMK_DOCUMENT_ID_SCAN is true. This is a Cosmos DB SQL role assignment on the account, not
// an Azure role assignment; it is per account. Grant it BEFORE the account's CMK rollout: control-plane changes
// to an account can be blocked while its encryption runs.
import { cosmosBuiltInDataReaderRoleId } from '../roles.bicep'

@description('Name of the Cosmos DB account.')
param accountName string
param principalId string

resource account 'Microsoft.DocumentDB/databaseAccounts@2024-11-15' existing = {
  name: accountName
}

resource dataReader 'Microsoft.DocumentDB/databaseAccounts/sqlRoleAssignments@2024-11-15' = {
  parent: account
  name: guid(account.id, cosmosBuiltInDataReaderRoleId, principalId)
  properties: {
    roleDefinitionId: '${account.id}/sqlRoleDefinitions/${cosmosBuiltInDataReaderRoleId}'
    principalId: principalId
    scope: account.id
  }
}

output sqlRoleAssignmentId string = dataReader.id
