// The storage account of the Functions host, the deployment package and the findings tables.
//
// Shared keys are off: every client (the Functions host, the Flex Consumption deployment, the
// app's table and queue clients, `az storage ... --auth-mode login`) authenticates with
// Microsoft Entra ID. Only the blob container of the deployment package is created here; the
// app creates its own tables (`<prefix>Runs`, `<prefix>Findings`, ...) and the probe queue at
// start (FindingStore.ensure_tables, ProbeQueue.ensure), so their names stay app settings.

@description('Storage account name: 3-24 lower-case letters and digits, globally unique.')
@minLength(3)
@maxLength(24)
param name string

@description('Azure region.')
param location string

@description('Tags for the account.')
param tags object = {}

@description('Blob container that holds the Flex Consumption deployment package.')
param deploymentContainerName string

@description('Private endpoints only: public network access off (vnetEnabled in main.bicep).')
param privateOnly bool = false

resource account 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: 'Standard_LRS'
  }
  properties: {
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    allowBlobPublicAccess: false
    // No account keys, no SAS signed with them: identity only.
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
    allowCrossTenantReplication: false
    // Without vnetEnabled the account is reachable over the public endpoint, and only
    // principals with a data role (the app's identity) can use it. With it, only the blob,
    // queue and table private endpoints reach it (landing-zone policies deny public storage).
    publicNetworkAccess: privateOnly ? 'Disabled' : 'Enabled'
    networkAcls: {
      defaultAction: privateOnly ? 'Deny' : 'Allow'
      bypass: privateOnly ? 'None' : 'AzureServices'
    }
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: account
  name: 'default'
}

resource deploymentContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: deploymentContainerName
  properties: {
    publicAccess: 'None'
  }
}

output id string = account.id
output name string = account.name
output blobEndpoint string = account.properties.primaryEndpoints.blob
output queueEndpoint string = account.properties.primaryEndpoints.queue
output tableEndpoint string = account.properties.primaryEndpoints.table
output deploymentContainerName string = deploymentContainer.name
