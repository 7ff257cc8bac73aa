// The user-assigned managed identity tunnelwatch runs as.
//
// One identity for everything the app touches (storage for the Functions host and the
// findings tables, Application Insights ingestion, ARM reads, and, only when node probes are
// enabled, run command). User-assigned rather than system-assigned so the role assignments
// can be created before the function app exists and survive its re-creation.

@description('Name of the identity.')
param name string

@description('Azure region.')
param location string

@description('Tags for the identity.')
param tags object = {}

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: name
  location: location
  tags: tags
}

output id string = identity.id
output name string = identity.name
output clientId string = identity.properties.clientId
output principalId string = identity.properties.principalId
