// The Flex Consumption plan and the Python 3.11 function app.
//
// Runtime, deployment storage and scale live in `functionAppConfig`, not in app settings:
// Flex Consumption deprecates FUNCTIONS_WORKER_RUNTIME, FUNCTIONS_EXTENSION_VERSION,
// WEBSITE_RUN_FROM_PACKAGE and the content-share settings, so none is set here.
// App settings = tunnelwatch's own (from main.bicep, one per key of shared/config.py SETTINGS)
// + the identity-based storage connection + telemetry.

@description('Function app name (also the host name prefix).')
param name string

@description('Flex Consumption plan name.')
param planName string

@description('Azure region (one that offers Flex Consumption).')
param location string

@description('Tags for both resources.')
param tags object = {}

@description('azd service name: azd deploys the package to the site tagged with it.')
param serviceName string = 'tunnelwatch'

@description('Resource id of the user-assigned identity the app runs as.')
param identityId string

@description('Client id of that identity.')
param identityClientId string

@description('Blob endpoint of the storage account (ends with /).')
param blobEndpoint string

@description('Queue endpoint of the storage account.')
param queueEndpoint string

@description('Table endpoint of the storage account.')
param tableEndpoint string

@description('Blob container of the deployment package.')
param deploymentContainerName string

@description('Application Insights connection string.')
param applicationInsightsConnectionString string

@description('tunnelwatch app settings (the keys of shared/config.py SETTINGS), as strings.')
param appSettings object

@description('App setting prefix the app reads its storage from (STORAGE_CONNECTION).')
param storageConnection string = 'AzureWebJobsStorage'

@description('Memory of each instance, in MB.')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

@description('Most instances the app may scale out to.')
@minValue(1)
@maxValue(1000)
param maximumInstanceCount int = 40

@description('Subnet (delegated to Microsoft.App/environments) the app is integrated in, for its outbound traffic; empty: no virtual network.')
param virtualNetworkSubnetId string = ''

@description('Turn the app\'s public inbound endpoint off (an inbound private endpoint then reaches it).')
param inboundPrivateOnly bool = false

// The identity-based connection, under two app setting prefixes. The Functions host reads
// `AzureWebJobsStorage__*` (timer singleton locks in blobs, queue triggers); the scan reads
// `<STORAGE_CONNECTION>__*` (shared/compose.py storage_clients). Both point at the same
// account; with the default STORAGE_CONNECTION they are the same keys.
var hostStorageSettings = {
  AzureWebJobsStorage__credential: 'managedidentity'
  AzureWebJobsStorage__clientId: identityClientId
  AzureWebJobsStorage__blobServiceUri: blobEndpoint
  AzureWebJobsStorage__queueServiceUri: queueEndpoint
  AzureWebJobsStorage__tableServiceUri: tableEndpoint
}

var appStorageSettings = {
  '${storageConnection}__credential': 'managedidentity'
  '${storageConnection}__clientId': identityClientId
  '${storageConnection}__blobServiceUri': blobEndpoint
  '${storageConnection}__queueServiceUri': queueEndpoint
  '${storageConnection}__tableServiceUri': tableEndpoint
}

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    name: 'FC1'
    tier: 'FlexConsumption'
  }
  properties: {
    reserved: true // Linux
  }
}

resource site 'Microsoft.Web/sites@2024-04-01' = {
  name: name
  location: location
  tags: union(tags, { 'azd-service-name': serviceName })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    // Outbound through the VNet: the storage private endpoints resolve through the privatelink
    // zones linked to it. Inbound stays public unless inboundPrivateOnly.
    virtualNetworkSubnetId: empty(virtualNetworkSubnetId) ? null : virtualNetworkSubnetId
    publicNetworkAccess: inboundPrivateOnly ? 'Disabled' : 'Enabled'
    siteConfig: {
      minTlsVersion: '1.2'
      ftpsState: 'Disabled'
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${blobEndpoint}${deploymentContainerName}'
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
      runtime: {
        name: 'python'
        version: '3.11'
      }
    }
  }

  resource settings 'config' = {
    name: 'appsettings'
    properties: union(
      appSettings,
      appStorageSettings,
      hostStorageSettings,
      {
        // DefaultAzureCredential (ARM and metrics clients) picks the user-assigned identity by it.
        AZURE_CLIENT_ID: identityClientId
        APPLICATIONINSIGHTS_CONNECTION_STRING: applicationInsightsConnectionString
        // Local auth is off on the component: telemetry is sent with the identity's token.
        APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identityClientId};Authorization=AAD'
      }
    )
  }

  // Publishing goes through Microsoft Entra ID (azd, az functionapp deployment): basic
  // authentication to FTP and the SCM site stays off.
  resource ftpBasicAuth 'basicPublishingCredentialsPolicies' = {
    name: 'ftp'
    properties: {
      allow: false
    }
  }

  resource scmBasicAuth 'basicPublishingCredentialsPolicies' = {
    name: 'scm'
    properties: {
      allow: false
    }
  }
}

output id string = site.id
output name string = site.name
output defaultHostName string = site.properties.defaultHostName
