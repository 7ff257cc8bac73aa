// tunnelwatch: one deployment per subscription it watches.
//
// Creates a resource group with: a user-assigned identity; a storage account (shared keys
// off) for the Functions host, the deployment package and the findings tables; Log Analytics
// and Application Insights; a Flex Consumption plan with the Python 3.11 function app. Grants
// the identity Reader on this subscription and data roles on its own storage and telemetry;
// run command on AKS nodes only when enableNodeProbes is true. With vnetEnabled: a virtual
// network, the app integrated in it, and the storage reachable only through blob, queue and
// table private endpoints; with inboundPrivateEndpoint too, the app itself only through one.
//
// Deploy with `azd up` (parameters from main.parameters.json and the azd environment) or
// `az deployment sub create -l <region> -f infra/main.bicep -p environmentName=<name> location=<region>`.
// See docs/deploy.md.

targetScope = 'subscription'

@minLength(1)
@maxLength(64)
@description('Environment name (azd: AZURE_ENV_NAME). Seeds resource names and tags.')
param environmentName string

@minLength(1)
@description('Region of every resource; one that offers Flex Consumption (az functionapp list-flexconsumption-locations).')
@metadata({
  azd: {
    type: 'location'
  }
})
param location string

@description('Resource group to create or reuse; empty: rg-<environmentName>.')
param resourceGroupName string = ''

@description('Grant the app run command on scale-set instances, i.e. root on AKS nodes, for node probes (UFW, iptables, netcat). Off by default: tunnelwatch is read-only unless you opt in.')
param enableNodeProbes bool = false

@description('With enableNodeProbes: resource id (or GUID) of the node probe role an administrator created beforehand in this subscription (docs/deploy.md). Empty: the template creates it, which needs Microsoft.Authorization/roleDefinitions/write (Owner or User Access Administrator).')
param nodeProbeRoleDefinitionId string = ''

@description('Private networking: a virtual network, the app integrated in a delegated subnet, blob/queue/table private endpoints with their privatelink DNS zones, storage public network access off.')
param vnetEnabled bool = false

@description('With vnetEnabled: also an inbound private endpoint for the app (privatelink.azurewebsites.net), and its public endpoint off. Ignored without vnetEnabled.')
param inboundPrivateEndpoint bool = false

@description('With vnetEnabled: address space of the new virtual network (a /16 or smaller down to /23; its first two /24s become the subnets). Pick one that does not overlap networks you peer it with.')
param vnetAddressPrefix string = '10.0.0.0/16'

@description('With inboundPrivateEndpoint: the privatelink zone of function apps in this cloud (Azure US Government: privatelink.azurewebsites.us; Azure China: privatelink.chinacloudsites.cn).')
param appPrivateDnsZoneName string = 'privatelink.azurewebsites.net'

@description('Memory of each Flex Consumption instance, in MB.')
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

// ---- tunnelwatch app settings: one parameter per key of shared/config.py SETTINGS, same defaults.
// Ranges and lengths mirror the validation in shared/config.py, so a bad value fails the
// deployment instead of the first scan.

@description('TUNNELWATCH_SUBSCRIPTIONS: comma-separated subscription ids to scan; empty: this deployment\'s subscription. Other subscriptions need Reader granted separately (docs/deploy.md).')
param tunnelwatchSubscriptions string = ''

@description('SCAN_SCHEDULE: NCRONTAB (6 fields, UTC) of the scan timer; default every 5 minutes.')
param scanSchedule string = '0 */5 * * * *'

@description('PROBE_SCHEDULE: NCRONTAB of the routine node probes; default hourly (minute 7, off the scan\'s beat).')
param probeSchedule string = '0 7 * * * *'

@description('PROBE_BUDGET: run commands allowed per probe cycle, all clusters together. Sent as 0 while enableNodeProbes is false.')
@minValue(0)
@maxValue(10000)
param probeBudget int = 20

@description('PROBE_QUEUE: queue of node probe requests (the app creates it).')
@minLength(3)
@maxLength(63)
param probeQueue string = 'probe-requests'

@description('STORAGE_CONNECTION: app setting prefix of the storage the app reads and writes. Only AzureWebJobsStorage: the probe queue triggers read that connection, and the app refuses any other (shared/config.py TRIGGER_STORAGE).')
@allowed([
  'AzureWebJobsStorage'
])
param storageConnection string = 'AzureWebJobsStorage'

@description('TABLE_PREFIX: prefix of the Table Storage table names (the app creates the tables).')
@minLength(1)
@maxLength(40)
param tablePrefix string = 'tunnelwatch'

@description('ARM_ENDPOINT: Azure Resource Manager endpoint; empty: the cloud this template is deployed to (https://management.azure.com in Azure public cloud).')
param armEndpoint string = ''

@description('ARM_CA_BUNDLE: extra CA bundle file for ARM, a path inside the deployed package; empty: none.')
param armCaBundle string = ''

