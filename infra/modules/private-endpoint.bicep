// One private endpoint with its privatelink DNS zone, linked to the virtual network.
//
// Used for the storage account's blob, queue and table services (vnetEnabled) and for the
// function app's inbound endpoint (inboundPrivateEndpoint). The zone group writes the
// endpoint's A records into the zone, so inside the VNet the resource's usual host name
// (<account>.blob.core.windows.net, <app>.azurewebsites.net) resolves to the private address.

@description('Private endpoint name.')
param name string

@description('Azure region (the virtual network\'s).')
param location string

@description('Tags for the endpoint and the zone.')
param tags object = {}

@description('Resource id of the virtual network the zone is linked to.')
param vnetId string

@description('Resource id of the subnet the endpoint gets its address in.')
param subnetId string

@description('Resource id of the resource behind the endpoint.')
param targetId string

@description('Sub-resource: blob, queue, table (storage) or sites (function app).')
@allowed([
  'blob'
  'queue'
  'table'
  'sites'
])
param groupId string

@description('privatelink DNS zone of that sub-resource, for example privatelink.blob.core.windows.net.')
param dnsZoneName string

resource zone 'Microsoft.Network/privateDnsZones@2020-06-01' = {
  name: dnsZoneName
  location: 'global'
  tags: tags
}

resource link 'Microsoft.Network/privateDnsZones/virtualNetworkLinks@2020-06-01' = {
  parent: zone
  name: 'link-${last(split(vnetId, '/'))}'
  location: 'global'
  tags: tags
  properties: {
    registrationEnabled: false
    virtualNetwork: {
      id: vnetId
    }
  }
}

resource endpoint 'Microsoft.Network/privateEndpoints@2023-11-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    subnet: {
      id: subnetId
    }
    privateLinkServiceConnections: [
      {
        name: name
        properties: {
          privateLinkServiceId: targetId
          groupIds: [
            groupId
          ]
        }
      }
    ]
  }

  resource dnsGroup 'privateDnsZoneGroups' = {
    name: 'default'
    properties: {
      privateDnsZoneConfigs: [
        {
          name: replace(dnsZoneName, '.', '-')
          properties: {
            privateDnsZoneId: zone.id
          }
        }
      ]
    }
  }
}

output id string = endpoint.id
output dnsZoneId string = zone.id
