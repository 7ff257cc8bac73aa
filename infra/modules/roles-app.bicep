// Data-plane roles on the app's own resources (storage account, Application Insights).
//
// Each assignment is named guid(scope, principal, role), so re-deploying is idempotent and
// two deployments for different identities never collide.
//   Storage Blob Data Owner        the Functions host (timer singleton locks, its own blobs) and
//                                  the Flex Consumption deployment package container; the
//                                  host's identity-based blob connection asks for Owner.
//   Storage Queue Data Contributor the probe-requests queue: the scan sends, the probe worker
//                                  receives, re-sends with a delay and deletes; the host moves
//                                  poison messages.
//   Storage Table Data Contributor the findings tables: the app creates them and writes
//                                  runs, findings and history.
//   Monitoring Metrics Publisher   telemetry to Application Insights with local auth off.

@description('Storage account name (in this resource group).')
param storageAccountName string

@description('Application Insights component name (in this resource group).')
param applicationInsightsName string

@description('Principal (object) id of the app identity.')
param principalId string

// Built-in role definition ids (the same in every Azure cloud).
var storageBlobDataOwner = 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
var storageQueueDataContributor = '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
var storageTableDataContributor = '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
var monitoringMetricsPublisher = '3913510d-42f4-4e42-8a64-420c390055eb'

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource component 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

resource blobOwner 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  scope: storage
  name: guid(storage.id, principalId, storageBlobDataOwner)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataOwner)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

resource queueContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  scope: storage
  name: guid(storage.id, principalId, storageQueueDataContributor)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageQueueDataContributor)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

resource tableContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  scope: storage
  name: guid(storage.id, principalId, storageTableDataContributor)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageTableDataContributor)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

resource metricsPublisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  scope: component
  name: guid(component.id, principalId, monitoringMetricsPublisher)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', monitoringMetricsPublisher)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}