@description('SNAT_THRESHOLD_PERCENT: used/allocated SNAT ports that count as high.')
@minValue(1)
@maxValue(100)
param snatThresholdPercent int = 80

@description('SNAT_WINDOW_MINUTES: SNAT judgement window, in one-minute points.')
@minValue(1)
@maxValue(60)
param snatWindowMinutes int = 5

@description('SNAT_MIN_BAD_POINTS: high points in the window that make exhaustion (at most SNAT_WINDOW_MINUTES).')
@minValue(1)
@maxValue(60)
param snatMinBadPoints int = 3

@description('CHECK_LEGACY_TUNNEL_PORTS: also check TCP 9000 / UDP 1194 egress on clusters without tunnel-front/aks-link.')
param checkLegacyTunnelPorts bool = false

@description('SERVICE_TAGS_CACHE_HOURS: how long service tag prefixes are cached.')
@minValue(1)
@maxValue(168)
param serviceTagsCacheHours int = 24

@description('OPEN_AFTER: observations in a row that report a finding before it opens.')
@minValue(1)
@maxValue(100)
param openAfter int = 1

@description('RESOLVE_AFTER: complete scans in a row without a finding before it resolves.')
@minValue(1)
@maxValue(100)
param resolveAfter int = 2

// ---- names

var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var tags = {
  'azd-env-name': environmentName
  app: 'tunnelwatch'
}
var functionAppName = 'func-tunnelwatch-${resourceToken}'
var deploymentContainerName = 'app-package-${take(resourceToken, 7)}'
var inboundPrivate = vnetEnabled && inboundPrivateEndpoint

// environment().resourceManager ends with '/'; the app wants it without.
var resourceManager = environment().resourceManager
var cloudArmEndpoint = endsWith(resourceManager, '/') ? substring(resourceManager, 0, length(resourceManager) - 1) : resourceManager

// Every value is a string: app settings are environment variables.
var tunnelwatchSettings = {
  TUNNELWATCH_SUBSCRIPTIONS: empty(tunnelwatchSubscriptions) ? subscription().subscriptionId : tunnelwatchSubscriptions
  SCAN_SCHEDULE: scanSchedule
  PROBE_SCHEDULE: probeSchedule
  // Without the run command role every probe would fail with 403: no budget, no probe requests.
  PROBE_BUDGET: string(enableNodeProbes ? probeBudget : 0)
  PROBE_QUEUE: probeQueue
  STORAGE_CONNECTION: storageConnection
  TABLE_PREFIX: tablePrefix
  ARM_ENDPOINT: empty(armEndpoint) ? cloudArmEndpoint : armEndpoint
  ARM_CA_BUNDLE: armCaBundle
  SNAT_THRESHOLD_PERCENT: string(snatThresholdPercent)
  SNAT_WINDOW_MINUTES: string(snatWindowMinutes)
  SNAT_MIN_BAD_POINTS: string(snatMinBadPoints)
  CHECK_LEGACY_TUNNEL_PORTS: checkLegacyTunnelPorts ? 'true' : 'false'
  SERVICE_TAGS_CACHE_HOURS: string(serviceTagsCacheHours)
  OPEN_AFTER: string(openAfter)
  RESOLVE_AFTER: string(resolveAfter)
}

// ---- resources

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: empty(resourceGroupName) ? 'rg-${environmentName}' : resourceGroupName
  location: location
  tags: tags
}

module identity './modules/identity.bicep' = {
  name: 'identity'
  scope: rg
  params: {
    name: 'id-tunnelwatch-${resourceToken}'
    location: location
    tags: tags
  }
}

module storage './modules/storage.bicep' = {
  name: 'storage'
  scope: rg
  params: {
    name: 'sttw${resourceToken}'
    location: location
    tags: tags
    deploymentContainerName: deploymentContainerName
    privateOnly: vnetEnabled
  }
}

// ---- private networking (vnetEnabled)

module network './modules/network.bicep' = if (vnetEnabled) {
  name: 'network'
  scope: rg
  params: {
    name: 'vnet-tunnelwatch-${resourceToken}'
    location: location
    tags: tags
    addressPrefix: vnetAddressPrefix
  }
}

// One endpoint per storage service the app uses: blob (host locks, deployment package), queue
// (probe requests), table (findings). The Flex quickstart's pattern covers blob only.
module blobPrivateEndpoint './modules/private-endpoint.bicep' = if (vnetEnabled) {
  name: 'pe-blob'
  scope: rg
  params: {
    name: 'pe-blob-${resourceToken}'
    location: location
    tags: tags
    vnetId: network.outputs.id
    subnetId: network.outputs.privateEndpointSubnetId
    targetId: storage.outputs.id
    groupId: 'blob'
    dnsZoneName: 'privatelink.blob.${environment().suffixes.storage}'
  }
}

module queuePrivateEndpoint './modules/private-endpoint.bicep' = if (vnetEnabled) {
  name: 'pe-queue'
  scope: rg
  params: {
    name: 'pe-queue-${resourceToken}'
    location: location
    tags: tags
    vnetId: network.outputs.id
    subnetId: network.outputs.privateEndpointSubnetId
    targetId: storage.outputs.id
    groupId: 'queue'
    dnsZoneName: 'privatelink.queue.${environment().suffixes.storage}'
  }
}

module tablePrivateEndpoint './modules/private-endpoint.bicep' = if (vnetEnabled) {
  name: 'pe-table'
  scope: rg
  params: {
    name: 'pe-table-${resourceToken}'
    location: location
    tags: tags
    vnetId: network.outputs.id
    subnetId: network.outputs.privateEndpointSubnetId
    targetId: storage.outputs.id
    groupId: 'table'
    dnsZoneName: 'privatelink.table.${environment().suffixes.storage}'
  }
}

module monitoring './modules/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: {
    logAnalyticsName: 'log-tunnelwatch-${resourceToken}'
    applicationInsightsName: 'appi-tunnelwatch-${resourceToken}'
    location: location
    tags: tags
  }
}

module appRoles './modules/roles-app.bicep' = {
  name: 'roles-app'
  scope: rg
  params: {
    storageAccountName: storage.outputs.name
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    principalId: identity.outputs.principalId
  }
}

module subscriptionRoles './modules/roles-subscription.bicep' = {
  name: 'roles-subscription-${resourceToken}'
  params: {
    principalId: identity.outputs.principalId
    enableNodeProbes: enableNodeProbes
    environmentName: environmentName
    nodeProbeRoleDefinitionId: nodeProbeRoleDefinitionId
  }
}

module functionApp './modules/functionapp.bicep' = {
  name: 'functionapp'
  scope: rg
  params: {
    name: functionAppName
    planName: 'plan-tunnelwatch-${resourceToken}'
    location: location
    tags: tags
    serviceName: 'tunnelwatch'
    identityId: identity.outputs.id
    identityClientId: identity.outputs.clientId
    blobEndpoint: storage.outputs.blobEndpoint
    queueEndpoint: storage.outputs.queueEndpoint
    tableEndpoint: storage.outputs.tableEndpoint
    deploymentContainerName: storage.outputs.deploymentContainerName
    applicationInsightsConnectionString: monitoring.outputs.connectionString
    appSettings: tunnelwatchSettings
    storageConnection: storageConnection
    instanceMemoryMB: instanceMemoryMB
    maximumInstanceCount: maximumInstanceCount
    virtualNetworkSubnetId: vnetEnabled ? network.outputs.appSubnetId : ''
    inboundPrivateOnly: inboundPrivate
  }
  // The host starts with identity-based storage: let the data roles (and, with vnetEnabled,
  // the private endpoints it reaches the storage through) exist first.
  dependsOn: [
    appRoles
    blobPrivateEndpoint
    queuePrivateEndpoint
    tablePrivateEndpoint
  ]
}

// The app's inbound private endpoint (inboundPrivateEndpoint): the site and its scm (deployment)
// host name both resolve to it inside the VNet; their public endpoint is off.
module appPrivateEndpoint './modules/private-endpoint.bicep' = if (inboundPrivate) {
  name: 'pe-app'
  scope: rg
  params: {
    name: 'pe-app-${resourceToken}'
    location: location
    tags: tags
    vnetId: network.outputs.id
    subnetId: network.outputs.privateEndpointSubnetId
    targetId: functionApp.outputs.id
    groupId: 'sites'
    dnsZoneName: appPrivateDnsZoneName
  }
}

// ---- outputs (UPPER_SNAKE: azd stores them in the environment's .env)

output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_FUNCTION_APP_NAME string = functionApp.outputs.name
output AZURE_IDENTITY_CLIENT_ID string = identity.outputs.clientId
output AZURE_IDENTITY_PRINCIPAL_ID string = identity.outputs.principalId
output AZURE_STORAGE_ACCOUNT_NAME string = storage.outputs.name
output AZURE_APPLICATION_INSIGHTS_NAME string = monitoring.outputs.applicationInsightsName
output AZURE_LOG_ANALYTICS_NAME string = monitoring.outputs.logAnalyticsName
output TUNNELWATCH_TABLE_PREFIX string = tablePrefix
output AZURE_FUNCTION_APP_HOST_NAME string = functionApp.outputs.defaultHostName
output TUNNELWATCH_NODE_PROBES_ENABLED bool = subscriptionRoles.outputs.nodeProbesEnabled
output TUNNELWATCH_NODE_PROBE_ROLE_CREATED bool = subscriptionRoles.outputs.nodeProbeRoleCreated
output AZURE_VNET_NAME string = vnetEnabled ? network.outputs.name : ''
